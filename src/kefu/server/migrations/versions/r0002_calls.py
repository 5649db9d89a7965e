"""Calls: the call's snapshot, ringing deadline, who ended it; members' status.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("visitor_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("ended_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("ring_deadline", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("snapshot", sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f("ix_calls_visitor_id"), ["visitor_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_calls_visitor_id_visitors"), "visitors", ["visitor_id"], ["id"]
        )
    with op.batch_alter_table("call_members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("call_members", schema=None) as batch_op:
        batch_op.drop_column("reason")
        batch_op.drop_column("status")
        batch_op.drop_column("name")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_calls_visitor_id_visitors"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_calls_visitor_id"))
        batch_op.drop_column("snapshot")
        batch_op.drop_column("ring_deadline")
        batch_op.drop_column("ended_by")
        batch_op.drop_column("visitor_id")
