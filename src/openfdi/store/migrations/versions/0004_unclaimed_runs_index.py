"""runs: partial index of unclaimed runs, polled by worker processes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UNCLAIMED_SQL = "state = 'starting' AND lease_owner IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_unclaimed",
            ["created_at"],
            unique=False,
            sqlite_where=sa.text(UNCLAIMED_SQL),
            postgresql_where=sa.text(UNCLAIMED_SQL),
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_unclaimed")
