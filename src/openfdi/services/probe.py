"""Live checks of a data source through its connector: connectivity, tables, columns.

Synchronous calls that reach another database; every connector failure becomes FDI.3016 with
the connector's (already redacted) reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from openfdi.connectors.errors import ConnectorError
from openfdi.connectors.registry import default_registry
from openfdi.connectors.spi import Connector
from openfdi.domain.scope import Scope
from openfdi.errors import ConnectivityTestFailed, InvalidParameter
from openfdi.services.datasources import decrypted_content
from openfdi.services.lookup import get_datasource_row
from openfdi.services.runtime import Runtime
from openfdi.wire.datasources import (
    ColumnInfo,
    ListDatasourceColumnsResponse,
    ListDatasourceTablesResponse,
    StartTestDatasourceResponse,
)

T = TypeVar("T")


def _with_connector(
    rt: Runtime, scope: Scope, datasource_id: str, work: Callable[[Connector], T]
) -> T:
    with rt.db.read() as session:
        row = get_datasource_row(session, scope, datasource_id)
        kind, content = row.type, decrypted_content(rt, row)
    try:
        with default_registry().open(kind, content) as connector:
            return work(connector)
    except ConnectorError as exc:
        raise ConnectivityTestFailed(detail=exc.message) from exc


def start_test_datasource(
    rt: Runtime, scope: Scope, datasource_id: str
) -> StartTestDatasourceResponse:
    _with_connector(rt, scope, datasource_id, lambda c: c.check())
    return StartTestDatasourceResponse(result=True)


def list_datasource_tables(
    rt: Runtime, scope: Scope, datasource_id: str, name_filter: str | None
) -> ListDatasourceTablesResponse:
    tables = _with_connector(rt, scope, datasource_id, lambda c: c.list_tables())
    if name_filter:
        tables = [t for t in tables if name_filter.lower() in t.lower()]
    return ListDatasourceTablesResponse(tables=tables)


def _column(col: Any) -> ColumnInfo:
    length = col.length if col.length is not None else col.precision
    return ColumnInfo(
        field_name=col.name,
        field_type=col.native_type or col.type.value,
        field_length=str(length) if length is not None else None,
        null_able="true" if col.nullable else "false",
        primary="true" if col.is_primary_key else "false",
        unique="true" if col.is_primary_key else "false",
        decimal_digits=str(col.scale) if col.scale is not None else None,
    )


def list_datasource_columns(
    rt: Runtime, scope: Scope, datasource_id: str, table_name: str | None
) -> ListDatasourceColumnsResponse:
    if not table_name:
        raise InvalidParameter(name="table_name", detail="Name the table.")
    schema = _with_connector(rt, scope, datasource_id, lambda c: c.describe(table_name))
    return ListDatasourceColumnsResponse(columns=[_column(c) for c in schema.columns])
