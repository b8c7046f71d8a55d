"""Common tasks: create, list, show, update, delete; statistics and the monitor overview."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from openfdi.connectors.errors import InvalidContentError
from openfdi.domain import apps
from openfdi.domain.ids import new_hex_id
from openfdi.domain.scope import Scope
from openfdi.domain.states import DesiredState, ExecuteStatus, TaskType
from openfdi.domain.task_detail import TaskDetailError, parse_task_detail
from openfdi.errors import (
    DatasourceNotFound,
    FdiError,
    InvalidParameter,
    TaskAlreadyRunning,
    TaskDeleteFailed,
    TaskNotFound,
)
from openfdi.services import cdc, dispatches
from openfdi.services.datasources import in_app
from openfdi.services.lookup import get_datasource_row, get_task_row
from openfdi.services.paging import like_pattern, numbered_page, record_page
from openfdi.services.runtime import Runtime
from openfdi.services.task_views import (
    execute_status_expr,
    latest_run_position,
    latest_run_started,
    latest_run_state,
)
from openfdi.store.tables import DatasourceRow, DispatchRow, RunRow, TaskRow
from openfdi.wire.tasks import (
    BriefTaskResponse,
    CommonTaskResponse,
    CountTasksResponse,
    CreateCommonTaskRequest,
    ListMonitorInfosResponse,
    ListTasksResponse,
    TaskBasicResponse,
    TaskMonitorInfo,
    TaskStatisticDetails,
)

_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,99}$")
_TASK_TAG = re.compile(r"^[A-Za-z0-9_-]{4,64}$")
MAX_TASK_DETAIL_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class _ValidTask:
    name: str
    task_type: TaskType
    description: str | None
    task_tag: str | None
    task_detail: str


def _validate(req: CreateCommonTaskRequest) -> _ValidTask:
    t = req.task
    if not _TASK_NAME.match(t.task_name):
        raise InvalidParameter(
            name="task_name",
            detail="3 to 100 characters: a letter or digit first, then letters, digits, '._-'.",
        )
    try:
        task_type = TaskType(t.task_type.upper())
    except ValueError as exc:
        raise InvalidParameter(name="task_type", detail="Use REALTIME or TIMING.") from exc
    if t.description is not None and len(t.description) > 1024:
        raise InvalidParameter(name="description", detail="At most 1024 characters.")
    if t.task_tag and not _TASK_TAG.match(t.task_tag):
        raise InvalidParameter(name="task_tag", detail="4 to 64 characters of [A-Za-z0-9_-].")
    if len(req.task_detail.encode()) > MAX_TASK_DETAIL_BYTES:
        raise InvalidParameter(name="task_detail", detail="At most 1 MiB.")
    try:
        parse_task_detail(req.task_detail)
    except TaskDetailError as exc:
        raise InvalidParameter(name="task_detail", detail=f"{exc}.") from exc
    return _ValidTask(t.task_name, task_type, t.description, t.task_tag or None, req.task_detail)


def _check_ends(
    rt: Runtime, valid: _ValidTask, source: DatasourceRow, target: DatasourceRow
) -> None:
    """Refuse now what a run could only fail on later: an end whose type no installed connector
    serves (or not in that role), a REALTIME task that has nothing to follow."""
    ends = (("source_datasource_id", source, "read"), ("target_datasource_id", target, "write"))
    for field, row, role in ends:
        caps = rt.registry.capabilities(row.type)
        if caps is None:
            raise InvalidParameter(
                name=field,
                detail=f"No connector is installed for data sources of type {row.type}; "
                "such a data source cannot be a task's source or target.",
            )
        if not getattr(caps, role):
            raise InvalidParameter(
                name=field, detail=f"The {row.type} connector cannot {role} data."
            )
    detail = parse_task_detail(valid.task_detail)
    for row, message, key in (
        (source, detail.source_message, "sourceSelectedDatasource"),
        (target, detail.target_message, "targetSelectedDatasource"),
    ):
        _check_message(rt, row.type, message, key)
    source_caps = rt.registry.capabilities(source.type)
    # A connector with a change feed of its own (a message source) follows by itself.
    polled = source_caps is None or not source_caps.realtime
    if (
        valid.task_type is TaskType.REALTIME
        and polled
        and parse_task_detail(valid.task_detail).incremental_column is None
    ):
        raise InvalidParameter(
            name="task_detail",
            detail="A REALTIME task from a table needs sourceSelectedDatasource.incremental "
            "(the column whose new values it follows).",
        )


def _check_message(rt: Runtime, kind: str, message: dict[str, Any] | None, key: str) -> None:
    """A message end's `message` keys, vetted by its connector's spec (naming the bad key)."""
    check = rt.registry.get(kind).check_options
    if check is None:
        if message is not None:
            raise InvalidParameter(
                name="task_detail", detail=f"{key}.message: a {kind} end takes no message keys."
            )
        return
    try:
        check(message or {})
    except InvalidContentError as exc:
        raise InvalidParameter(
            name="task_detail", detail=f"{key}.{exc.field or 'message'}: {exc.message}"
        ) from None


def _endpoint(session: Session, scope: Scope, field: str, datasource_id: str) -> DatasourceRow:
    try:
        return get_datasource_row(session, scope, datasource_id)
    except DatasourceNotFound as exc:
        raise InvalidParameter(name=field, detail="The data source does not exist.") from exc


def _apps(side: str, datasource: DatasourceRow) -> dict[str, str]:
    """`<side>_app_id` and `<side>_app_name` of a task end (see domain/apps.py)."""
    app_id = apps.app_id_of(datasource.app_id, datasource.instance_id)
    return {
        f"{side}_app_id": app_id,
        f"{side}_app_name": apps.app_name_of(app_id, datasource.instance_id),
    }


def _task_wire(task: TaskRow, source: DatasourceRow, target: DatasourceRow) -> CommonTaskResponse:
    return CommonTaskResponse(
        task=TaskBasicResponse(
            task_id=task.id,
            task_name=task.name,
            task_type=task.task_type.lower(),
            status=DesiredState(task.status).wire_name,
            project_id=task.project_id,
            source_datasource_id=source.id,
            target_datasource_id=target.id,
            source_datasource_name=source.name,
            target_datasource_name=target.name,
            **_apps("source", source),
            **_apps("target", target),
            created_date=task.created_at,
            last_modified_date=task.updated_at,
            description=task.description,
            task_tag=task.task_tag,
        ),
        task_detail=task.task_detail,
    )


def _lost_race(rt: Runtime, scope: Scope, req: CreateCommonTaskRequest, name: str) -> FdiError:
    """Why a create or update that passed its checks broke a constraint at commit: a data
    source it names was deleted meanwhile (the foreign key), or another task took the name."""
    with rt.db.read() as session:
        for field, datasource_id in (
            ("source_datasource_id", req.task.source_datasource_id),
            ("target_datasource_id", req.task.target_datasource_id),
        ):
            try:
                _endpoint(session, scope, field, datasource_id)
            except InvalidParameter as gone:
                return gone
    return InvalidParameter(name="task_name", detail=f"A task named {name!r} exists already.")


def create_common_task(
    rt: Runtime, scope: Scope, req: CreateCommonTaskRequest
) -> CommonTaskResponse:
    valid = _validate(req)
    now = rt.clock_ms()
    try:
        with rt.db.write() as session:
            source = _endpoint(
                session, scope, "source_datasource_id", req.task.source_datasource_id
            )
            target = _endpoint(
                session, scope, "target_datasource_id", req.task.target_datasource_id
            )
            _check_ends(rt, valid, source, target)
            task = TaskRow(
                id=new_hex_id(),
                project_id=scope.project_id,
                instance_id=scope.instance_id,
                name=valid.name,
                task_type=valid.task_type.value,
                source_datasource_id=source.id,
                target_datasource_id=target.id,
                description=valid.description,
                task_tag=valid.task_tag,
                task_detail=valid.task_detail,
                status=DesiredState.STOPPED.value,
                version=1,
                created_at=now,
                updated_at=now,
            )
            session.add(task)
            session.flush()
            return _task_wire(task, source, target)
    except IntegrityError as exc:
        raise _lost_race(rt, scope, req, valid.name) from exc


def show_task(rt: Runtime, scope: Scope, task_id: str) -> CommonTaskResponse:
    with rt.db.read() as session:
        task = get_task_row(session, scope, task_id)
        source = session.get_one(DatasourceRow, task.source_datasource_id)
        target = session.get_one(DatasourceRow, task.target_datasource_id)
        return _task_wire(task, source, target)


def _has_active_run(session: Session, task_id: str) -> bool:
    active = ("starting", "running", "stopping")
    found = session.scalar(
        select(RunRow.id).where(RunRow.task_id == task_id, RunRow.state.in_(active)).limit(1)
    )
    return found is not None


def update_task(
    rt: Runtime, scope: Scope, task_id: str, req: CreateCommonTaskRequest
) -> CommonTaskResponse:
    valid = _validate(req)
    try:
        with rt.db.write() as session:
            task = get_task_row(session, scope, task_id)
            if task.status == DesiredState.RUNNING.value or _has_active_run(session, task.id):
                raise TaskAlreadyRunning(
                    "One or more tasks are running. Stop the task before changing it."
                )
            if valid.task_type.value != task.task_type and task.task_type == TaskType.TIMING:
                # A plan belongs to a TIMING task; it goes when the task stops being one.
                plan = session.scalar(select(DispatchRow).where(DispatchRow.task_id == task.id))
                if plan is not None:
                    session.delete(plan)
            source = _endpoint(
                session, scope, "source_datasource_id", req.task.source_datasource_id
            )
            target = _endpoint(
                session, scope, "target_datasource_id", req.task.target_datasource_id
            )
            _check_ends(rt, valid, source, target)
            task.name = valid.name
            task.task_type = valid.task_type.value
            task.source_datasource_id = source.id
            task.target_datasource_id = target.id
            task.description = valid.description
            task.task_tag = valid.task_tag
            task.task_detail = valid.task_detail
            task.version += 1
            task.updated_at = rt.clock_ms()
            session.flush()
            return _task_wire(task, source, target)
    except IntegrityError as exc:
        raise _lost_race(rt, scope, req, valid.name) from exc


def delete_task(rt: Runtime, scope: Scope, task_id: str) -> None:
    """Delete a stopped task, or discard a composite task's draft (init done, create never:
    nothing ran, so nothing is left on the source)."""
    with rt.db.write() as session:
        try:
            task = get_task_row(session, scope, task_id)
        except TaskNotFound:
            if not cdc.discard_draft(session, scope, task_id):
                raise
            return
        if task.status == DesiredState.RUNNING.value or _has_active_run(session, task.id):
            raise TaskDeleteFailed(detail="the task is started; stop it first")
        if task.ext_type == "CDC":  # its slot on the source goes first (services/cdc.py)
            cdc.delete_composite(rt, session, task)
        session.delete(task)


# --- listing


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """The query of `GET …/tasks`; older docs' spellings are folded in by the api."""

    task_id: str | None = None
    name: str | None = None
    status: int | None = None
    task_type: str | None = None
    source_datasource_id: str | None = None
    target_datasource_id: str | None = None
    datasource_id: str | None = None
    execute_status: str | None = None
    source_app_id: str | None = None
    target_app_id: str | None = None
    task_tag: str | None = None
    sort_field: str | None = None
    sort_type: str | None = None


def _task_conditions(scope: Scope, f: TaskFilter, status_expr: Any) -> list[Any]:
    src, dst = aliased(DatasourceRow), aliased(DatasourceRow)
    where: list[Any] = [
        TaskRow.instance_id == scope.instance_id,
        TaskRow.project_id == scope.project_id,
    ]
    if f.task_id:
        where.append(TaskRow.id == f.task_id)
    if f.name:
        where.append(TaskRow.name.ilike(like_pattern(f.name), escape="\\"))
    if f.status is not None:
        if f.status not in (0, 1):
            raise InvalidParameter(name="status", detail="Use 0 (stopped) or 1 (running).")
        where.append(TaskRow.status == f.status)
    if f.task_type:
        try:
            where.append(TaskRow.task_type == TaskType(f.task_type.upper()).value)
        except ValueError as exc:
            raise InvalidParameter(name="task_type", detail="Use realtime or timing.") from exc
    if f.source_datasource_id:
        where.append(TaskRow.source_datasource_id == f.source_datasource_id)
    if f.target_datasource_id:
        where.append(TaskRow.target_datasource_id == f.target_datasource_id)
    if f.datasource_id:
        where.append(
            (TaskRow.source_datasource_id == f.datasource_id)
            | (TaskRow.target_datasource_id == f.datasource_id)
        )
    if f.execute_status:
        try:
            wanted = ExecuteStatus(f.execute_status.upper())
        except ValueError as exc:
            names = ", ".join(s.value for s in ExecuteStatus)
            raise InvalidParameter(name="execute_status", detail=f"Use one of {names}.") from exc
        where.append(status_expr == wanted.value)
    if f.source_app_id:
        where.append(
            TaskRow.source_datasource_id.in_(
                select(src.id)
                .where(in_app(src.app_id, f.source_app_id, scope.instance_id))
                .scalar_subquery()
            )
        )
    if f.target_app_id:
        where.append(
            TaskRow.target_datasource_id.in_(
                select(dst.id)
                .where(in_app(dst.app_id, f.target_app_id, scope.instance_id))
                .scalar_subquery()
            )
        )
    if f.task_tag:
        where.append(TaskRow.task_tag == f.task_tag)
    return where


def _ordering(f: TaskFilter) -> list[Any]:
    field = (f.sort_field or "CREATED_DATE").upper()
    direction = (f.sort_type or "DESC").upper()
    if field not in ("CREATED_DATE", "STATUS"):
        raise InvalidParameter(name="sort_field", detail="Use CREATED_DATE or STATUS.")
    if direction not in ("ASC", "DESC"):
        raise InvalidParameter(name="sort_type", detail="Use ASC or DESC.")
    column = TaskRow.created_at if field == "CREATED_DATE" else TaskRow.status
    primary = column.asc() if direction == "ASC" else column.desc()
    return [primary, TaskRow.created_at.desc(), TaskRow.id]


def list_tasks(
    rt: Runtime, scope: Scope, f: TaskFilter, offset: int | None, limit: int | None
) -> ListTasksResponse:
    page = record_page(offset, limit)
    status_expr = execute_status_expr(latest_run_state())
    where = _task_conditions(scope, f, status_expr)
    src, dst = aliased(DatasourceRow), aliased(DatasourceRow)
    query = (
        select(TaskRow, status_expr.label("execute_status"), src.app_id, dst.app_id)
        .join(src, src.id == TaskRow.source_datasource_id)
        .join(dst, dst.id == TaskRow.target_datasource_id)
        .where(*where)
        .order_by(*_ordering(f))
        .offset(page.offset)
        .limit(page.limit)
    )
    with rt.db.read() as session:
        total = session.scalar(select(func.count()).select_from(TaskRow).where(*where)) or 0
        rows = session.execute(query).all()
    entities = [
        BriefTaskResponse(
            task_id=t.id,
            task_name=t.name,
            task_type=t.task_type,
            status=t.status,
            created_date=_iso(t.created_at),
            version=str(t.version),
            last_modified_time=t.updated_at,
            execute_status=execute_status,
            source_app_id=apps.app_id_of(source_app, t.instance_id),
            target_app_id=apps.app_id_of(target_app, t.instance_id),
            source_instance_id=t.instance_id,
            target_instance_id=t.instance_id,
            ext_type=t.ext_type,
            task_tag=t.task_tag,
        )
        for t, execute_status, source_app, target_app in rows
    ]
    return ListTasksResponse(total=total, size=len(entities), entities=entities)


def count_tasks(rt: Runtime, scope: Scope) -> CountTasksResponse:
    """Each task counted once: abnormal (last run failed), running (started or running),
    completed (last run succeeded), or terminated (everything else)."""
    status_expr = execute_status_expr(latest_run_state())
    query = select(TaskRow.ext_type, TaskRow.status, status_expr).where(
        TaskRow.instance_id == scope.instance_id, TaskRow.project_id == scope.project_id
    )
    counts = {
        kind: {"running": 0, "abnormal": 0, "terminated": 0, "completed": 0}
        for kind in ("common", "cdc")
    }
    with rt.db.read() as session:
        for ext_type, desired, execute_status in session.execute(query):
            kind = "cdc" if ext_type == "CDC" else "common"
            if execute_status == ExecuteStatus.ERROR:
                counts[kind]["abnormal"] += 1
            elif desired == DesiredState.RUNNING or execute_status == ExecuteStatus.RUNNING:
                counts[kind]["running"] += 1
            elif execute_status == ExecuteStatus.SUCCESS:
                counts[kind]["completed"] += 1
            else:
                counts[kind]["terminated"] += 1

    def details(c: dict[str, int]) -> TaskStatisticDetails:
        return TaskStatisticDetails(
            running_tasks_count=c["running"],
            abnormal_tasks_count=c["abnormal"],
            terminated_tasks_count=c["terminated"],
            completed_tasks_count=c["completed"],
        )

    return CountTasksResponse(
        common_task_details=details(counts["common"]), cdc_task_details=details(counts["cdc"])
    )


def _contains_case_sensitive(session: Session, column: Any, fragment: str) -> Any:
    # The doc says this filter is case-sensitive; LIKE is not on SQLite, so use position search.
    if session.get_bind().dialect.name == "sqlite":
        return func.instr(column, fragment) > 0
    return func.strpos(column, fragment) > 0


def list_monitor_infos(
    rt: Runtime,
    scope: Scope,
    *,
    offset: int | None,
    limit: int | None,
    task_name: str | None,
    execute_status: str | None,
) -> ListMonitorInfosResponse:
    page = numbered_page(offset, limit)
    status_expr = execute_status_expr(latest_run_state())
    src, dst = aliased(DatasourceRow), aliased(DatasourceRow)
    now = rt.clock_ms()
    with rt.db.read() as session:
        where = _task_conditions(scope, TaskFilter(execute_status=execute_status), status_expr)
        if task_name:
            where.append(_contains_case_sensitive(session, TaskRow.name, task_name))
        total = session.scalar(select(func.count()).select_from(TaskRow).where(*where)) or 0
        rows = session.execute(
            select(
                TaskRow,
                status_expr,
                latest_run_started(),
                latest_run_position(),
                DispatchRow,
                src,
                dst,
            )
            .join(src, src.id == TaskRow.source_datasource_id)
            .join(dst, dst.id == TaskRow.target_datasource_id)
            .outerjoin(DispatchRow, DispatchRow.task_id == TaskRow.id)
            .where(*where)
            .order_by(TaskRow.created_at.desc(), TaskRow.id)
            .offset(page.offset)
            .limit(page.limit)
        ).all()
    entities: list[TaskMonitorInfo] = []
    for task, status, last_start, position, plan, source, target in rows:
        armed = plan is not None and task.status == DesiredState.RUNNING
        entities.append(
            TaskMonitorInfo(
                task_id=task.id,
                task_name=task.name,
                task_type=task.task_type,
                status=task.status,
                last_execute_time=last_start,
                use_quartz_cron=plan.use_quartz_cron if plan else None,
                cron=plan.cron if plan else None,
                period=plan.period if plan else None,
                dispatch_interval=plan.dispatch_interval if plan else None,
                position=position,
                execute_status=status,
                **_apps("source", source),
                source_instance_id=task.instance_id,
                **_apps("target", target),
                target_instance_id=task.instance_id,
                ext_type=task.ext_type,
                task_tag=task.task_tag,
                next_fire_times=dispatches.next_fire_ms(plan, now, 3) if armed and plan else None,
            )
        )
    return ListMonitorInfosResponse(total=total, size=len(entities), entities=entities)
