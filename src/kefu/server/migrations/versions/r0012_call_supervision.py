"""A supervisor's help in a call (issue 20): every join, change of mode and leave.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "call_supervision",
        sa.Column("num", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("old", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_call_supervision_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name=op.f("fk_call_supervision_call_id_calls")),
        sa.PrimaryKeyConstraint("num", name=op.f("pk_call_supervision")),
    )
    with op.batch_alter_table("call_supervision", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_call_supervision_call_id"), ["call_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_call_supervision_agent_id"), ["agent_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("call_supervision", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_supervision_agent_id"))
        batch_op.drop_index(batch_op.f("ix_call_supervision_call_id"))
    op.drop_table("call_supervision")
