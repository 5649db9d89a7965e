"""One active session per visitor: a partial unique index instead of the routing lock.

A visitor's first message creates its session. Two of them racing (two
connections, two nodes) used to take turns on the cluster-wide routing lock;
now the second ``INSERT`` meets this index and sends its message to the
session the first one created (issue 18, docs/decisions.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_ACTIVE = sa.text("status <> 'closed'")


def upgrade() -> None:
    op.create_index(
        "uq_sessions_active_visitor",
        "sessions",
        ["visitor_id"],
        unique=True,
        postgresql_where=_ACTIVE,
        sqlite_where=_ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_sessions_active_visitor", table_name="sessions")
