"""Table definitions (SQLAlchemy 2 declarative). Row classes end in `Row`; times are epoch ms UTC.

Single flight is enforced here, by the database: `ux_runs_active_task` allows at most one run per
task in an active state (the slice runs of a parallel copy, children of one run, not counted),
and `ux_runs_fire` makes a scheduled fire (task + fire time) unique.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ProjectRow(Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class InstanceRow(Base):
    __tablename__ = "instances"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)


class UserRow(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger)


class CredentialRow(Base):
    __tablename__ = "credentials"
    ak: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    sk_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class TokenRow(Base):
    __tablename__ = "tokens"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class DatasourceRow(Base):
    __tablename__ = "datasources"
    __table_args__ = (UniqueConstraint("instance_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32), index=True)
    app_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # JSON text of the FDI `content` object, with secret fields replaced by their ciphertext.
    content: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class TaskRow(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("instance_id", "name"),
        Index("ix_tasks_instance_created", "instance_id", "created_at"),
        # The scheduler reads what changed since its last pass (scheduler/planner.py).
        Index("ix_tasks_updated_at", "updated_at"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    task_type: Mapped[str] = mapped_column(String(16))
    source_datasource_id: Mapped[str] = mapped_column(ForeignKey("datasources.id"), index=True)
    target_datasource_id: Mapped[str] = mapped_column(ForeignKey("datasources.id"), index=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    task_tag: Mapped[str | None] = mapped_column(String(64), nullable=True)
    task_detail: Mapped[str] = mapped_column(Text)
    # Desired state: 0 stopped, 1 running. Runs record what actually happened.
    status: Mapped[int] = mapped_column(Integer, default=0)
    ext_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class DispatchRow(Base):
    __tablename__ = "dispatches"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), unique=True)
    start_datetime: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str | None] = mapped_column(String(8), nullable=True)
    dispatch_interval: Mapped[int | None] = mapped_column(Integer, nullable=True)
    remark: Mapped[str | None] = mapped_column(String(255), nullable=True)
    use_quartz_cron: Mapped[bool] = mapped_column(Boolean, default=False)
    cron: Mapped[str | None] = mapped_column(String(255), nullable=True)
    cron_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # openfdi extension: fire_once | skip | fire_all (domain.schedule.MisfirePolicy).
    misfire_policy: Mapped[str] = mapped_column(
        String(16), default="fire_once", server_default="fire_once"
    )
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger, index=True)


ACTIVE_STATES_SQL = "state IN ('starting', 'running', 'stopping')"
ACTIVE_TOP_SQL = f"{ACTIVE_STATES_SQL} AND parent_run_id IS NULL"
"""Single flight counts the runs users start, not the slice runs of a parallel copy."""
CHILD_SQL = "parent_run_id IS NOT NULL"
UNCLAIMED_SQL = "state = 'starting' AND lease_owner IS NULL"


class RunRow(Base):
    """One execution of a task. Writes by an executor carry `epoch` (fencing, see engine)."""

    __tablename__ = "runs"
    __table_args__ = (
        Index(
            "ux_runs_active_task",
            "task_id",
            unique=True,
            sqlite_where=text(ACTIVE_TOP_SQL),
            postgresql_where=text(ACTIVE_TOP_SQL),
        ),
        # A parallel copy's slice runs, found from their parent (store/runs.py).
        Index(
            "ix_runs_parent_run_id",
            "parent_run_id",
            sqlite_where=text(CHILD_SQL),
            postgresql_where=text(CHILD_SQL),
        ),
        UniqueConstraint("task_id", "fire_time", name="ux_runs_fire"),
        Index("ix_runs_task_created", "task_id", "created_at"),
        # Worker processes poll for runs to claim: this stays as small as the queue.
        Index(
            "ix_runs_unclaimed",
            "created_at",
            sqlite_where=text(UNCLAIMED_SQL),
            postgresql_where=text(UNCLAIMED_SQL),
        ),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(16))  # domain.states.RunTrigger
    fire_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Set when the run goes `stopping`: by then it ends CANCELLED, whoever holds it.
    stop_deadline_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    ended_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    data_count: Mapped[int] = mapped_column(BigInteger, default=0)
    dirty_data_count: Mapped[int] = mapped_column(BigInteger, default=0)
    data_size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    read_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    write_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    position: Mapped[str | None] = mapped_column(String(16), nullable=True)
    position_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    remarks: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A slice run of a parallel copy under the Celery executor (engine/slices.py): the run it
    # is a part of, and which key-range slice of that run's plan it copies. NULL: a run.
    parent_run_id: Mapped[str | None] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), nullable=True
    )
    slice_index: Mapped[int | None] = mapped_column(Integer, nullable=True)


class IdempotencyRow(Base):
    """First answer to a batch call sent with an `Idempotency-Key` header (fdi-api.md H.9)."""

    __tablename__ = "idempotency_keys"
    project_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)


class CheckpointRow(Base):
    """Where a task's next run resumes: the incremental watermark saved after a target commit."""

    __tablename__ = "checkpoints"
    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    watermark: Mapped[str | None] = mapped_column(Text, nullable=True)
    run_id: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[int] = mapped_column(BigInteger)


class DirtyRowRow(Base):
    """A row the target refused during a run, kept for inspection with the target's reason."""

    __tablename__ = "dirty_rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    row: Mapped[str] = mapped_column(Text)  # JSON array of the values, as text where needed
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)


class SignInThrottleRow(Base):
    """Failed password sign-ins counted per user name and per client address, and the locks they
    earned (written only by `store.signin_throttle`). In the database, so that every server
    process sharing it, and a restarted one, applies the same brake."""

    __tablename__ = "signin_throttle"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # "user" | "address"
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_attempt_at: Mapped[int] = mapped_column(BigInteger)
    locked_until: Mapped[int] = mapped_column(BigInteger)
    # When the row no longer matters (lock over, failures forgotten): rows past it are deleted.
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class ConsoleSessionRow(Base):
    """A signed-in web console session (services.sessions). Only the SHA-256 of the cookie's
    token is kept, like IAM tokens: a leaked database holds no usable session."""

    __tablename__ = "console_sessions"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class CdcTaskRow(Base):
    """A composite (CDC) task's ends and settings, from `multi-tasks/init` on. Its `tasks` row
    (name, desired state) exists once `create_multi_tasks` named it: until then the task is a
    draft that only the multi-task endpoints see."""

    __tablename__ = "cdc_tasks"
    task_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    instance_id: Mapped[str] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), index=True
    )
    source_datasource_id: Mapped[str] = mapped_column(ForeignKey("datasources.id"), index=True)
    target_datasource_id: Mapped[str] = mapped_column(ForeignKey("datasources.id"), index=True)
    operation_types: Mapped[str] = mapped_column(String(32), default="INSERT,UPDATE,DELETE")
    # Set by update_multi_tasks(repulling_snapshot=true): the next run copies every table again.
    repull_snapshot: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class CdcMappingRow(Base):
    """One source table of a composite task and the target table its changes go to."""

    __tablename__ = "cdc_mappings"
    __table_args__ = (UniqueConstraint("task_id", "source_table"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    task_id: Mapped[str] = mapped_column(
        ForeignKey("cdc_tasks.task_id", ondelete="CASCADE"), index=True
    )
    source_table: Mapped[str] = mapped_column(String(255))  # schema.table
    target_table: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))  # AUTO | MANUAL
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
