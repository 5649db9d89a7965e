"""No lost customer and transfers (issue 20): a session given back to the queue waits at
its head; a session keeps its latest transfer (from whom, why, the note).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("transfer_from", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("transfer_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("transfer_note", sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("transfer_note")
        batch_op.drop_column("transfer_reason")
        batch_op.drop_column("transfer_from")
        batch_op.drop_column("priority")
