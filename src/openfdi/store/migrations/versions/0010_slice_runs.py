"""runs: slice runs of a parallel copy (parent_run_id, slice_index), outside single flight

Under the Celery executor a TIMING copy with `parallelism` executes its key-range slices as
runs of their own (children of the run), each claimed by any worker. They are not runs of the
task as users see them: the single-flight index ignores them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ACTIVE_STATES_SQL = "state IN ('starting', 'running', 'stopping')"
ACTIVE_TOP_SQL = f"{ACTIVE_STATES_SQL} AND parent_run_id IS NULL"
CHILD_SQL = "parent_run_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_run_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("slice_index", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_runs_parent_run_id_runs"),
            "runs",
            ["parent_run_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.drop_index("ux_runs_active_task")
        batch_op.create_index(
            "ux_runs_active_task",
            ["task_id"],
            unique=True,
            sqlite_where=sa.text(ACTIVE_TOP_SQL),
            postgresql_where=sa.text(ACTIVE_TOP_SQL),
        )
        batch_op.create_index(
            "ix_runs_parent_run_id",
            ["parent_run_id"],
            unique=False,
            sqlite_where=sa.text(CHILD_SQL),
            postgresql_where=sa.text(CHILD_SQL),
        )


def downgrade() -> None:
    op.execute("DELETE FROM runs WHERE parent_run_id IS NOT NULL")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_parent_run_id")
        batch_op.drop_index("ux_runs_active_task")
        batch_op.create_index(
            "ux_runs_active_task",
            ["task_id"],
            unique=True,
            sqlite_where=sa.text(ACTIVE_STATES_SQL),
            postgresql_where=sa.text(ACTIVE_STATES_SQL),
        )
        batch_op.drop_constraint(batch_op.f("fk_runs_parent_run_id_runs"), type_="foreignkey")
        batch_op.drop_column("slice_index")
        batch_op.drop_column("parent_run_id")
