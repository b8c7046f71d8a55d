"""Data sources: create, list, show, update, delete. Secrets are encrypted at rest and masked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from openfdi.domain.datasource import KNOWN_TYPES, REQUIRED_CONTENT, SECRET_FIELDS
from openfdi.domain.ids import new_hex_id
from openfdi.domain.scope import Scope
from openfdi.errors import InvalidParameter, InvalidParameters
from openfdi.services.lookup import get_datasource_row
from openfdi.services.paging import like_pattern, record_page
from openfdi.services.runtime import Runtime
from openfdi.store.crypto import MASK
from openfdi.store.tables import DatasourceRow, TaskRow
from openfdi.wire.datasources import (
    DatasourceInfoRequest,
    DatasourceResponse,
    ListDatasourcesResponse,
)

_ENCRYPTED_PREFIX = "enc:"


def _validate(req: DatasourceInfoRequest) -> tuple[str, dict[str, Any]]:
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
    missing = [f for f in REQUIRED_CONTENT.get(kind, ()) if content.get(f) in (None, "")]
    if missing:
        raise InvalidParameter(
            name=f"content.{missing[0]}", detail=f"Required for {kind} data sources."
        )
    return kind, content


def _refuse_private_sqlite(rt: Runtime, kind: str, content: dict[str, Any]) -> None:
    """A SQLite data source may not point into openfdi's own data dir (the metadata database,
    the key file): any caller could otherwise copy other projects' metadata. The demo's
    databases, under data_dir/demo, are the exception."""
    if kind != "SQLITE":
        return
    data_dir = rt.settings.data_dir.resolve()
    path = Path(str(content["database_name"])).expanduser().resolve()
    if path.is_relative_to(data_dir) and not path.is_relative_to(data_dir / "demo"):
        raise InvalidParameter(
            name="content.database_name", detail="openfdi's own data directory is off limits."
        )


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


def to_wire(row: DatasourceRow) -> DatasourceResponse:
    return DatasourceResponse(
        datasource_id=row.id,
        datasource_name=row.name,
        datasource_type=row.type,
        app_id=row.app_id,
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
    kind, content = _validate(req)
    _refuse_private_sqlite(rt, kind, content)
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
        where.append(DatasourceRow.app_id == app_id)
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
    kind, content = _validate(req)
    _refuse_private_sqlite(rt, kind, content)
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


def _uses(datasource_id: str) -> Any:
    return (TaskRow.source_datasource_id == datasource_id) | (
        TaskRow.target_datasource_id == datasource_id
    )


def delete_datasource_info_by_id(rt: Runtime, scope: Scope, datasource_id: str) -> None:
    with rt.db.write() as session:
        row = get_datasource_row(session, scope, datasource_id)
        task = session.scalar(select(TaskRow).where(_uses(datasource_id)).limit(1))
        if task is not None:
            raise InvalidParameters(
                detail=f"the data source is used by task {task.name!r} ({task.id}); "
                "delete or change that task first"
            )
        session.delete(row)
