"""The security review: the audit trail of media, and the agent's open photo requests.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("num", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("object_kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=True),
        sa.Column("call_id", sa.String(length=32), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("num", name=op.f("pk_audit")),
    )
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_call_id"), ["call_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_object_id_num"), ["object_id", "num"], unique=False)
    op.create_table(
        "photo_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("visitor_name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name=op.f("fk_photo_requests_agent_id_agents")),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name=op.f("fk_photo_requests_call_id_calls")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photo_requests")),
    )
    with op.batch_alter_table("photo_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_photo_requests_call_id"), ["call_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("photo_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_photo_requests_call_id"))
    op.drop_table("photo_requests")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_object_id_num"))
        batch_op.drop_index(batch_op.f("ix_audit_call_id"))
    op.drop_table("audit")
