"""Issue 18: the sequencer finds the unsequenced events by a partial index (D83).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None

_UNSEQUENCED = sa.text("pos IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_journal_unsequenced",
        "journal",
        ["num"],
        unique=False,
        postgresql_where=_UNSEQUENCED,
        sqlite_where=_UNSEQUENCED,
    )


def downgrade() -> None:
    op.drop_index("ix_journal_unsequenced", table_name="journal")
