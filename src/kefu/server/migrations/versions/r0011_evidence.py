"""Issue 17: the SFU mode's recording status on the call; evidence at rest (the key that
encrypted an artifact's file, and when retention deleted it).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recording", sa.JSON(), nullable=True))
    with op.batch_alter_table("media_artifacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_media_artifacts_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("media_artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_media_artifacts_created_at"))
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("key_id")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("recording")
