"""Pages of the web console. Each handler reads and writes through the services the API uses;
the instance in the path is checked against the signed-in user's project (another project's
instance, task, run or data source is a 404 page)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from openfdi.domain.datasource import KNOWN_TYPES, REQUIRED_CONTENT, SECRET_FIELDS
from openfdi.domain.schedule import PlanError, build_plan
from openfdi.domain.scope import Principal, Scope
from openfdi.domain.task_detail import WRITE_MODES
from openfdi.errors import (
    AuthenticationFailed,
    DispatchNotFound,
    FdiError,
    InstanceNotFound,
    InvalidParameter,
    InvalidParameters,
    SignInThrottled,
)
from openfdi.services import (
    batch,
    cdc,
    datasources,
    dispatches,
    identity,
    probe,
    run_views,
    runs,
    sessions,
    tasks,
)
from openfdi.services.runtime import Runtime
from openfdi.store.crypto import MASK
from openfdi.wire.batch import OperateTasksRequest, TaskBean
from openfdi.wire.datasources import DatasourceInfoRequest
from openfdi.wire.dispatches import TaskDispatchRequest
from openfdi.wire.tasks import CreateCommonTaskRequest, TaskBasicRequest

COOKIE = "openfdi_console"
LOGIN_COOKIE = "openfdi_console_login"
BATCH_SIZE = 10  # the batch API takes at most 10 tasks a call
PAGE_SIZES = (10, 20, 50, 100)

# No inline script or style anywhere: everything comes from /console/static.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    auto_reload=False,
)


def _ms(value: int | None) -> str:
    if not value:
        return ""
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    whole = int(value)
    if whole < 60:
        return f"{value:.1f} s"
    return f"{whole // 60} min {whole % 60:02d} s"


_templates.filters["ms"] = _ms
_templates.filters["secs"] = _seconds


class NotSignedIn(Exception):
    """No live session: the page answers with a redirect to the sign-in page."""


class CsrfRefused(Exception):
    """A state-changing request without this session's CSRF token."""


def _page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(request=request, **ctx)
    return HTMLResponse(html, status_code=status)


class ConsoleRoute(APIRoute):
    """Turns the errors of a page into pages, and adds the security headers to every answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            response: Response
            try:
                response = await original(request)
            except NotSignedIn:
                if request.headers.get("HX-Request"):
                    response = Response(status_code=204, headers={"HX-Redirect": "/console/login"})
                else:
                    response = RedirectResponse("/console/login", status_code=303)
            except CsrfRefused:
                response = _page(
                    request,
                    "error.html",
                    403,
                    title="Refused",
                    message="The form was not sent by this console (missing or wrong CSRF "
                    "token). Reload the page and try again.",
                )
            except FdiError as exc:
                title = "Not found" if exc.status == 404 else "Error"
                response = _page(
                    request, "error.html", exc.status, title=title, message=_fdi_text(exc)
                )
            except RequestValidationError:
                response = _page(
                    request, "error.html", 400, title="Error", message="Invalid request."
                )
            response.headers.update(SECURITY_HEADERS)
            return response

        return handler


router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def _fdi_text(exc: FdiError) -> str:
    return f"{exc.code}: {exc.message}"


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


@dataclass
class Ctx:
    """What every signed-in page knows: who, which project and instance, the CSRF token."""

    rt: Runtime
    session: sessions.ConsoleSession
    csrf: str
    scope: Scope
    instances: list[tuple[str, str]]
    base: str
    extra: dict[str, Any] = field(default_factory=dict)


def _client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _signed_in(request: Request) -> tuple[Runtime, str, sessions.ConsoleSession]:
    rt = _rt(request)
    token = request.cookies.get(COOKIE)
    session = await run_in_threadpool(sessions.session_for, rt, token)
    if session is None or token is None:
        raise NotSignedIn()
    return rt, token, session


async def _ctx(request: Request, instance_id: str) -> Ctx:
    rt, token, session = await _signed_in(request)
    principal = Principal(project_id=session.project_id, subject=session.user_id, via="token")
    if len(instance_id) > 64:
        raise InstanceNotFound(project_id=session.project_id, instance_id="?")
    scope = await run_in_threadpool(
        identity.resolve_scope, rt, principal, session.project_id, instance_id
    )
    instances = await run_in_threadpool(sessions.instances_of, rt, session.project_id)
    return Ctx(rt, session, sessions.csrf_token(token), scope, instances, f"/console/{instance_id}")


async def _form(request: Request, ctx: Ctx) -> FormData:
    """The posted form, refused unless it carries this session's CSRF token (field or header)."""
    form = await request.form()
    sent = form.get("csrf") or request.headers.get("X-CSRF-Token")
    if not isinstance(sent, str) or not secrets.compare_digest(sent, ctx.csrf):
        raise CsrfRefused()
    return form


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _texts(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


# --- sign-in, sign-out


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    rt, _, session = await _signed_in(request)
    instances = await run_in_threadpool(sessions.instances_of, rt, session.project_id)
    if not instances:
        return _page(request, "error.html", 404, title="Not found", message="No instance.")
    return RedirectResponse(f"/console/{instances[0][0]}/", status_code=303)


def _login_page(request: Request, status: int = 200, error: str = "", user: str = "") -> Response:
    nonce = secrets.token_urlsafe(24)
    response = _page(request, "login.html", status, login_csrf=nonce, error=error, user=user)
    # Double-submit: the sign-in form (before any session) carries the value of this cookie.
    response.set_cookie(
        LOGIN_COOKIE, nonce, httponly=True, samesite="strict", path="/console/login"
    )
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    rt = _rt(request)
    form = await request.form()
    sent, expected = form.get("csrf"), request.cookies.get(LOGIN_COOKIE)
    if not isinstance(sent, str) or not expected or not secrets.compare_digest(sent, expected):
        raise CsrfRefused()
    user, password = _text(form, "username"), form.get("password")
    if not user or not isinstance(password, str) or not password:
        return _login_page(request, 400, "Enter the user name and the password.", user)
    try:
        token, _ = await run_in_threadpool(
            lambda: sessions.sign_in(
                rt, user_name=user, password=password, client_address=_client_address(request)
            )
        )
    except (AuthenticationFailed, SignInThrottled) as exc:
        return _login_page(request, exc.status, _fdi_text(exc), user)
    response = RedirectResponse("/console/", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=rt.settings.token_ttl_seconds,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/console",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    rt, token, _ = await _signed_in(request)
    form = await request.form()
    sent = form.get("csrf")
    if not isinstance(sent, str) or not sessions.csrf_ok(token, sent):
        raise CsrfRefused()
    await run_in_threadpool(sessions.sign_out, rt, token)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


# --- overview


@router.get("/{instance_id}/", response_class=HTMLResponse)
async def overview(request: Request, instance_id: str) -> Response:
    c = await _ctx(request, instance_id)
    view = await run_in_threadpool(run_views.overview, c.rt, c.scope)
    return _page(request, "overview.html", c=c, view=view, nav="overview")


# --- task list and batches


_FILTERS = ("name", "task_type", "status", "execute_status", "task_tag", "datasource_id")


def _task_filter(params: dict[str, str]) -> tasks.TaskFilter:
    status = params.get("status") or None
    return tasks.TaskFilter(
        name=params.get("name") or None,
        task_type=params.get("task_type") or None,
        status=int(status) if status in ("0", "1") else None,
        execute_status=params.get("execute_status") or None,
        task_tag=params.get("task_tag") or None,
        datasource_id=params.get("datasource_id") or None,
        sort_field=params.get("sort_field") or None,
        sort_type=params.get("sort_type") or None,
    )


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(value or default)))
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class BatchLine:
    task_id: str
    task_name: str | None
    ok: bool
    code: str | None = None
    message: str | None = None


def _send_batches(rt: Runtime, scope: Scope, action: str, ids: list[str]) -> list[BatchLine]:
    """Consecutive batch calls of at most 10 tasks; each task's success or FDI error, as the
    batch answer gives it. A refused call (FDI.3083: a TIMING task without a plan) changes none
    of its tasks, and every task of it is reported with that error."""
    lines: list[BatchLine] = []
    for start in range(0, len(ids), BATCH_SIZE):
        chunk = ids[start : start + BATCH_SIZE]
        req = OperateTasksRequest.model_validate(
            {"action_id": action, "list": [TaskBean(task_id=i).model_dump() for i in chunk]}
        )
        try:
            answer = batch.batch_start_or_stop_tasks(rt, scope, req)
        except FdiError as exc:
            lines += [BatchLine(i, None, False, exc.code, exc.message) for i in chunk]
            continue
        lines += [BatchLine(s.task_id or "", s.task_name, True) for s in answer.success]
        lines += [
            BatchLine(f.task_id or "", f.task_name, False, f.error_code, f.error_msg)
            for f in answer.failure
        ]
    return lines


async def _task_list(
    request: Request, c: Ctx, results: list[BatchLine] | None = None, action: str = ""
) -> Response:
    params = {k: v for k, v in request.query_params.items() if v}
    size = _int(params.get("limit"), 20, 1, 100)
    page = _int(params.get("page"), 1, 1, 10**6)
    query = _task_filter(params)

    def load() -> tuple[Any, Any]:
        listed = tasks.list_tasks(c.rt, c.scope, query, (page - 1) * size, size)
        ds = datasources.list_datasources(
            c.rt,
            c.scope,
            offset=0,
            limit=200,
            datasource_type=None,
            name=None,
            app_id=None,
            sort_type="ASC",
        )
        return listed, ds

    try:
        listed, ds = await run_in_threadpool(load)
        error = ""
    except InvalidParameter as exc:
        listed, ds, error = None, None, _fdi_text(exc)
    keep = {k: v for k, v in params.items() if k in (*_FILTERS, "sort_field", "sort_type")}
    pages = max(1, -(-listed.total // size)) if listed else 1

    def link(**change: Any) -> str:
        merged = {**keep, "limit": size, "page": page, **change}
        return f"{c.base}/tasks?{urlencode({k: v for k, v in merged.items() if v != ''})}"

    return _page(
        request,
        "tasks.html",
        c=c,
        nav="tasks",
        listed=listed,
        datasources=ds.entities if ds else [],
        params=params,
        page=page,
        pages=pages,
        size=size,
        sizes=PAGE_SIZES,
        link=link,
        here=urlencode({**keep, "limit": size, "page": page}),
        error=error,
        results=results,
        action=action,
    )


@router.get("/{instance_id}/tasks", response_class=HTMLResponse)
async def task_list(request: Request, instance_id: str) -> Response:
    return await _task_list(request, await _ctx(request, instance_id))


@router.post("/{instance_id}/tasks/batch", response_class=HTMLResponse)
async def task_batch(request: Request, instance_id: str) -> Response:
    c = await _ctx(request, instance_id)
    form = await _form(request, c)
    action = _text(form, "action")
    if action not in ("start", "stop"):
        raise InvalidParameters(detail="the action is start or stop")
    ids = list(dict.fromkeys(_texts(form, "task_id")))
    if not ids:
        return await _task_list(request, c, [], action)
    results = await run_in_threadpool(_send_batches, c.rt, c.scope, action, ids)
    return await _task_list(request, c, results, action)


# --- one task


async def _plan(c: Ctx, task_id: str) -> Any:
    try:
        return await run_in_threadpool(dispatches.show_dispatches, c.rt, c.scope, task_id)
    except DispatchNotFound:
        return None


async def _task_page(
    request: Request,
    c: Ctx,
    task_id: str,
    notice: str = "",
    error: str = "",
    status: int = 200,
    cdc_errors: dict[str, str] | None = None,
    cdc_values: dict[str, str] | None = None,
) -> Response:
    task = await run_in_threadpool(tasks.show_task, c.rt, c.scope, task_id)
    cdc = await run_in_threadpool(composite.page_context, c.rt, c.scope, task_id)
    plan = await _plan(c, task_id)
    logs, total = await run_in_threadpool(run_views.history, c.rt, c.scope, task_id)
    prog = await run_in_threadpool(run_views.progress, c.rt, c.scope, task_id)
    points = run_views.chart_points(logs)
    chart = {
        "t": [p.start_ms / 1000 for p in points],
        "rows": [p.rows for p in points],
        "seconds": [p.seconds for p in points],
        "failed": [p.rows if p.failed else None for p in points],
    }
    try:
        detail = json.dumps(json.loads(task.task_detail), indent=2)
    except ValueError:
        detail = task.task_detail
    return _page(
        request,
        "task.html",
        status,
        c=c,
        nav="tasks",
        task=task.task,
        detail=detail,
        plan=plan,
        plan_words=run_views.plan_in_words(plan) if plan else "",
        logs=logs,
        total=total,
        chart=chart,
        p=prog,
        notice=notice,
        error=error,
        cdc_errors=cdc_errors or {},
        cdc_values=cdc_values or {},
        **cdc,
    )


@router.get("/{instance_id}/tasks/new", response_class=HTMLResponse)
async def task_new(request: Request, instance_id: str) -> Response:
    c = await _ctx(request, instance_id)
    return await _task_form(request, c, None, _blank_task_values(), {})


@router.post("/{instance_id}/tasks/new", response_class=HTMLResponse)
async def task_create(request: Request, instance_id: str) -> Response:
    c = await _ctx(request, instance_id)
    form = await _form(request, c)
    return await _save_task(request, c, None, form)


_NOTICES = {
    "run": "A run was started.",
    "terminate": "Termination requested.",
    "saved": "Saved.",
    "mapped": "Table mapping added.",
    "unmapped": "Table mapping removed.",
    "reset": "Offset reset.",
}


@router.get("/{instance_id}/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(request: Request, instance_id: str, task_id: str) -> Response:
    c = await _ctx(request, instance_id)
    done = request.query_params.get("done", "")
    return await _task_page(request, c, task_id, _NOTICES.get(done, ""))


@router.get("/{instance_id}/tasks/{task_id}/progress", response_class=HTMLResponse)
async def task_progress(request: Request, instance_id: str, task_id: str) -> Response:
    c = await _ctx(request, instance_id)
    prog = await run_in_threadpool(run_views.progress, c.rt, c.scope, task_id)
    lag = composite.lag_seconds(task_id)
    return _page(request, "progress.html", c=c, p=prog, task_id=task_id, lag=lag)


@router.post("/{instance_id}/tasks/{task_id}/run", response_class=HTMLResponse)
async def task_run(request: Request, instance_id: str, task_id: str) -> Response:
    c = await _ctx(request, instance_id)
    await _form(request, c)
    try:
        await run_in_threadpool(runs.run_task, c.rt, c.scope, task_id)
    except FdiError as exc:
        if exc.status == 404:
            raise
        return await _task_page(request, c, task_id, error=_fdi_text(exc), status=exc.status)
    return RedirectResponse(f"{c.base}/tasks/{task_id}?done=run", status_code=303)


@router.post("/{instance_id}/tasks/{task_id}/terminate", response_class=HTMLResponse)
async def task_terminate(request: Request, instance_id: str, task_id: str) -> Response:
    c = await _ctx(request, instance_id)
    await _form(request, c)
    await run_in_threadpool(runs.stop_task, c.rt, c.scope, task_id)
    return RedirectResponse(f"{c.base}/tasks/{task_id}?done=terminate", status_code=303)


@router.post("/{instance_id}/tasks/{task_id}/delete", response_class=HTMLResponse)
async def task_delete(request: Request, instance_id: str, task_id: str) -> Response:
    c = await _ctx(request, instance_id)
    await _form(request, c)
    try:
        await run_in_threadpool(tasks.delete_task, c.rt, c.scope, task_id)
    except FdiError as exc:
        if exc.status == 404:
            raise
        return await _task_page(request, c, task_id, error=_fdi_text(exc), status=exc.status)
    return RedirectResponse(f"{c.base}/tasks", status_code=303)


@router.get("/{instance_id}/tasks/{task_id}/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, instance_id: str, task_id: str, run_id: str) -> Response:
    c = await _ctx(request, instance_id)
    run = await run_in_threadpool(run_views.run_view, c.rt, c.scope, task_id, run_id)
    task = await run_in_threadpool(tasks.show_task, c.rt, c.scope, task_id)
    return _page(request, "run.html", c=c, nav="tasks", run=run, task=task.task)


# --- create and edit a task


def _blank_task_values() -> dict[str, Any]:
    return {
        "task_name": "",
        "task_type": "TIMING",
        "description": "",
        "task_tag": "",
        "source_datasource_id": "",
        "target_datasource_id": "",
        "source_table": "",
        "columns": [],
        "where": "",
        "incremental_column": "",
        "target_table": "",
        "write_mode": "insert",
        "key_columns": "",
        "mappings": "",
        "create_table": True,
        "plan_kind": "none",
        "start_datetime": "",
        "period": "DAY",
        "dispatch_interval": "1",
        "cron": "",
        "cron_timezone": "UTC",
        "doc": {},
    }


def _values_of_task(task: Any, detail_text: str, plan: Any) -> dict[str, Any]:
    values = _blank_task_values()
    try:
        doc = json.loads(detail_text)
    except ValueError:
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    src = doc.get("sourceSelectedDatasource") or {}
    dst = doc.get("targetSelectedDatasource") or {}
    inc = src.get("incremental") or {}
    values.update(
        task_name=task.task_name,
        task_type=task.task_type.upper(),
        description=task.description or "",
        task_tag=task.task_tag or "",
        source_datasource_id=task.source_datasource_id,
        target_datasource_id=task.target_datasource_id,
        source_table=src.get("table") or "",
        columns=list(src.get("columns") or []),
        where=src.get("where") or "",
        incremental_column=inc.get("column") or "" if isinstance(inc, dict) else "",
        target_table=dst.get("table") or "",
        write_mode=dst.get("writeMode") or "insert",
        key_columns=", ".join(dst.get("keyColumns") or []),
        mappings="\n".join(
            f"{m.get('sourceField')} -> {m.get('targetField')}"
            for m in doc.get("mappingTable") or []
            if isinstance(m, dict)
        ),
        create_table=dst.get("createTable", True) is not False,
        doc=doc,
    )
    if plan is not None:
        start = datetime.fromtimestamp(plan.start_datetime / 1000, UTC)
        values.update(
            plan_kind="cron" if plan.use_quartz_cron else "period",
            start_datetime=start.strftime("%Y-%m-%dT%H:%M"),
            period=plan.period or "DAY",
            dispatch_interval=str(plan.dispatch_interval or 1),
            cron=plan.cron or "",
            cron_timezone=plan.cron_timezone,
        )
    return values


def _values_of_form(form: FormData, doc: dict[str, Any]) -> dict[str, Any]:
    values = _blank_task_values()
    for key in values:
        if key not in ("columns", "create_table", "doc"):
            values[key] = _text(form, key)
    values["columns"] = _texts(form, "columns")
    values["create_table"] = form.get("create_table") == "on"
    values["doc"] = doc
    return values


def _split_names(text: str) -> list[str]:
    return [n.strip() for n in text.replace("\n", ",").split(",") if n.strip()]


def _detail_of(values: dict[str, Any]) -> str:
    """task_detail from the form; keys the form does not show are kept as they were."""
    doc = dict(values["doc"])
    src = dict(doc.get("sourceSelectedDatasource") or {})
    dst = dict(doc.get("targetSelectedDatasource") or {})
    src["table"] = values["source_table"]
    for key, value in (("columns", values["columns"] or None), ("where", values["where"])):
        if value:
            src[key] = value
        else:
            src.pop(key, None)
    if values["incremental_column"]:
        kept = src.get("incremental")
        inc: dict[str, Any] = kept if isinstance(kept, dict) else {}
        src["incremental"] = {**inc, "column": values["incremental_column"]}
    else:
        src.pop("incremental", None)
    dst["table"] = values["target_table"]
    dst["writeMode"] = values["write_mode"] or "insert"
    keys = _split_names(values["key_columns"])
    if keys:
        dst["keyColumns"] = keys
    else:
        dst.pop("keyColumns", None)
    dst["createTable"] = bool(values["create_table"])
    doc["sourceSelectedDatasource"], doc["targetSelectedDatasource"] = src, dst
    mappings = []
    for line in values["mappings"].splitlines():
        if not line.strip():
            continue
        left, sep, right = line.replace("->", ":").partition(":")
        mappings.append({"sourceField": left.strip(), "targetField": right.strip() if sep else ""})
    if mappings:
        doc["mappingTable"] = mappings
    else:
        doc.pop("mappingTable", None)
    return json.dumps(doc)


# Which form field a task_detail complaint is about (the detail names the JSON key).
_DETAIL_FIELDS = (
    ("sourceSelectedDatasource.table", "source_table"),
    ("sourceSelectedDatasource.columns", "columns"),
    ("sourceSelectedDatasource.where", "where"),
    ("incremental", "incremental_column"),
    ("targetSelectedDatasource.table", "target_table"),
    ("keyColumns", "key_columns"),
    ("writeMode", "write_mode"),
    ("mappingTable", "mappings"),
    ("createTable", "create_table"),
)


def _field_of(exc: InvalidParameter) -> str:
    name = str(exc.params.get("name", ""))
    if name == "task_detail":
        for needle, field_name in _DETAIL_FIELDS:
            if needle in exc.message:
                return field_name
    return name or "form"


def _plan_request(values: dict[str, Any]) -> TaskDispatchRequest | None:
    """The plan of the form, checked like the API checks it; PlanError names the bad field."""
    if values["task_type"] != "TIMING" or values["plan_kind"] == "none":
        return None
    start_ms = None
    if values["start_datetime"]:
        try:
            start = datetime.fromisoformat(values["start_datetime"]).replace(tzinfo=UTC)
        except ValueError as exc:
            raise PlanError("start_datetime", "Use a date and time.") from exc
        start_ms = int(start.timestamp() * 1000)
    cron = values["plan_kind"] == "cron"
    interval = None
    if not cron:
        try:
            interval = int(values["dispatch_interval"])
        except ValueError as exc:
            raise PlanError("dispatch_interval", "Use a whole number from 1 to 59.") from exc
    build_plan(
        start_datetime_ms=start_ms,
        period=None if cron else values["period"],
        dispatch_interval=interval,
        use_quartz_cron=cron,
        cron=values["cron"] if cron else None,
        cron_timezone=values["cron_timezone"] or "UTC",
    )
    return TaskDispatchRequest(
        start_datetime=start_ms,
        period=None if cron else values["period"],
        dispatch_interval=interval,
        use_quartz_cron=cron,
        cron=values["cron"] if cron else None,
        cron_timezone=values["cron_timezone"] or "UTC",
    )


async def _all_datasources(c: Ctx) -> list[Any]:
    listed = await run_in_threadpool(
        lambda: datasources.list_datasources(
            c.rt,
            c.scope,
            offset=0,
            limit=500,
            datasource_type=None,
            name=None,
            app_id=None,
            sort_type="ASC",
        )
    )
    return list(listed.entities)


async def _task_form(
    request: Request,
    c: Ctx,
    task_id: str | None,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    return _page(
        request,
        "task_form.html",
        status,
        c=c,
        nav="tasks",
        task_id=task_id,
        v=values,
        errors=errors,
        datasources=await _all_datasources(c),
        write_modes=WRITE_MODES,
        periods=("MIN", "HOUR", "DAY", "WEEK", "MON"),
    )


def _store_task(
    rt: Runtime,
    scope: Scope,
    task_id: str | None,
    req: CreateCommonTaskRequest,
    plan: TaskDispatchRequest | None,
) -> str:
    if task_id is None:
        task_id = tasks.create_common_task(rt, scope, req).task.task_id
    else:
        tasks.update_task(rt, scope, task_id, req)
    if plan is not None:
        try:
            current = dispatches.show_dispatches(rt, scope, task_id)
        except DispatchNotFound:
            dispatches.create_dispatches(rt, scope, task_id, plan)
        else:
            dispatches.update_dispatches(rt, scope, task_id, current.dispatch_id, plan)
    return task_id


async def _save_task(request: Request, c: Ctx, task_id: str | None, form: FormData) -> Response:
    doc: dict[str, Any] = {}
    if task_id is not None:
        current = await run_in_threadpool(tasks.show_task, c.rt, c.scope, task_id)
        try:
            loaded = json.loads(current.task_detail)
            doc = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            doc = {}
    values = _values_of_form(form, doc)
    errors: dict[str, str] = {}
    try:
        plan = _plan_request(values)
    except PlanError as exc:
        errors[exc.field] = exc.detail
        plan = None
    if not values["source_table"]:
        errors["source_table"] = "Pick or type the source table."
    if not values["target_table"]:
        errors["target_table"] = "Type the target table."
    if errors:
        return await _task_form(request, c, task_id, values, errors, 400)
    req = CreateCommonTaskRequest(
        task=TaskBasicRequest(
            task_name=values["task_name"],
            task_type=values["task_type"],
            source_datasource_id=values["source_datasource_id"],
            target_datasource_id=values["target_datasource_id"],
            description=values["description"] or None,
            task_tag=values["task_tag"] or None,
        ),
        task_detail=_detail_of(values),
    )
    try:
        saved = await run_in_threadpool(_store_task, c.rt, c.scope, task_id, req, plan)
    except InvalidParameter as exc:
        errors[_field_of(exc)] = str(exc.params.get("detail", exc.message))
        return await _task_form(request, c, task_id, values, errors, 400)
    except FdiError as exc:
        if exc.status == 404 and task_id is not None:
            raise
        errors["form"] = _fdi_text(exc)
        return await _task_form(request, c, task_id, values, errors, exc.status)
    return RedirectResponse(f"{c.base}/tasks/{saved}?done=saved", status_code=303)


@router.get("/{instance_id}/tasks/{task_id}/edit", response_class=HTMLResponse)
async def task_edit(request: Request, instance_id: str, task_id: str) -> Response:
    c = await _ctx(request, instance_id)
    task = await run_in_threadpool(tasks.show_task, c.rt, c.scope, task_id)
    view = await run_in_threadpool(cdc.show_multi_task, c.rt, c.scope, task_id)
    if view is not None:  # a composite task has a form of its own
        values = composite.edit_values(view, task.task)
        return await composite.edit_form(request, c, task.task, view, values, {})
    plan = await _plan(c, task_id)
    return await _task_form(
        request, c, task_id, _values_of_task(task.task, task.task_detail, plan), {}
    )


@router.post("/{instance_id}/tasks/{task_id}/edit", response_class=HTMLResponse)
async def task_update(request: Request, instance_id: str, task_id: str) -> Response:
    c = await _ctx(request, instance_id)
    form = await _form(request, c)
    if await run_in_threadpool(cdc.show_multi_task, c.rt, c.scope, task_id) is not None:
        return await composite.save_edit(request, c, task_id, form)
    return await _save_task(request, c, task_id, form)


# --- pickers of the task form (htmx fragments)


@router.get("/{instance_id}/pick/tables", response_class=HTMLResponse)
async def pick_tables(request: Request, instance_id: str) -> Response:
    c = await _ctx(request, instance_id)
    role = "target" if request.query_params.get("role") == "target" else "source"
    tables, error = await _tables_of(c, request.query_params.get(f"{role}_datasource_id", ""))
    return _page(request, "pick_tables.html", role=role, tables=tables, error=error)


async def _tables_of(c: Ctx, ds_id: str) -> tuple[list[str], str]:
    """A data source's tables for a picker, or the FDI error's text in place of them."""
    if not ds_id:
        return [], ""
    try:
        listed = await run_in_threadpool(probe.list_datasource_tables, c.rt, c.scope, ds_id, None)
    except FdiError as exc:
        return [], _fdi_text(exc)
    return listed.tables, ""


@router.get("/{instance_id}/pick/columns", response_class=HTMLResponse)
async def pick_columns(request: Request, instance_id: str) -> Response:
    c = await _ctx(request, instance_id)
    ds_id = request.query_params.get("source_datasource_id", "")
    table = request.query_params.get("source_table", "")
    chosen = set(request.query_params.getlist("columns"))
    columns: list[Any] = []
    error = ""
    if ds_id and table:
        try:
            listed = await run_in_threadpool(
                probe.list_datasource_columns, c.rt, c.scope, ds_id, table
            )
            columns = listed.columns
        except FdiError as exc:
            error = _fdi_text(exc)
    return _page(request, "pick_columns.html", columns=columns, chosen=chosen, error=error)


# --- data sources


# The content fields the form shows for each type (others are kept as they were stored).
_FORM_FIELDS = ("host", "port", "database_name", "user_name", "password", "address", "url")


@router.get("/{instance_id}/datasources", response_class=HTMLResponse)
async def datasource_list(request: Request, instance_id: str) -> Response:
    c = await _ctx(request, instance_id)
    return _page(
        request,
        "datasources.html",
        c=c,
        nav="datasources",
        items=await _all_datasources(c),
        error="",
    )


def _ds_values(ds: Any | None) -> dict[str, Any]:
    content = dict(ds.content or {}) if ds is not None else {}
    values: dict[str, Any] = {
        "datasource_name": ds.datasource_name if ds else "",
        "datasource_type": ds.datasource_type if ds else "SQLITE",
        "description": (ds.description or "") if ds else "",
        "app_id": (ds.app_id or "") if ds else "",
    }
    for key in _FORM_FIELDS:
        value = content.pop(key, "")
        values[key] = "" if value is None else str(value)
    values["extra"] = json.dumps(content, indent=2) if content else ""
    return values


async def _ds_form(
    request: Request,
    c: Ctx,
    ds_id: str | None,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    notice: str = "",
) -> Response:
    return _page(
        request,
        "datasource_form.html",
        status,
        c=c,
        nav="datasources",
        ds_id=ds_id,
        v=values,
        errors=errors,
        types=sorted(KNOWN_TYPES),
        required=REQUIRED_CONTENT,
        secret_fields=SECRET_FIELDS,
        mask=MASK,
        notice=notice,
    )


@router.get("/{instance_id}/datasources/new", response_class=HTMLResponse)
async def datasource_new(request: Request, instance_id: str) -> Response:
    c = await _ctx(request, instance_id)
    return await _ds_form(request, c, None, _ds_values(None), {})


@router.get("/{instance_id}/datasources/{datasource_id}", response_class=HTMLResponse)
async def datasource_edit(request: Request, instance_id: str, datasource_id: str) -> Response:
    c = await _ctx(request, instance_id)
    ds = await run_in_threadpool(datasources.show_datasource, c.rt, c.scope, datasource_id)
    notice = "Saved." if request.query_params.get("done") == "saved" else ""
    return await _ds_form(request, c, datasource_id, _ds_values(ds), {}, notice=notice)


async def _save_datasource(request: Request, c: Ctx, ds_id: str | None, form: FormData) -> Response:
    values: dict[str, Any] = {
        k: _text(form, k) for k in ("datasource_name", "datasource_type", "description", "app_id")
    }
    for key in (*_FORM_FIELDS, "extra"):
        raw = form.get(key)
        values[key] = raw if isinstance(raw, str) else ""
    errors: dict[str, str] = {}
    content: dict[str, Any] = {}
    if values["extra"].strip():
        try:
            extra = json.loads(values["extra"])
        except ValueError:
            extra = None
        if not isinstance(extra, dict):
            errors["extra"] = "Other settings are a JSON object."
        else:
            content.update(extra)
    for key in _FORM_FIELDS:
        value = values[key] if key in SECRET_FIELDS else values[key].strip()
        if value:
            content[key] = value
    if errors:
        return await _ds_form(request, c, ds_id, values, errors, 400)
    req = DatasourceInfoRequest(
        datasource_name=values["datasource_name"],
        datasource_type=values["datasource_type"],
        app_id=values["app_id"] or None,
        content=content,
        description=values["description"] or None,
    )
    try:
        if ds_id is None:
            saved = await run_in_threadpool(datasources.create_datasource_info, c.rt, c.scope, req)
        else:
            saved = await run_in_threadpool(
                datasources.update_datasource_info, c.rt, c.scope, ds_id, req
            )
    except InvalidParameter as exc:
        name = str(exc.params.get("name", "form")).removeprefix("content.")
        name = name if name in values else "form"
        errors[name] = str(exc.params.get("detail", exc.message))
        return await _ds_form(request, c, ds_id, values, errors, 400)
    except FdiError as exc:
        if exc.status == 404 and ds_id is not None:
            raise
        errors["form"] = _fdi_text(exc)
        return await _ds_form(request, c, ds_id, values, errors, exc.status)
    return RedirectResponse(
        f"{c.base}/datasources/{saved.datasource_id}?done=saved", status_code=303
    )


@router.post("/{instance_id}/datasources/new", response_class=HTMLResponse)
async def datasource_create(request: Request, instance_id: str) -> Response:
    c = await _ctx(request, instance_id)
    return await _save_datasource(request, c, None, await _form(request, c))


@router.post("/{instance_id}/datasources/{datasource_id}", response_class=HTMLResponse)
async def datasource_update(request: Request, instance_id: str, datasource_id: str) -> Response:
    c = await _ctx(request, instance_id)
    return await _save_datasource(request, c, datasource_id, await _form(request, c))


@router.post("/{instance_id}/datasources/{datasource_id}/delete", response_class=HTMLResponse)
async def datasource_delete(request: Request, instance_id: str, datasource_id: str) -> Response:
    c = await _ctx(request, instance_id)
    await _form(request, c)
    try:
        await run_in_threadpool(
            datasources.delete_datasource_info_by_id, c.rt, c.scope, datasource_id
        )
    except FdiError as exc:
        if exc.status == 404:
            raise
        items = await _all_datasources(c)
        return _page(
            request,
            "datasources.html",
            exc.status,
            c=c,
            nav="datasources",
            items=items,
            error=_fdi_text(exc),
        )
    return RedirectResponse(f"{c.base}/datasources", status_code=303)


@router.post("/{instance_id}/datasources/{datasource_id}/test", response_class=HTMLResponse)
async def datasource_test(request: Request, instance_id: str, datasource_id: str) -> Response:
    c = await _ctx(request, instance_id)
    await _form(request, c)
    try:
        await run_in_threadpool(probe.start_test_datasource, c.rt, c.scope, datasource_id)
        ok, message = True, "Connection succeeded."
    except FdiError as exc:
        if exc.status == 404:
            raise
        ok, message = False, _fdi_text(exc)
    return _page(request, "test_result.html", ok=ok, message=message)


# The composite (CDC) pages share this module's router and helpers; imported last, when all of
# them exist, so their routes come after these (none of their paths overlap).
from openfdi.api.console import composite  # noqa: E402
