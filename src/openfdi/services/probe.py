"""Live checks of a data source through its connector: connectivity, tables, columns.

Synchronous calls that reach another database; every connector failure becomes FDI.3016 with
the connector's (already redacted) reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from openfdi.connectors.errors import ConnectorError
from openfdi.connectors.spi import Column, Connector, LogicalType
from openfdi.domain.scope import Scope
from openfdi.errors import ConnectivityTestFailed, InvalidParameter
from openfdi.services.datasources import decrypted_content, unsaved_settings
from openfdi.services.lookup import get_datasource_row
from openfdi.services.runtime import Runtime
from openfdi.wire.datasources import (
    ColumnInfo,
    DatasourceInfoRequest,
    ListDatasourceColumnsResponse,
    ListDatasourceTablesResponse,
    StartTestDatasourceResponse,
)

T = TypeVar("T")


def _with_connector(
    rt: Runtime,
    scope: Scope,
    datasource_id: str,
    work: Callable[[Connector, str], T],
    unsaved: DatasourceInfoRequest | None = None,
) -> T:
    with rt.db.read() as session:
        row = get_datasource_row(session, scope, datasource_id)
        if unsaved is None:
            kind, content = row.type, decrypted_content(rt, row)
        else:
            kind, content = unsaved_settings(rt, row, unsaved)
    try:
        with rt.registry.open(kind, content) as connector:
            return work(connector, kind)
    except ConnectorError as exc:
        raise ConnectivityTestFailed(detail=exc.message) from exc


def start_test_datasource(
    rt: Runtime, scope: Scope, datasource_id: str, body: DatasourceInfoRequest | None = None
) -> StartTestDatasourceResponse:
    """Test the settings the client sent (the SDK sends a DatasourceInfo: a form being edited,
    not saved yet), or the stored ones when no body came. Nothing is saved either way."""
    _with_connector(rt, scope, datasource_id, lambda c, _: c.check(), body)
    return StartTestDatasourceResponse(result=True)


def list_datasource_tables(
    rt: Runtime, scope: Scope, datasource_id: str, name_filter: str | None
) -> ListDatasourceTablesResponse:
    tables = _with_connector(rt, scope, datasource_id, lambda c, _: c.list_tables())
    if name_filter:
        tables = [t for t in tables if name_filter.lower() in t.lower()]
    return ListDatasourceTablesResponse(tables=tables)


# `field_length` follows JDBC's COLUMN_SIZE (what a ROMA server, a Java service, reads from its
# drivers): digits of precision for numbers, characters of the longest text form for dates and
# times (with microseconds), characters or bytes for strings and binaries. Lengths the catalog
# declares win; these fill the types that declare none (docs/api.md, "Columns").
_INT_DIGITS = {LogicalType.SMALLINT: 5, LogicalType.INT: 10, LogicalType.BIGINT: 19}
_FIXED_LENGTH = {
    **_INT_DIGITS,
    LogicalType.BOOLEAN: 1,
    LogicalType.FLOAT: 8,  # pgjdbc's figures for float4 / float8
    LogicalType.DOUBLE: 17,
    LogicalType.DATE: len("2026-12-05"),
    LogicalType.TIME: len("23:59:59.999999"),
    LogicalType.INTERVAL: len("-838:59:59.999999"),  # MySQL TIME's longest
    LogicalType.TIMESTAMP: len("2026-12-05 23:59:59.999999"),
    LogicalType.TIMESTAMPTZ: len("2026-12-05 23:59:59.999999+00:00"),
}
# An unconstrained DECIMAL: the largest precision a column can declare (PostgreSQL's), so a
# client creating a column from the answer can hold every value.
_UNCONSTRAINED_DECIMAL = 1000
# MariaDB's text and blob families have fixed maxima (its catalog's CHARACTER_MAXIMUM_LENGTH).
_MYSQL_LOB_LENGTH = {
    "tinytext": 255, "tinyblob": 255, "text": 65_535, "blob": 65_535,
    "mediumtext": 16_777_215, "mediumblob": 16_777_215,
    "longtext": 4_294_967_295, "longblob": 4_294_967_295, "json": 4_294_967_295,
}  # fmt: skip
# Unbounded text, binary and JSON elsewhere (PostgreSQL text/bytea/json, SQLite): JDBC's answer,
# Integer.MAX_VALUE.
_UNBOUNDED = 2**31 - 1


def field_length(col: Column, kind: str) -> int:
    """The `field_length` of a column of a `kind` data source: see the table above."""
    if col.length is not None:
        return col.length
    if col.type is LogicalType.DECIMAL:
        return col.precision if col.precision is not None else _UNCONSTRAINED_DECIMAL
    if col.type in _FIXED_LENGTH:
        return _FIXED_LENGTH[col.type]
    if kind == "MYSQL":
        return _MYSQL_LOB_LENGTH.get(col.native_type.split("(")[0].strip().lower(), _UNBOUNDED)
    return _UNBOUNDED


def _decimal_digits(col: Column) -> str | None:
    """Digits after the point of a number; null for anything else (the SDK's ColumnInfo)."""
    if col.type in _INT_DIGITS:
        return "0"
    if col.type is LogicalType.DECIMAL and col.precision is not None:
        return str(col.scale or 0)  # DECIMAL(p) is DECIMAL(p, 0)
    return None


def _column(col: Column, kind: str) -> ColumnInfo:
    return ColumnInfo(
        field_name=col.name,
        field_type=col.native_type or col.type.value,
        field_length=str(field_length(col, kind)),
        null_able="true" if col.nullable else "false",
        primary="true" if col.is_primary_key else "false",
        unique="true" if col.is_primary_key else "false",
        decimal_digits=_decimal_digits(col),
    )


def list_datasource_columns(
    rt: Runtime, scope: Scope, datasource_id: str, table_name: str | None
) -> ListDatasourceColumnsResponse:
    if not table_name:
        raise InvalidParameter(name="table_name", detail="Name the table.")
    columns = _with_connector(
        rt,
        scope,
        datasource_id,
        lambda c, kind: [_column(col, kind) for col in c.describe(table_name).columns],
    )
    return ListDatasourceColumnsResponse(columns=columns)
