"""Data sources: create, list, show, update, delete. Secrets are encrypted at rest and masked."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openfdi.connectors.errors import (
    ConnectorNotFoundError,
    ConnectorUnavailableError,
    InvalidContentError,
)
from openfdi.domain import apps
from openfdi.domain.datasource import KNOWN_TYPES, REQUIRED_CONTENT, SECRET_FIELDS
from openfdi.domain.ids import new_hex_id
from openfdi.domain.scope import Scope
from openfdi.errors import InvalidParameter, InvalidParameters
from openfdi.services.lookup import get_datasource_row
from openfdi.services.paging import like_pattern, record_page
from openfdi.services.runtime import Runtime
from openfdi.store.crypto import MASK
from openfdi.store.tables import CdcTaskRow, DatasourceRow, TaskRow
from openfdi.wire.datasources import (
    DatasourceInfoRequest,
    DatasourceResponse,
    ListDatasourcesResponse,
)

_ENCRYPTED_PREFIX = "enc:"


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _validate(rt: Runtime, req: DatasourceInfoRequest) -> tuple[str, dict[str, Any]]:
    name = req.datasource_name.strip()
    if not 1 <= len(name) <= 255:
        raise InvalidParameter(name="datasource_name", detail="Use 1 to 255 characters.")
    kind = req.datasource_type.strip().upper()
    if kind not in KNOWN_TYPES:
        raise InvalidParameter(
            name="datasource_type", detail=f"Unknown data source type {req.datasource_type!r}."
        )
    if req.description is not None and len(req.description) > 1024:
        raise InvalidParameter(name="description", detail="At most 1024 characters.")
    content = dict(req.content or {})
    required = rt.registry.required_content(kind)
    if required is None:
        required = REQUIRED_CONTENT.get(kind, ())
    missing = [f for f in required if _blank(content.get(f))]
    if missing:
        raise InvalidParameter(
            name=f"content.{missing[0]}", detail=f"Required for {kind} data sources."
        )
    _check_port(content.get("port"))
    return kind, content


def _check_port(port: Any) -> None:
    """A port, where given, is a whole number 1 to 65535 (as a number or as its digits): a
    connection could only fail on anything else, later and less clearly."""
    if _blank(port):
        return
    text = str(port).strip() if isinstance(port, int | str) and not isinstance(port, bool) else ""
    if not (len(text) <= 5 and text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise InvalidParameter(name="content.port", detail="Use a whole number from 1 to 65535.")


def _vet_with_connector(rt: Runtime, kind: str, content: dict[str, Any]) -> None:
    """Let the type's connector, if one is installed, refuse content it could never open (a
    SQLite path into openfdi's own data dir or outside the allowed roots, ...). Building a
    connector does no I/O; the connector checks again each time it opens its data source."""
    try:
        connector = rt.registry.open(kind, content)
    except (ConnectorNotFoundError, ConnectorUnavailableError):
        return  # a data source of this type is kept; a task using it is refused
    except InvalidContentError as exc:
        name = f"content.{exc.field}" if exc.field else "content"
        raise InvalidParameter(name=name, detail=exc.message) from None
    connector.close()


def _seal(rt: Runtime, content: dict[str, Any], stored: dict[str, Any] | None) -> str:
    """Encrypt secret fields; a "******" sent back by a client keeps the stored secret."""
    sealed: dict[str, Any] = {}
    for key, value in content.items():
        if key in SECRET_FIELDS and value not in (None, ""):
            if value == MASK:
                if stored is None or key not in stored:
                    raise InvalidParameter(
                        name=f"content.{key}", detail="No stored secret to keep."
                    )
                sealed[key] = stored[key]
            else:
                plain = value if isinstance(value, str) else json.dumps(value)
                sealed[key] = _ENCRYPTED_PREFIX + rt.box.encrypt(plain)
        else:
            sealed[key] = value
    return json.dumps(sealed, separators=(",", ":"))


def _masked(content_json: str) -> dict[str, Any]:
    content: dict[str, Any] = json.loads(content_json)
    return {
        k: (MASK if isinstance(v, str) and v.startswith(_ENCRYPTED_PREFIX) else v)
        for k, v in content.items()
    }


def decrypted_content(rt: Runtime, row: DatasourceRow) -> dict[str, Any]:
    """The content with secrets in clear, for connectors only; never returned by the API."""
    return decrypt_content(rt, row.content)


def decrypt_content(rt: Runtime, stored: str) -> dict[str, Any]:
    """`decrypted_content` of a row's stored `content` text."""
    content: dict[str, Any] = json.loads(stored)
    for k, v in content.items():
        if isinstance(v, str) and v.startswith(_ENCRYPTED_PREFIX):
            content[k] = rt.box.decrypt(v[len(_ENCRYPTED_PREFIX) :])
    return content


def unsaved_settings(
    rt: Runtime, row: DatasourceRow, req: DatasourceInfoRequest
) -> tuple[str, dict[str, Any]]:
    """The type and clear content of settings a client sent without saving them (test-connect
    with a DatasourceInfo body), checked as a create would check them. A secret sent back as
    "******" means the stored one, as on update (fdi-api.md H.6)."""
    kind, content = _validate(rt, req)
    _vet_with_connector(rt, kind, content)
    stored = decrypted_content(rt, row)
    for key, value in content.items():
        if key in SECRET_FIELDS and value == MASK:
            if key not in stored:
                raise InvalidParameter(name=f"content.{key}", detail="No stored secret to keep.")
            content[key] = stored[key]
    return kind, content


def to_wire(row: DatasourceRow) -> DatasourceResponse:
    app_id = apps.app_id_of(row.app_id, row.instance_id)
    return DatasourceResponse(
        datasource_id=row.id,
        datasource_name=row.name,
        datasource_type=row.type,
        app_id=app_id,
        app_name=apps.app_name_of(app_id, row.instance_id),
        app_permission=list(apps.APP_PERMISSIONS),
        instance_id=row.instance_id,
        create_time=row.created_at,
        update_time=row.updated_at,
        content=_masked(row.content),
        description=row.description,
    )


def _duplicate_name(name: str) -> InvalidParameter:
    return InvalidParameter(
        name="datasource_name", detail=f"A data source named {name!r} exists already."
    )


def create_datasource_info(
    rt: Runtime, scope: Scope, req: DatasourceInfoRequest
) -> DatasourceResponse:
    kind, content = _validate(rt, req)
    _vet_with_connector(rt, kind, content)
    now = rt.clock_ms()
    row = DatasourceRow(
        id=new_hex_id(),
        project_id=scope.project_id,
        instance_id=scope.instance_id,
        name=req.datasource_name.strip(),
        type=kind,
        app_id=req.app_id,
        content=_seal(rt, content, None),
        description=req.description,
        created_at=now,
        updated_at=now,
    )
    try:
        with rt.db.write() as session:
            session.add(row)
    except IntegrityError as exc:
        raise _duplicate_name(row.name) from exc
    return to_wire(row)


def list_datasources(
    rt: Runtime,
    scope: Scope,
    *,
    offset: int | None,
    limit: int | None,
    datasource_type: str | None,
    name: str | None,
    app_id: str | None,
    sort_type: str | None,
) -> ListDatasourcesResponse:
    page = record_page(offset, limit)
    where = [DatasourceRow.instance_id == scope.instance_id]
    if datasource_type:
        where.append(DatasourceRow.type == datasource_type.upper())
    if name:
        where.append(DatasourceRow.name.ilike(like_pattern(name), escape="\\"))
    if app_id:
        where.append(in_app(DatasourceRow.app_id, app_id, scope.instance_id))
    order = (
        DatasourceRow.created_at.asc() if sort_type == "ASC" else DatasourceRow.created_at.desc()
    )
    with rt.db.read() as session:
        total = session.scalar(select(func.count()).select_from(DatasourceRow).where(*where)) or 0
        rows = session.scalars(
            select(DatasourceRow)
            .where(*where)
            .order_by(order, DatasourceRow.id)
            .offset(page.offset)
            .limit(page.limit)
        ).all()
    entities = [to_wire(r) for r in rows]
    return ListDatasourcesResponse(total=total, size=len(entities), entities=entities)


def show_datasource(rt: Runtime, scope: Scope, datasource_id: str) -> DatasourceResponse:
    with rt.db.read() as session:
        return to_wire(get_datasource_row(session, scope, datasource_id))


def update_datasource_info(
    rt: Runtime, scope: Scope, datasource_id: str, req: DatasourceInfoRequest
) -> DatasourceResponse:
    kind, content = _validate(rt, req)
    _vet_with_connector(rt, kind, content)
    try:
        with rt.db.write() as session:
            row = get_datasource_row(session, scope, datasource_id)
            if kind != row.type:
                in_use = session.scalar(select(TaskRow.name).where(_uses(datasource_id)).limit(1))
                if in_use is not None:
                    raise InvalidParameter(
                        name="datasource_type",
                        detail=f"The type cannot change while task {in_use!r} uses it.",
                    )
            row.name = req.datasource_name.strip()
            row.type = kind
            row.app_id = req.app_id
            row.content = _seal(rt, content, json.loads(row.content))
            row.description = req.description
            row.updated_at = rt.clock_ms()
            session.flush()
            return to_wire(row)
    except IntegrityError as exc:
        raise _duplicate_name(req.datasource_name.strip()) from exc


def in_app(column: Any, app_id: str, instance_id: str) -> Any:
    """A condition on a data source's stored `app_id` column: it belongs to application `app_id`
    (the default application's data sources may have stored none)."""
    if app_id == apps.default_app_id(instance_id):
        return (column == app_id) | column.is_(None)
    return column == app_id


def _uses(datasource_id: str) -> Any:
    return (TaskRow.source_datasource_id == datasource_id) | (
        TaskRow.target_datasource_id == datasource_id
    )


def _draft_using(datasource_id: str) -> Any:
    """The id of a composite task's draft (init done, create not yet) using the data source."""
    return (
        select(CdcTaskRow.task_id)
        .where(
            (CdcTaskRow.source_datasource_id == datasource_id)
            | (CdcTaskRow.target_datasource_id == datasource_id),
            ~select(TaskRow.id).where(TaskRow.id == CdcTaskRow.task_id).exists(),
        )
        .limit(1)
    )


def delete_datasource_info_by_id(rt: Runtime, scope: Scope, datasource_id: str) -> None:
    try:
        with rt.db.write() as session:
            row = get_datasource_row(session, scope, datasource_id)
            refusal = _in_use(session, datasource_id)
            if refusal is not None:
                raise refusal
            session.delete(row)
    except IntegrityError as exc:
        # A task (or draft) using it was created after the check, before the delete: the
        # foreign key refused the delete. Answer as if the task had been there first.
        with rt.db.read() as session:
            refusal = _in_use(session, datasource_id)
        if refusal is None:
            raise
        raise refusal from exc


def _in_use(session: Session, datasource_id: str) -> InvalidParameters | None:
    """Why the data source cannot be deleted now (None: it can)."""
    task = session.scalar(select(TaskRow).where(_uses(datasource_id)).limit(1))
    if task is not None:
        return InvalidParameters(
            detail=f"the data source is used by task {task.name!r} ({task.id}); "
            "delete or change that task first"
        )
    draft = session.scalar(_draft_using(datasource_id))
    if draft is not None:
        return InvalidParameters(
            detail=f"the data source is used by composite task {draft}, initialised and "
            "never created; delete that task (DELETE .../tasks/{task_id}) to discard it"
        )
    return None
