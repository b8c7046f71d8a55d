"""Console pages of composite (CDC) tasks: create (init, table mappings, create), edit
(operation types, re-pull snapshot), add and remove a table mapping, reset the offset.

Every change goes through the services the multi-tasks API uses (services/cdc.py), which do all
the checking; the console only places each error next to the field it names. Imported at the
end of routes.py, whose router and page helpers these handlers share.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from openfdi.api.console.routes import (
    Ctx,
    _all_datasources,
    _ctx,
    _fdi_text,
    _form,
    _page,
    _tables_of,
    _task_page,
    _text,
    _texts,
    router,
)
from openfdi.domain.cdc import OPERATION_TYPES
from openfdi.domain.scope import Scope
from openfdi.engine.cdc_metrics import LAG
from openfdi.errors import (
    ConnectivityTestFailed,
    FdiError,
    InvalidParameter,
    MappingInvalid,
    TaskNotFound,
)
from openfdi.services import cdc, tasks
from openfdi.services.lookup import get_task_row
from openfdi.services.runtime import Runtime
from openfdi.wire.cdc import (
    MultiTaskInitRequest,
    MultiTaskMappingCreateRequest,
    MultiTaskRequest,
    MultiTaskResetRequest,
    MultiTaskUpdateRequest,
)

# --- what the pages show ------------------------------------------------------------------


def lag_seconds(task_id: str) -> float | None:
    """The lag of the task's run where this process runs it (the local executor), from the
    gauge `/metrics` shows; None where no change was applied here yet."""
    for metric in LAG.collect():
        for sample in metric.samples:
            if sample.labels.get("task_id") == task_id:
                return float(sample.value)
    return None


def _owned_view(rt: Runtime, scope: Scope, task_id: str) -> cdc.CompositeView:
    """A created composite task of this project (a 404 page otherwise)."""
    with rt.db.read() as session:
        get_task_row(session, scope, task_id)
    view = cdc.show_multi_task(rt, scope, task_id)
    if view is None or not view.created:
        raise TaskNotFound()
    return view


# --- errors next to their fields ------------------------------------------------------------


def _validation_errors(exc: ValidationError, fields: dict[str, str]) -> dict[str, str]:
    """Text no metadata database can store (wire/text.py) is refused by the request model,
    which names the field."""
    errors: dict[str, str] = {}
    for problem in exc.errors():
        name = str(problem["loc"][0]) if problem["loc"] else "form"
        errors[fields.get(name, name)] = str(problem["msg"]).removeprefix("Value error, ")
    return errors


def _invalid(exc: InvalidParameter, known: set[str]) -> dict[str, str]:
    name = str(exc.params.get("name", ""))
    detail = str(exc.params.get("detail", exc.message))
    return {name if name in known else "form": detail if name in known else _fdi_text(exc)}


def _connectivity(exc: ConnectivityTestFailed) -> dict[str, str]:
    detail = str(exc.params.get("detail", ""))
    side = "target" if detail.startswith("the target") else "source"
    return {f"{side}_datasource_id": _fdi_text(exc)}


def _mapping_field(exc: MappingInvalid, target_table: str) -> str:
    """MappingInvalid carries no field name; its detail says which table it is about."""
    detail = str(exc.params.get("detail", ""))
    if detail.startswith("target") or (target_table and repr(target_table) in detail):
        return "target_table"
    return "source_table"


def _ops(form: FormData) -> list[str]:
    return _texts(form, "operation_types")


# --- create --------------------------------------------------------------------------------


def _blank() -> dict[str, Any]:
    return {
        "task_name": "",
        "description": "",
        "task_tag": "",
        "source_datasource_id": "",
        "target_datasource_id": "",
        "auto_mapping": True,
        "operation_types": list(OPERATION_TYPES),
        "tables": [],
        "draft_id": "",
    }


async def _create_form(
    request: Request,
    c: Ctx,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    draft: cdc.CompositeView | None = None,
) -> Response:
    return _page(
        request,
        "composite_form.html",
        status,
        c=c,
        nav="tasks",
        v=values,
        errors=errors,
        draft=draft,
        datasources=await _all_datasources(c),
        operations=OPERATION_TYPES,
    )


@router.get("/{instance_id}/composite/new", response_class=HTMLResponse)
async def composite_new(request: Request, instance_id: str) -> Response:
    c = await _ctx(request, instance_id)
    return await _create_form(request, c, _blank(), {})


@router.get("/{instance_id}/composite/pick", response_class=HTMLResponse)
async def composite_pick(request: Request, instance_id: str) -> Response:
    """The source's tables as checkboxes (htmx fragment of the create form)."""
    c = await _ctx(request, instance_id)
    chosen = set(request.query_params.getlist("tables"))
    names, error = await _tables_of(c, request.query_params.get("source_datasource_id", ""))
    return _page(request, "composite_pick.html", names=names, chosen=chosen, error=error)


def _reusable_draft(rt: Runtime, scope: Scope, values: dict[str, Any]) -> cdc.CompositeView | None:
    """The draft an earlier, refused submit of this form made (init is not repeated for it)
    when it still joins the same two data sources."""
    if not values["draft_id"]:
        return None
    view = cdc.show_multi_task(rt, scope, values["draft_id"])
    if (
        view is None
        or view.created
        or view.source_datasource_id != values["source_datasource_id"]
        or view.target_datasource_id != values["target_datasource_id"]
    ):
        return None
    return view


def _mapped_already(draft: cdc.CompositeView, table: str) -> bool:
    """A picked table the draft maps already (from an earlier submit, or auto-mapping). A bare
    name is a table of `public` on PostgreSQL, of the source's database on MySQL."""
    for m in draft.mappings:
        schema, _, name = m.source_table.partition(".")
        if table == m.source_table or (
            "." not in table
            and name == table
            and (schema == "public" or draft.source_type == "MYSQL")
        ):
            return True
    return False


def _create(rt: Runtime, scope: Scope, values: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """init (or the earlier draft), the picked tables' mappings, then create; the draft's id
    and the errors, field by field."""
    draft = _reusable_draft(rt, scope, values)
    if draft is None:
        try:
            init = MultiTaskInitRequest(
                source_datasource_id=values["source_datasource_id"] or None,
                target_datasource_id=values["target_datasource_id"] or None,
                auto_mapping=values["auto_mapping"],
            )
            task_id = cdc.install_multi_tasks(rt, scope, init)[0].task_id
        except ValidationError as exc:
            return "", _validation_errors(exc, {})
        except InvalidParameter as exc:
            return "", _invalid(exc, {"source_datasource_id", "target_datasource_id"})
        except ConnectivityTestFailed as exc:
            return "", _connectivity(exc)
        except FdiError as exc:  # a data source of another project or instance: 404
            return "", {"form": _fdi_text(exc)}
        draft = cdc.show_multi_task(rt, scope, task_id)
        assert draft is not None  # init just wrote it
    for table in values["tables"]:
        if _mapped_already(draft, table):
            continue
        try:
            cdc.create_multi_task_mappings(
                rt, scope, draft.task_id, MultiTaskMappingCreateRequest(source_table=table)
            )
        except ValidationError as exc:
            return draft.task_id, {"tables": str(exc.errors()[0]["msg"])}
        except MappingInvalid as exc:
            return draft.task_id, {"tables": f"{table}: {_fdi_text(exc)}"}
        except FdiError as exc:
            return draft.task_id, {"form": _fdi_text(exc)}
    try:
        req = MultiTaskRequest(
            task_id=draft.task_id,
            task_name=values["task_name"],
            description=values["description"] or None,
            task_tag=values["task_tag"] or None,
            operation_types=values["operation_types"],
        )
        cdc.create_multi_tasks(rt, scope, req)
    except ValidationError as exc:
        return draft.task_id, _validation_errors(exc, {})
    except InvalidParameter as exc:
        known = {"task_name", "description", "task_tag", "operation_types", "task_type"}
        return draft.task_id, _invalid(exc, known)
    except FdiError as exc:
        return draft.task_id, {"form": _fdi_text(exc)}
    return draft.task_id, {}


@router.post("/{instance_id}/composite/new", response_class=HTMLResponse)
async def composite_create(request: Request, instance_id: str) -> Response:
    c = await _ctx(request, instance_id)
    form = await _form(request, c)
    values = _blank()
    for key in ("task_name", "description", "task_tag", "source_datasource_id",
                "target_datasource_id", "draft_id"):  # fmt: skip
        values[key] = _text(form, key)
    values["auto_mapping"] = form.get("auto_mapping") == "on"
    values["operation_types"] = _ops(form)
    values["tables"] = list(dict.fromkeys(_texts(form, "tables")))
    task_id, errors = await run_in_threadpool(_create, c.rt, c.scope, values)
    if not errors:
        return RedirectResponse(f"{c.base}/tasks/{task_id}?done=saved", status_code=303)
    values["draft_id"] = task_id
    draft = None
    if task_id:
        draft = await run_in_threadpool(cdc.show_multi_task, c.rt, c.scope, task_id)
    return await _create_form(request, c, values, errors, 400, draft)


# --- the task page's composite section and the edit form ------------------------------------


def page_context(rt: Runtime, scope: Scope, task_id: str) -> dict[str, Any]:
    """What task.html shows of a composite task (empty for any other task)."""
    view = cdc.show_multi_task(rt, scope, task_id)
    if view is None:
        return {}
    return {"composite": view, "lag": lag_seconds(task_id), "operations": OPERATION_TYPES}


def edit_values(view: cdc.CompositeView, task: Any) -> dict[str, Any]:
    return {
        "description": task.description or "",
        "task_tag": task.task_tag or "",
        "operation_types": list(view.operation_types),
        "repulling_snapshot": False,
    }


async def edit_form(
    request: Request,
    c: Ctx,
    task: Any,
    view: cdc.CompositeView,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    return _page(
        request,
        "composite_edit.html",
        status,
        c=c,
        nav="tasks",
        task=task,
        composite=view,
        v=values,
        errors=errors,
        operations=OPERATION_TYPES,
    )


async def save_edit(request: Request, c: Ctx, task_id: str, form: FormData) -> Response:
    task = (await run_in_threadpool(tasks.show_task, c.rt, c.scope, task_id)).task
    view = await run_in_threadpool(_owned_view, c.rt, c.scope, task_id)
    values = {
        "description": _text(form, "description"),
        "task_tag": _text(form, "task_tag"),
        "operation_types": _ops(form),
        "repulling_snapshot": form.get("repulling_snapshot") == "on",
    }
    try:
        req = MultiTaskUpdateRequest(
            description=values["description"],
            task_tag=values["task_tag"],
            operation_types=values["operation_types"],
            repulling_snapshot=values["repulling_snapshot"],
        )
        await run_in_threadpool(cdc.update_multi_tasks, c.rt, c.scope, task_id, req)
    except ValidationError as exc:
        errors = _validation_errors(exc, {})
    except InvalidParameter as exc:
        errors = _invalid(exc, {"description", "task_tag", "operation_types"})
    except FdiError as exc:
        if exc.status == 404:
            raise
        errors = {"form": _fdi_text(exc)}  # FDI.3023: stop the task before changing it
    else:
        return RedirectResponse(f"{c.base}/tasks/{task_id}?done=saved", status_code=303)
    return await edit_form(request, c, task, view, values, errors, 400)


# --- mappings and reset (allowed while the task runs) ------------------------------------


async def _task_page_with(
    request: Request, c: Ctx, task_id: str, errors: dict[str, str], values: dict[str, str]
) -> Response:
    return await _task_page(request, c, task_id, status=400, cdc_errors=errors, cdc_values=values)


@router.post("/{instance_id}/tasks/{task_id}/mappings", response_class=HTMLResponse)
async def mapping_add(request: Request, instance_id: str, task_id: str) -> Response:
    c = await _ctx(request, instance_id)
    form = await _form(request, c)
    await run_in_threadpool(_owned_view, c.rt, c.scope, task_id)
    values = {"source_table": _text(form, "source_table"),
              "target_table": _text(form, "target_table")}  # fmt: skip
    try:
        req = MultiTaskMappingCreateRequest(
            source_table=values["source_table"] or None,
            target_table=values["target_table"] or None,
        )
        await run_in_threadpool(cdc.create_multi_task_mappings, c.rt, c.scope, task_id, req)
    except ValidationError as exc:
        return await _task_page_with(request, c, task_id, _validation_errors(exc, {}), values)
    except MappingInvalid as exc:
        field = _mapping_field(exc, values["target_table"])
        return await _task_page_with(request, c, task_id, {field: _fdi_text(exc)}, values)
    return RedirectResponse(f"{c.base}/tasks/{task_id}?done=mapped", status_code=303)


@router.post(
    "/{instance_id}/tasks/{task_id}/mappings/{mapping_id}/delete", response_class=HTMLResponse
)
async def mapping_delete(
    request: Request, instance_id: str, task_id: str, mapping_id: str
) -> Response:
    c = await _ctx(request, instance_id)
    await _form(request, c)
    await run_in_threadpool(_owned_view, c.rt, c.scope, task_id)
    try:
        await run_in_threadpool(cdc.delete_multi_task_mapping, c.rt, c.scope, task_id, mapping_id)
    except MappingInvalid as exc:
        return await _task_page_with(request, c, task_id, {"mappings": _fdi_text(exc)}, {})
    return RedirectResponse(f"{c.base}/tasks/{task_id}?done=unmapped", status_code=303)


def _epoch_ms(text: str) -> int | None:
    """A datetime-local value (UTC) as epoch milliseconds; None when empty or not a date (the
    service then names date_from as required)."""
    try:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        return None


@router.post("/{instance_id}/tasks/{task_id}/reset", response_class=HTMLResponse)
async def offset_reset(request: Request, instance_id: str, task_id: str) -> Response:
    c = await _ctx(request, instance_id)
    form = await _form(request, c)
    await run_in_threadpool(_owned_view, c.rt, c.scope, task_id)
    values = {"date_from": _text(form, "date_from")}
    try:
        req = MultiTaskResetRequest(date_from=_epoch_ms(values["date_from"]))
        await run_in_threadpool(cdc.reset_multi_task_offset, c.rt, c.scope, task_id, req)
    except InvalidParameter as exc:
        errors = _invalid(exc, {"date_from"})
        return await _task_page_with(request, c, task_id, errors, values)
    return RedirectResponse(f"{c.base}/tasks/{task_id}?done=reset", status_code=303)
