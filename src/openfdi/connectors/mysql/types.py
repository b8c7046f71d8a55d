"""MySQL/MariaDB types <-> logical types (layer: connectors). Pure mapping, no driver import.

Every native type maps to a logical type that holds each of its values, never to a narrower one:
TINYINT(1), which MySQL spells BOOLEAN, holds -128..127, so it is a SMALLINT unless a CHECK
constraint keeps it to 0 and 1 (as openfdi creates a BOOLEAN column: `bool_check`). Likewise
TIME holds -838:59:59..838:59:59, a duration, so it is an INTERVAL unless a CHECK keeps it within
a day (as openfdi creates a TIME column: `time_check`).
"""

from __future__ import annotations

import re

from openfdi.connectors.spi import Column, LogicalType

_TEXT_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext"})
_BLOB_TYPES = frozenset({"tinyblob", "blob", "mediumblob", "longblob"})
# Native types read as they are; any other type is read as CAST(... AS CHAR), typed TEXT.
DIRECT_TYPES = frozenset(
    {
        "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric",
        "float", "double", "real", "date", "time", "datetime", "timestamp", "year", "json",
        "binary", "varbinary", "bit", "enum", "set",
        *_TEXT_TYPES,
        *_BLOB_TYPES,
    }
)  # fmt: skip

# Longest VARCHAR / VARBINARY created as such; longer ones become LONGTEXT / LONGBLOB, because
# MySQL caps a row's inline columns at 65,535 bytes (and utf8mb4 takes up to 4 per character).
MAX_VARCHAR = 1024
MAX_VARBINARY = 4096
# InnoDB indexes at most 3072 bytes of a key: 768 utf8mb4 characters.
MAX_KEY_CHARS = 768
MAX_KEY_BYTES = 3072
MAX_DECIMAL_PRECISION = 65
MAX_DECIMAL_SCALE = 30

# A CHECK clause as MariaDB (`b` in (0,1)) and MySQL ((`b` in (0,1))) show it.
_BOOL_CHECK = re.compile(r"\(?\s*`((?:[^`]|``)+)`\s+in\s*\(\s*0\s*,\s*1\s*\)\s*\)?", re.IGNORECASE)


# A CHECK clause keeping a TIME column within a day, as MariaDB (`t` >= '00:00:00' and `t` <
# '24:00:00') and MySQL (((`t` >= _utf8mb4'00:00:00') and (`t` < _utf8mb4'24:00:00'))) show it.
_TIME_CHECK = re.compile(
    r"\(*\s*`((?:[^`]|``)+)`\s*>=\s*(?:_\w+)?'00:00:00'\s*\)?\s+and\s+"
    r"\(?\s*`\1`\s*<\s*(?:_\w+)?'24:00:00'\s*\)*",
    re.IGNORECASE,
)


def time_check(quoted_name: str) -> str:
    """The CHECK constraint openfdi gives a TIME column it creates for a time of day (TIME alone
    holds durations): with it, the column reads back as TIME."""
    return f"CHECK ({quoted_name} >= '00:00:00' AND {quoted_name} < '24:00:00')"


def time_checked_column(check_clause: str) -> str | None:
    """The column a CHECK clause keeps within a day (00:00:00 <= col < 24:00:00), or None."""
    match = _TIME_CHECK.fullmatch(check_clause.strip())
    return match.group(1).replace("``", "`") if match else None


def bool_check(quoted_name: str) -> str:
    """The CHECK constraint openfdi gives a BOOLEAN column it creates (TINYINT(1) alone holds
    -128..127): with it, the column reads back as BOOLEAN."""
    return f"CHECK ({quoted_name} IN (0,1))"


def bool_checked_column(check_clause: str) -> str | None:
    """The column a CHECK clause keeps to 0 and 1 (`col IN (0,1)`), or None for any other."""
    match = _BOOL_CHECK.fullmatch(check_clause.strip())
    return match.group(1).replace("``", "`") if match else None


def column_from_catalog(
    name: str,
    data_type: str,
    column_type: str,
    *,
    nullable: bool,
    is_primary_key: bool,
    char_length: int | None,
    precision: int | None,
    scale: int | None,
    is_json: bool = False,
    is_bool: bool = False,
    is_time_of_day: bool = False,
) -> Column:
    """A logical column from information_schema.COLUMNS (DATA_TYPE, COLUMN_TYPE, lengths).

    `is_json` marks a MariaDB JSON column, which the catalog shows as LONGTEXT with a
    json_valid() check; `is_bool` a column with a CHECK keeping it to 0 and 1; `is_time_of_day`
    a TIME column with a CHECK keeping it within a day.
    """
    data_type = data_type.lower()
    unsigned = "unsigned" in column_type.lower()
    length = None
    decimal_precision = decimal_scale = None
    if is_json or data_type == "json":
        kind = LogicalType.JSON
    elif data_type == "tinyint":
        # TINYINT(1) is how MySQL spells BOOLEAN, but it stores -1 and 2 as well: BOOLEAN only
        # when a CHECK guarantees 0 or 1 (a boolean would turn every non-zero into true).
        is_bool = is_bool and column_type.lower().startswith("tinyint(1)")
        kind = LogicalType.BOOLEAN if is_bool else LogicalType.SMALLINT
    elif data_type in ("smallint", "year"):
        kind = LogicalType.INT if unsigned else LogicalType.SMALLINT
    elif data_type in ("mediumint", "int", "integer"):
        kind = LogicalType.BIGINT if unsigned and data_type != "mediumint" else LogicalType.INT
    elif data_type == "bigint":
        kind = LogicalType.DECIMAL if unsigned else LogicalType.BIGINT
        if unsigned:
            decimal_precision, decimal_scale = 20, 0
    elif data_type in ("decimal", "numeric"):
        kind = LogicalType.DECIMAL
        decimal_precision, decimal_scale = precision, scale
    elif data_type == "float":
        kind = LogicalType.FLOAT
    elif data_type in ("double", "real"):
        kind = LogicalType.DOUBLE
    elif data_type in ("char", "varchar", "enum", "set"):
        kind, length = LogicalType.VARCHAR, char_length
    elif data_type in _TEXT_TYPES:
        kind = LogicalType.TEXT
    elif data_type == "date":
        kind = LogicalType.DATE
    elif data_type == "time":
        # -838:59:59 to 838:59:59: a duration. As a time of day it would lose every value outside
        # 00:00..24:00 (PostgreSQL's time holds only those), unless a CHECK rules those out.
        kind = LogicalType.TIME if is_time_of_day else LogicalType.INTERVAL
    elif data_type == "datetime":
        kind = LogicalType.TIMESTAMP
    elif data_type == "timestamp":
        kind = LogicalType.TIMESTAMPTZ  # stored as UTC, shown in the session zone: an instant
    elif data_type in ("binary", "varbinary"):
        kind, length = LogicalType.BINARY, char_length
    elif data_type in _BLOB_TYPES or data_type == "bit":
        kind = LogicalType.BINARY
    elif data_type == "uuid":  # MariaDB 10.7+
        kind, length = LogicalType.VARCHAR, 36
    else:
        kind = LogicalType.TEXT
    return Column(
        name,
        kind,
        nullable=nullable,
        length=length,
        precision=decimal_precision,
        scale=decimal_scale,
        is_primary_key=is_primary_key,
        native_type=column_type,
    )


def ddl_type(column: Column, *, in_key: bool) -> str:
    """The MySQL type to create a logical column with (`in_key`: part of an index)."""
    kind = column.type
    if kind is LogicalType.DECIMAL:
        if column.precision is None:
            return f"DECIMAL({MAX_DECIMAL_PRECISION},{MAX_DECIMAL_SCALE})"
        precision = min(column.precision, MAX_DECIMAL_PRECISION)
        scale = min(column.scale or 0, MAX_DECIMAL_SCALE, precision)
        return f"DECIMAL({precision},{scale})"
    if kind in (LogicalType.VARCHAR, LogicalType.TEXT, LogicalType.JSON):
        length = column.length if kind is LogicalType.VARCHAR else None
        if in_key:
            return f"VARCHAR({min(length or MAX_KEY_CHARS, MAX_KEY_CHARS)})"
        if kind is LogicalType.JSON:
            return "JSON"
        return f"VARCHAR({length})" if length and length <= MAX_VARCHAR else "LONGTEXT"
    if kind is LogicalType.BINARY:
        if in_key:
            return f"VARBINARY({min(column.length or MAX_KEY_BYTES, MAX_KEY_BYTES)})"
        length = column.length
        return f"VARBINARY({length})" if length and length <= MAX_VARBINARY else "LONGBLOB"
    if kind is LogicalType.TIMESTAMPTZ:
        # Explicit NULL: without it, old defaults give a TIMESTAMP column an automatic
        # DEFAULT/ON UPDATE CURRENT_TIMESTAMP that would rewrite copied values.
        return "TIMESTAMP(6) NULL" if column.nullable and not in_key else "TIMESTAMP(6)"
    return {
        LogicalType.BIGINT: "BIGINT",
        LogicalType.INT: "INT",
        LogicalType.SMALLINT: "SMALLINT",
        LogicalType.DOUBLE: "DOUBLE",
        LogicalType.FLOAT: "FLOAT",
        LogicalType.BOOLEAN: "TINYINT(1)",
        LogicalType.DATE: "DATE",
        LogicalType.TIME: "TIME(6)",
        LogicalType.INTERVAL: "TIME(6)",  # a duration, refused beyond 838:59:59 (strict mode)
        LogicalType.TIMESTAMP: "DATETIME(6)",
    }[kind]
