"""runs: stop deadline of a stopping run; run triggers are manual | schedule | supervisor

A run in `stopping` now carries the time by which it ends CANCELLED whoever holds it
(`stop_deadline_at`). Runs left in `stopping` by earlier versions (no deadline: a state nothing
ended) get a deadline in the past, so the supervisor's next pass ends them. The supervisor's
triggers `realtime` and `resume` become one, `supervisor`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stop_deadline_at", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE runs SET stop_deadline_at = 0 WHERE state = 'stopping' AND stop_deadline_at IS NULL"
    )
    op.execute("UPDATE runs SET trigger = 'supervisor' WHERE trigger IN ('realtime', 'resume')")


def downgrade() -> None:
    op.execute("UPDATE runs SET trigger = 'realtime' WHERE trigger = 'supervisor'")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("stop_deadline_at")
