"""The SFU mode: a call's room in Janus (number and secret).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "media_rooms",
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("room", sa.BigInteger(), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name=op.f("fk_media_rooms_call_id_calls")),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_media_rooms")),
    )


def downgrade() -> None:
    op.drop_table("media_rooms")
