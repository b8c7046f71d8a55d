"""PostgreSQL types <-> logical types (layer: connectors). Pure mapping, no driver import."""

from __future__ import annotations

from openfdi.connectors.spi import Column, LogicalType

# Base type name (pg_type.typname) -> logical type, for types psycopg returns as the SPI's value.
_BY_TYPNAME: dict[str, LogicalType] = {
    "int2": LogicalType.SMALLINT,
    "int4": LogicalType.INT,
    "int8": LogicalType.BIGINT,
    "oid": LogicalType.BIGINT,
    "numeric": LogicalType.DECIMAL,
    "float4": LogicalType.FLOAT,
    "float8": LogicalType.DOUBLE,
    "varchar": LogicalType.VARCHAR,
    "bpchar": LogicalType.VARCHAR,
    "text": LogicalType.TEXT,
    "name": LogicalType.TEXT,
    "citext": LogicalType.TEXT,
    "bool": LogicalType.BOOLEAN,
    "date": LogicalType.DATE,
    "time": LogicalType.TIME,
    "timestamp": LogicalType.TIMESTAMP,
    "timestamptz": LogicalType.TIMESTAMPTZ,
    "bytea": LogicalType.BINARY,
    "json": LogicalType.JSON,
    "jsonb": LogicalType.JSON,
    "uuid": LogicalType.VARCHAR,
}

_DDL: dict[LogicalType, str] = {
    LogicalType.BIGINT: "bigint",
    LogicalType.INT: "integer",
    LogicalType.SMALLINT: "smallint",
    LogicalType.DOUBLE: "double precision",
    LogicalType.FLOAT: "real",
    LogicalType.TEXT: "text",
    LogicalType.BOOLEAN: "boolean",
    LogicalType.DATE: "date",
    LogicalType.TIME: "time",
    LogicalType.INTERVAL: "interval",
    LogicalType.TIMESTAMP: "timestamp",
    LogicalType.TIMESTAMPTZ: "timestamptz",
    LogicalType.BINARY: "bytea",
    # json, not jsonb: json keeps the document's text exactly as the source had it.
    LogicalType.JSON: "json",
}

NUMERIC_MAX_PRECISION = 1000


def column_from_catalog(
    name: str,
    typname: str,
    typmod: int,
    *,
    nullable: bool,
    is_primary_key: bool,
    native_type: str,
) -> Column:
    """A logical column from pg_attribute/pg_type facts (base type of a domain already resolved).

    Types without a faithful logical twin (interval, inet, arrays, enums, ...) become TEXT and are
    read as their text form, which every target can store. An interval is not an INTERVAL: it
    counts months and days apart from seconds ("1 mon" is not 30 days), which a duration cannot.
    """
    kind = _BY_TYPNAME.get(typname, LogicalType.TEXT)
    length = precision = scale = None
    if typname in ("varchar", "bpchar") and typmod >= 4:
        length = typmod - 4
    elif typname == "uuid":
        length = 36
    elif typname == "numeric" and typmod >= 4:
        precision = ((typmod - 4) >> 16) & 0xFFFF
        scale = (typmod - 4) & 0xFFFF
    return Column(
        name,
        kind,
        nullable=nullable,
        length=length,
        precision=precision,
        scale=scale,
        is_primary_key=is_primary_key,
        native_type=native_type,
    )


def ddl_type(column: Column) -> str:
    """The PostgreSQL type to create a logical column with."""
    if column.type is LogicalType.DECIMAL:
        if column.precision is None:
            return "numeric"
        precision = min(column.precision, NUMERIC_MAX_PRECISION)
        return f"numeric({precision},{min(column.scale or 0, precision)})"
    if column.type is LogicalType.VARCHAR:
        return f"varchar({column.length})" if column.length else "varchar"
    return _DDL[column.type]
