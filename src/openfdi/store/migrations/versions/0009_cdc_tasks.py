"""cdc_tasks and cdc_mappings: composite (CDC) tasks and their table mappings

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 00:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cdc_tasks",
        sa.Column("task_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("source_datasource_id", sa.String(length=32), nullable=False),
        sa.Column("target_datasource_id", sa.String(length=32), nullable=False),
        sa.Column("operation_types", sa.String(length=32), nullable=False),
        sa.Column("repull_snapshot", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"],
            name=op.f("fk_cdc_tasks_project_id_projects"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"],
            name=op.f("fk_cdc_tasks_instance_id_instances"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_datasource_id"], ["datasources.id"],
            name=op.f("fk_cdc_tasks_source_datasource_id_datasources"),
        ),
        sa.ForeignKeyConstraint(
            ["target_datasource_id"], ["datasources.id"],
            name=op.f("fk_cdc_tasks_target_datasource_id_datasources"),
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_cdc_tasks")),
    )  # fmt: skip
    with op.batch_alter_table("cdc_tasks") as batch:
        batch.create_index(batch.f("ix_cdc_tasks_instance_id"), ["instance_id"])
        batch.create_index(batch.f("ix_cdc_tasks_source_datasource_id"), ["source_datasource_id"])
        batch.create_index(batch.f("ix_cdc_tasks_target_datasource_id"), ["target_datasource_id"])
    op.create_table(
        "cdc_mappings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("task_id", sa.String(length=32), nullable=False),
        sa.Column("source_table", sa.String(length=255), nullable=False),
        sa.Column("target_table", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["cdc_tasks.task_id"],
            name=op.f("fk_cdc_mappings_task_id_cdc_tasks"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdc_mappings")),
        sa.UniqueConstraint(
            "task_id", "source_table", name=op.f("uq_cdc_mappings_task_id_source_table")
        ),
    )  # fmt: skip
    with op.batch_alter_table("cdc_mappings") as batch:
        batch.create_index(batch.f("ix_cdc_mappings_task_id"), ["task_id"])


def downgrade() -> None:
    op.drop_table("cdc_mappings")
    op.drop_table("cdc_tasks")
