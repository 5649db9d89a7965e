"""The floor (issue 20): supervisors, teams with their wrap-up policy, the catalogue of
not-ready reasons, wrap-up codes, who made a state change.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("supervisor", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("state_changes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_state_changes_at"), ["at"], unique=False)
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("wrap_up_seconds", sa.Float(), nullable=True),
        sa.Column("wrap_up_extend", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_team_members_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_team_members_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("team_id", "agent_id", name=op.f("pk_team_members")),
    )
    with op.batch_alter_table("team_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_team_members_agent_id"), ["agent_id"], unique=False)
    op.create_table(
        "reasons",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_reasons")),
    )
    op.create_table(
        "wrap_ups",
        sa.Column("num", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("call_id", sa.String(length=32), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("note", sa.String(length=512), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name=op.f("fk_wrap_ups_agent_id_agents")),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name=op.f("fk_wrap_ups_call_id_calls")),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_wrap_ups_session_id_sessions")
        ),
        sa.PrimaryKeyConstraint("num", name=op.f("pk_wrap_ups")),
    )
    with op.batch_alter_table("wrap_ups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wrap_ups_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_wrap_ups_call_id"), ["call_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_wrap_ups_session_id"), ["session_id"], unique=False)


def downgrade() -> None:
    op.drop_table("wrap_ups")
    op.drop_table("reasons")
    op.drop_table("team_members")
    op.drop_table("teams")
    with op.batch_alter_table("state_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_state_changes_at"))
        batch_op.drop_column("actor")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("supervisor")
