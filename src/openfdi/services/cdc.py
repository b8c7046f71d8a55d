"""Composite (CDC) tasks: init with auto-mapping, create, update, table mappings, reset, the
run's spec, the read of a composite task's settings and mappings (the console's pages), and the
clean-up of a deleted task's slot (docs/cdc.md).

A composite task starts as a draft (`cdc_tasks` row, from init) and becomes a task (its `tasks`
row, `ext_type` "CDC") at create; from then on it lists, counts, starts and stops like any task.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openfdi.connectors.cdc import my_apply, my_source, pg_apply, pg_source
from openfdi.connectors.errors import ConnectorError, TransientConnectorError
from openfdi.domain import cdc
from openfdi.domain.ids import new_hex_id
from openfdi.domain.scope import Scope
from openfdi.domain.states import DesiredState, RunTrigger, TaskType
from openfdi.engine.cdc import CdcRunSpec, reset_binlog_position
from openfdi.engine.spec import Endpoint
from openfdi.errors import (
    ConnectivityTestFailed,
    FdiError,
    InvalidParameter,
    MappingInvalid,
    TaskAlreadyRunning,
    TaskDeleteFailed,
    TaskNotFound,
)
from openfdi.services.datasources import decrypt_content
from openfdi.services.lookup import get_datasource_row, get_task_row
from openfdi.services.runtime import Runtime
from openfdi.store import runs
from openfdi.store.tables import CdcMappingRow, CdcTaskRow, DatasourceRow, RunRow, TaskRow
from openfdi.wire.cdc import (
    MappingIdResponse,
    MessageResponse,
    MultiTaskIdResponse,
    MultiTaskInitElement,
    MultiTaskInitRequest,
    MultiTaskMappingCreateRequest,
    MultiTaskMappingElement,
    MultiTaskRequest,
    MultiTaskResetRequest,
    MultiTaskUpdateRequest,
)

_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,99}$")
_TASK_TAG = re.compile(r"^[A-Za-z0-9_-]{4,64}$")
_TASK_ID = re.compile(r"^[a-z0-9_]{3,32}$")
_ACTIVE = ("starting", "running", "stopping")


def _rule(exc: cdc.CdcRuleError) -> InvalidParameter:
    return InvalidParameter(name=exc.field, detail=exc.detail)


def _content(rt: Runtime, row: DatasourceRow) -> dict[str, Any]:
    return decrypt_content(rt, row.content)


def _draft(session: Session, scope: Scope, task_id: str) -> CdcTaskRow:
    row = session.get(CdcTaskRow, task_id)
    if row is None or row.project_id != scope.project_id or row.instance_id != scope.instance_id:
        raise TaskNotFound()
    return row


def _mapping_element(m: CdcMappingRow) -> MultiTaskMappingElement:
    return MultiTaskMappingElement(
        id=m.id,
        source_table=m.source_table,
        target_table=m.target_table,
        updated_time=m.updated_at,
        status=m.status,
    )


def _connect_error(side: str, exc: ConnectorError) -> ConnectivityTestFailed:
    return ConnectivityTestFailed(detail=f"the {side} data source: {exc.message}")


# --- init ----------------------------------------------------------------------------------


def install_multi_tasks(
    rt: Runtime, scope: Scope, req: MultiTaskInitRequest
) -> list[MultiTaskInitElement]:
    """Allocate a task id for the pair of data sources; with `auto_mapping`, map every source
    table that has a primary key to the target table of the same name, where one exists."""
    for name in ("source_datasource_id", "target_datasource_id"):
        if not getattr(req, name):
            raise InvalidParameter(name=name, detail="Required.")
    task_id = req.task_id or new_hex_id()
    if not _TASK_ID.match(task_id):
        raise InvalidParameter(name="task_id", detail="3 to 32 of a-z, 0-9, _ (or empty).")
    with rt.db.read() as session:
        source = get_datasource_row(session, scope, str(req.source_datasource_id))
        target = get_datasource_row(session, scope, str(req.target_datasource_id))
        try:
            cdc.check_endpoint_types(source.type, target.type)
        except cdc.CdcRuleError as exc:
            raise _rule(exc) from exc
        if (
            session.get(CdcTaskRow, task_id) is not None
            or session.get(TaskRow, task_id) is not None
        ):
            raise InvalidParameter(name="task_id", detail="A task with this id exists already.")
        source_content, target_content = _content(rt, source), _content(rt, target)
    for side, row, content in (
        ("source", source, source_content),
        ("target", target, target_content),
    ):
        # The data source connector's own check: reachable, and not openfdi's own metadata
        # database (refused by what the server says it is).
        try:
            with rt.registry.open(row.type, content) as connector:
                connector.check()
        except ConnectorError as exc:
            raise _connect_error(side, exc) from exc
    if source.type == "MYSQL":  # refused now, naming the server setting to change
        _check_binlog_source(source_content)
    pairs: list[tuple[str, str]] = []
    if req.auto_mapping:
        pairs = _auto_pairs(source.type, source_content, target.type, target_content)
    now = rt.clock_ms()
    taken = InvalidParameter(name="task_id", detail="A task with this id exists already.")
    with _lost_race(taken), rt.db.write() as session:
        session.add(
            CdcTaskRow(
                task_id=task_id,
                project_id=scope.project_id,
                instance_id=scope.instance_id,
                source_datasource_id=source.id,
                target_datasource_id=target.id,
                operation_types=",".join(cdc.OPERATION_TYPES),
                repull_snapshot=False,
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        rows = [
            CdcMappingRow(
                id=new_hex_id(),
                task_id=task_id,
                source_table=s,
                target_table=t,
                status=cdc.MAPPING_STATUS_AUTO,
                created_at=now,
                updated_at=now,
            )
            for s, t in pairs
        ]
        session.add_all(rows)
        session.flush()
        element = MultiTaskInitElement(
            task_id=task_id,
            source_datasource_id=source.id,
            target_datasource_id=target.id,
            source_datasource_name=source.name,
            target_datasource_name=target.name,
            source_datasource_type=source.type,
            target_datasource_type=target.type,
            source_app_id=source.app_id,
            target_app_id=target.app_id,
            mappings=[_mapping_element(m) for m in rows[: cdc.INIT_MAPPINGS_SHOWN]],
            mappings_total_count=len(rows),
        )
    return [element]


def _check_binlog_source(content: dict[str, Any]) -> None:
    try:
        conn = my_source.connect(content)
        try:
            my_source.check_server(conn)
        finally:
            conn.close()
    except ConnectorError as exc:
        raise InvalidParameter(name="source_datasource_id", detail=exc.message) from exc


def _auto_pairs(
    source_type: str, source: dict[str, Any], target_type: str, target: dict[str, Any]
) -> list[tuple[str, str]]:
    try:
        found = _source_tables(source_type, source)
    except ConnectorError as exc:
        raise _connect_error("source", exc) from exc
    try:
        on_target = {t for t, _ in _source_tables(target_type, target)}
    except ConnectorError as exc:
        raise _connect_error("target", exc) from exc
    pairs = [(t, _default_target(source_type, target_type, target, t)) for t, k in found if k]
    return [(str(s), str(t)) for s, t in pairs if t in on_target]


def _source_tables(source_type: str, source: dict[str, Any]) -> list[tuple[cdc.TableName, bool]]:
    if source_type == "MYSQL":
        conn = my_source.connect(source)
        try:
            with my_source.mapped_errors("cannot list the source's tables"):
                return my_source.list_tables_with_keys(conn, my_source.database(source))
        finally:
            conn.close()
    with pg_source.connect(source) as conn:
        return pg_source.list_tables_with_keys(conn)


def _default_target(
    source_type: str, target_type: str, target: dict[str, Any], table: cdc.TableName
) -> cdc.TableName:
    """The target table a source table maps to by default: the same `schema.table` between
    PostgreSQL databases; with MySQL on either side (a MySQL table's schema is its database),
    the table of the same name in the target's database (MySQL) or `public` schema."""
    if target_type == "MYSQL":
        return cdc.TableName(my_source.database(target), table.name)
    return cdc.TableName("public", table.name) if source_type == "MYSQL" else table


# --- create and update ---------------------------------------------------------------------


def _operations(values: list[str] | None) -> tuple[str, ...]:
    try:
        return cdc.operation_types(values)
    except cdc.CdcRuleError as exc:
        raise _rule(exc) from exc


def _detail(operations: tuple[str, ...]) -> str:
    return json.dumps({"composite": True, "operation_types": list(operations)})


# --- reading a composite task -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MappingLine:
    mapping_id: str
    source_table: str
    target_table: str
    added: str  # AUTO (init's auto-mapping) | MANUAL (added one by one)
    updated_ms: int


@dataclass(frozen=True, slots=True)
class CompositeView:
    task_id: str
    created: bool  # False: a draft (init done, create not yet)
    source_datasource_id: str
    target_datasource_id: str
    source_name: str
    target_name: str
    source_type: str
    target_type: str
    operation_types: tuple[str, ...]
    repull_pending: bool
    mappings: tuple[MappingLine, ...]


def show_multi_task(rt: Runtime, scope: Scope, task_id: str) -> CompositeView | None:
    """The composite settings and table mappings of a task or draft (init done, create not yet)
    of this project and instance; None where there is none or the task is not a composite one."""
    with rt.db.read() as session:
        draft = session.get(CdcTaskRow, task_id)
        if (
            draft is None
            or draft.project_id != scope.project_id
            or draft.instance_id != scope.instance_id
        ):
            return None
        task = session.get(TaskRow, task_id)
        if task is not None and task.ext_type != "CDC":
            return None
        source = session.get_one(DatasourceRow, draft.source_datasource_id)
        target = session.get_one(DatasourceRow, draft.target_datasource_id)
        rows = session.scalars(
            select(CdcMappingRow)
            .where(CdcMappingRow.task_id == task_id)
            .order_by(CdcMappingRow.created_at, CdcMappingRow.source_table)
        ).all()
        return CompositeView(
            task_id=task_id,
            created=task is not None,
            source_datasource_id=source.id,
            target_datasource_id=target.id,
            source_name=source.name,
            target_name=target.name,
            source_type=source.type,
            target_type=target.type,
            operation_types=tuple(o for o in draft.operation_types.split(",") if o),
            repull_pending=draft.repull_snapshot,
            mappings=tuple(
                MappingLine(m.id, m.source_table, m.target_table, m.status, m.updated_at)
                for m in rows
            ),
        )


def create_multi_tasks(rt: Runtime, scope: Scope, req: MultiTaskRequest) -> MultiTaskIdResponse:
    if not req.task_name or not _TASK_NAME.match(req.task_name):
        raise InvalidParameter(
            name="task_name",
            detail="3 to 100 characters: a letter or digit first, then letters, digits, '._-'.",
        )
    if (req.task_type or "REALTIME").upper() != TaskType.REALTIME.value:
        raise InvalidParameter(name="task_type", detail="A composite task is REALTIME.")
    operations = _operations(req.operation_types)
    if req.description is not None and len(req.description) > 1024:
        raise InvalidParameter(name="description", detail="At most 1024 characters.")
    if req.task_tag and not _TASK_TAG.match(req.task_tag):
        raise InvalidParameter(name="task_tag", detail="4 to 64 characters of [A-Za-z0-9_-].")
    if not req.task_id:
        raise InvalidParameter(
            name="task_id", detail="Call multi-tasks/init first and send the task_id it gave."
        )
    with rt.db.read() as session:
        source_row = session.get_one(
            DatasourceRow, _draft(session, scope, req.task_id).source_datasource_id
        )
        source_type, source_content = source_row.type, _content(rt, source_row)
    if source_type == "MYSQL":  # its settings may have changed since init
        _check_binlog_source(source_content)
    now = rt.clock_ms()
    try:
        _create_task_row(rt, scope, req.task_id, req, operations, now)
    except IntegrityError:  # a concurrent create of this draft, or of the name, won
        with rt.db.read() as session:
            refusal = _created_or_named(session, scope, req.task_id, req.task_name)
        if refusal is None:
            raise
        raise refusal from None
    return MultiTaskIdResponse(task_id=req.task_id)


def _create_task_row(
    rt: Runtime,
    scope: Scope,
    task_id: str,
    req: MultiTaskRequest,
    operations: tuple[str, ...],
    now: int,
) -> None:
    """The draft becomes a task (its `tasks` row), stopped."""
    with rt.db.write() as session:
        draft = _draft(session, scope, task_id)
        refusal = _created_or_named(session, scope, task_id, req.task_name)
        if refusal is not None:
            raise refusal
        draft.operation_types = ",".join(operations)
        draft.updated_at = now
        session.add(
            TaskRow(
                id=draft.task_id,
                project_id=scope.project_id,
                instance_id=scope.instance_id,
                name=req.task_name,
                task_type=TaskType.REALTIME.value,
                source_datasource_id=draft.source_datasource_id,
                target_datasource_id=draft.target_datasource_id,
                description=req.description,
                task_tag=req.task_tag or None,
                task_detail=_detail(operations),
                status=DesiredState.STOPPED.value,
                ext_type="CDC",
                version=1,
                created_at=now,
                updated_at=now,
            )
        )


def _created_or_named(
    session: Session, scope: Scope, task_id: str | None, name: str | None
) -> InvalidParameter | None:
    """Why a create of this draft under this name cannot be (None: it can)."""
    if task_id and session.get(TaskRow, task_id) is not None:
        return InvalidParameter(name="task_id", detail="This task was created already.")
    taken = session.scalar(
        select(TaskRow.id).where(TaskRow.instance_id == scope.instance_id, TaskRow.name == name)
    )
    if taken is not None:
        return InvalidParameter(name="task_name", detail=f"A task named {name!r} exists already.")
    return None


@contextlib.contextmanager
def _lost_race(refusal: FdiError) -> Iterator[None]:
    """A unique key broken at commit: a concurrent caller's same write won after our check
    passed. The late caller gets the answer the check would have given it."""
    try:
        yield
    except IntegrityError as exc:
        raise refusal from exc


def _composite(session: Session, scope: Scope, task_id: str) -> tuple[TaskRow, CdcTaskRow]:
    task = get_task_row(session, scope, task_id)
    draft = session.get(CdcTaskRow, task_id)
    if task.ext_type != "CDC" or draft is None:
        raise InvalidParameter(name="task_id", detail="This task is not a composite task.")
    return task, draft


def _has_active_run(session: Session, task_id: str) -> bool:
    found = session.scalar(
        select(RunRow.id).where(RunRow.task_id == task_id, RunRow.state.in_(_ACTIVE)).limit(1)
    )
    return found is not None


def update_multi_tasks(
    rt: Runtime, scope: Scope, task_id: str, req: MultiTaskUpdateRequest
) -> MultiTaskIdResponse:
    operations = _operations(req.operation_types)
    if req.repulling_snapshot is None:
        raise InvalidParameter(name="repulling_snapshot", detail="Required: true or false.")
    if req.task_tag and not _TASK_TAG.match(req.task_tag):
        raise InvalidParameter(name="task_tag", detail="4 to 64 characters of [A-Za-z0-9_-].")
    with rt.db.write() as session:
        task, draft = _composite(session, scope, task_id)
        if task.status == DesiredState.RUNNING.value or _has_active_run(session, task.id):
            raise TaskAlreadyRunning(
                "One or more tasks are running. Stop the task before changing it."
            )
        now = rt.clock_ms()
        if req.description is not None:
            task.description = req.description
        if req.task_tag is not None:
            task.task_tag = req.task_tag or None
        task.task_detail = _detail(operations)
        task.version += 1
        task.updated_at = now
        draft.operation_types = ",".join(operations)
        draft.repull_snapshot = draft.repull_snapshot or req.repulling_snapshot
        draft.updated_at = now
    return MultiTaskIdResponse(task_id=task_id)


# --- mappings ------------------------------------------------------------------------------


def create_multi_task_mappings(
    rt: Runtime, scope: Scope, task_id: str, req: MultiTaskMappingCreateRequest
) -> MappingIdResponse:
    """Add a table; a running task restarts its run, which copies the new table under a fresh
    snapshot and then streams it."""
    if not req.source_table:
        raise MappingInvalid(detail="source_table is required.")
    with rt.db.read() as session:
        draft = _draft(session, scope, task_id)
        source_row = session.get_one(DatasourceRow, draft.source_datasource_id)
        source_type, source = source_row.type, _content(rt, source_row)
        target_row = session.get_one(DatasourceRow, draft.target_datasource_id)
        target_type = target_row.type
        target = _content(rt, target_row)
    try:
        source_table = cdc.TableName.parse(req.source_table, "source_table")
        if source_type == "MYSQL" and "." not in req.source_table:  # a table of its database
            source_table = cdc.TableName(my_source.database(source), source_table.name)
        target_table = (
            cdc.TableName.parse(req.target_table, "target_table")
            if req.target_table
            else _default_target(source_type, target_type, target, source_table)
        )
        if target_type == "MYSQL" and req.target_table and "." not in req.target_table:
            target_table = cdc.TableName(my_source.database(target), target_table.name)
    except cdc.CdcRuleError as exc:
        raise MappingInvalid(detail=exc.detail) from exc
    if req.mapping_columns and any(
        (m.source_column or "") != (m.target_column or m.source_column or "")
        for m in req.mapping_columns
    ):
        raise MappingInvalid(
            detail="columns are mapped by name: each source column goes to the target column "
            "of the same name (renames are not supported)."
        )
    with rt.db.read() as session:
        draft = _draft(session, scope, task_id)
        for name, given, own in (
            ("source_datasource_id", req.source_datasource_id, draft.source_datasource_id),
            ("target_datasource_id", req.target_datasource_id, draft.target_datasource_id),
        ):
            if given is not None and given != own:
                raise MappingInvalid(detail=f"{name} is not the task's.")
    _check_tables(source_type, source, target_type, target, source_table, target_table)
    now = rt.clock_ms()
    mapping_id = new_hex_id()
    mapped = MappingInvalid(detail=f"table {source_table} is mapped already.")
    with _lost_race(mapped), rt.db.write() as session:
        draft = _draft(session, scope, task_id)
        exists = session.scalar(
            select(CdcMappingRow.id).where(
                CdcMappingRow.task_id == task_id,
                CdcMappingRow.source_table == str(source_table),
            )
        )
        if exists is not None:
            raise mapped
        session.add(
            CdcMappingRow(
                id=mapping_id,
                task_id=task_id,
                source_table=str(source_table),
                target_table=str(target_table),
                status=cdc.MAPPING_STATUS_MANUAL,
                created_at=now,
                updated_at=now,
            )
        )
    _restart_run(rt, task_id)
    return MappingIdResponse(mapping_id=mapping_id)


def _table_columns(
    kind: str, content: dict[str, Any], table: cdc.TableName
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if kind == "MYSQL":
        conn = my_source.connect(content)
        try:
            with my_source.mapped_errors(f"cannot read table {table}"):
                shape = my_source.table_columns(conn, table)
        finally:
            conn.close()
        return shape.columns, shape.key
    with pg_source.connect(content) as conn:
        return pg_source.table_columns(conn, table)


def _check_tables(
    source_type: str,
    source: dict[str, Any],
    target_type: str,
    target: dict[str, Any],
    source_table: cdc.TableName,
    target_table: cdc.TableName,
) -> None:
    try:
        columns, key = _table_columns(source_type, source, source_table)
        cdc.check_primary_key(source_table, key)
    except cdc.CdcRuleError as exc:
        raise MappingInvalid(detail=exc.detail) from exc
    except ConnectorError as exc:
        raise MappingInvalid(detail=f"source: {exc.message}") from exc
    try:
        target_columns, _ = _table_columns(target_type, target, target_table)
    except ConnectorError as exc:
        raise MappingInvalid(detail=f"target: {exc.message}") from exc
    missing = [c for c in columns if c not in target_columns]
    if missing:
        raise MappingInvalid(
            detail=f"target table {target_table} has no column {missing[0]!r} of {source_table}."
        )


def delete_multi_task_mapping(
    rt: Runtime, scope: Scope, task_id: str, mapping_id: str
) -> MappingIdResponse:
    with rt.db.write() as session:
        _draft(session, scope, task_id)
        row = session.get(CdcMappingRow, mapping_id)
        if row is None or row.task_id != task_id:
            raise MappingInvalid(detail="no such mapping in this task.")
        session.delete(row)
    _restart_run(rt, task_id)
    return MappingIdResponse(mapping_id=mapping_id)


def _restart_run(rt: Runtime, task_id: str) -> None:
    """The task changed: a started task's run stops, and the supervisor starts the next one
    (it starts a run for a started task changed since its last run), which follows the new
    set of tables."""
    with rt.db.write() as session:
        task = session.get(TaskRow, task_id)
        if task is None:  # still a draft: nothing runs
            return
        task.version += 1
        task.updated_at = rt.clock_ms()
        started = task.status == DesiredState.RUNNING.value
    if not started:
        return
    deadline = int(rt.settings.stop_deadline_seconds * 1000) + 3_000
    stopped = runs.request_stop(rt.db, task_id, rt.clock_ms(), deadline)
    if rt.executor is not None:
        for run_id in stopped:
            rt.executor.stop(run_id)


def reset_multi_task_offset(
    rt: Runtime, scope: Scope, task_id: str, req: MultiTaskResetRequest
) -> MessageResponse:
    """A MySQL source: the stopped task's next run reads the binlog from the first transaction
    committed at or after `date_from` (engine.cdc.reset_binlog_position). A PostgreSQL slot
    only moves forward: its server has already recycled the WAL before its confirmed position,
    so a reset to a date is refused with what to do instead."""
    if req.date_from is None:
        raise InvalidParameter(name="date_from", detail="Required: epoch milliseconds.")
    if req.date_from < 0:
        raise InvalidParameter(name="date_from", detail="Epoch milliseconds, 0 or more.")
    with rt.db.read() as session:
        task, draft = _composite(session, scope, task_id)
        source_row = session.get_one(DatasourceRow, draft.source_datasource_id)
        target_row = session.get_one(DatasourceRow, draft.target_datasource_id)
        if source_row.type != "MYSQL":
            raise InvalidParameter(
                name="date_from",
                detail="A PostgreSQL source's log cannot be read again from an earlier time: "
                "its replication slot only moves forward and the server has recycled older "
                "WAL. Set repulling_snapshot with update_multi_tasks to copy the tables again "
                "instead.",
            )
        if task.status == DesiredState.RUNNING.value or _has_active_run(session, task.id):
            raise TaskAlreadyRunning(
                "One or more tasks are running. Stop the task before resetting its position."
            )
        source = Endpoint(source_row.type, _content(rt, source_row))
        target = Endpoint(target_row.type, _content(rt, target_row))
    when = _utc_text(req.date_from)
    try:
        position = reset_binlog_position(source, target, task_id, req.date_from)
    except my_source.LogTooShort as exc:
        raise InvalidParameter(
            name="date_from",
            detail=f"the source's binary log no longer reaches back to {when}: its oldest "
            f"file {exc.oldest_file} begins at {_utc_text(exc.begins_ms)} (older files were "
            "purged). Set repulling_snapshot with update_multi_tasks to copy the tables again "
            "instead.",
        ) from exc
    except TransientConnectorError as exc:
        raise ConnectivityTestFailed(detail=exc.message) from exc
    except ConnectorError as exc:
        raise InvalidParameter(name="date_from", detail=exc.message) from exc
    return MessageResponse(
        message=f"The task resumes at {position}, the "
        f"first transaction committed at or after {when}, when it starts."
    )


def _utc_text(epoch_ms: int) -> str:
    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- runs and deletion ---------------------------------------------------------------------


def build_cdc_spec(rt: Runtime, run_id: str, task_id: str, trigger: str) -> CdcRunSpec:
    """What a composite run needs. A pending re-snapshot drops the slot and the saved
    positions first, so the run copies every table again."""
    with rt.db.read() as session:
        draft = session.get_one(CdcTaskRow, task_id)
        source_row = session.get_one(DatasourceRow, draft.source_datasource_id)
        target_row = session.get_one(DatasourceRow, draft.target_datasource_id)
        source = Endpoint(source_row.type, _content(rt, source_row))
        target = Endpoint(target_row.type, _content(rt, target_row))
        rows = session.scalars(
            select(CdcMappingRow)
            .where(CdcMappingRow.task_id == task_id)
            .order_by(CdcMappingRow.created_at, CdcMappingRow.id)
        ).all()
        mappings = tuple(
            cdc.TableMapping(
                m.id,
                cdc.TableName.parse(m.source_table, "source_table"),
                cdc.TableName.parse(m.target_table, "target_table"),
            )
            for m in rows
        )
        repull, operations = draft.repull_snapshot, draft.operation_types
    if not mappings:
        raise ConnectorError("the task maps no table: add one with create_multi_task_mappings")
    if repull:
        if source.type != "MYSQL":  # a binlog reader leaves nothing on its source
            pg_source.drop_objects(source.content, task_id)
        _forget_task(target.type, target.content, task_id)
        with rt.db.write() as session:
            session.get_one(CdcTaskRow, task_id).repull_snapshot = False
    return CdcRunSpec(
        run_id=run_id,
        task_id=task_id,
        source=source,
        target=target,
        mappings=mappings,
        operations=frozenset(operations.split(",")),
        follows_source=trigger == RunTrigger.SUPERVISOR,
    )


def discard_draft(session: Session, scope: Scope, task_id: str) -> bool:
    """Delete a draft that never became a task, with its mappings; False if there is none."""
    draft = session.get(CdcTaskRow, task_id)
    if (
        draft is None
        or draft.project_id != scope.project_id
        or draft.instance_id != scope.instance_id
        or session.get(TaskRow, task_id) is not None
    ):
        return False
    session.execute(delete(CdcMappingRow).where(CdcMappingRow.task_id == task_id))
    session.delete(draft)
    return True


def delete_composite(rt: Runtime, session: Session, task: TaskRow) -> None:
    """Before a composite task's row goes: drop its slot and publication on the source (a
    forgotten slot keeps WAL forever and fills the source's disk) and its saved positions."""
    draft = session.get(CdcTaskRow, task.id)
    if draft is None:
        return
    source_row = session.get_one(DatasourceRow, draft.source_datasource_id)
    source = _content(rt, source_row)
    target_row = session.get_one(DatasourceRow, draft.target_datasource_id)
    target = _content(rt, target_row)
    try:
        if source_row.type != "MYSQL":  # a binlog reader leaves nothing on its source
            pg_source.drop_objects(source, task.id)
    except ConnectorError as exc:
        raise TaskDeleteFailed(
            detail=f"cannot drop the replication slot {cdc.slot_name(task.id)} on the source "
            f"({exc.message}); a slot left behind keeps the source's WAL forever. Make the "
            "source reachable and delete again"
        ) from exc
    # Positions of a deleted task are never read again; the slot was what mattered.
    with contextlib.suppress(ConnectorError, psycopg.Error, OSError, my_source.MySQLError):
        _forget_task(target_row.type, target, task.id)
    session.delete(draft)


def _forget_task(kind: str, content: dict[str, Any], task_id: str) -> None:
    """Delete a task's saved positions from its target."""
    if kind == "MYSQL":
        my_apply.forget_task(content, task_id)
    else:
        pg_apply.forget_task(content, task_id)
