"""A file end's options: the `message` object of a task end (docs/files.md), parsed and vetted
without any I/O, so create and update refuse a bad key with its name (layer: connectors)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from openfdi.connectors.errors import InvalidContentError
from openfdi.connectors.spi import Column, LogicalType, TableSchema

__all__ = [
    "FORMATS",
    "MTIME",
    "NAME",
    "FileOptions",
    "OptionsError",
    "parse_options",
]

FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
MTIME = "_file_mtime"
NAME = "_file_name"
"""The pseudo columns a file source's `incremental.column` may name: files are read once, in the
order of their modification time (then name) or of their name, and the watermark is the last
file read and how many of its rows (so a stop mid-file resumes at the next row)."""
INCREMENTAL_COLUMNS = (MTIME, NAME)
DEFAULT_NAME = "{table}_{time}_{part}.{ext}"

_KEYS = frozenset(
    {
        "format", "pattern", "header", "delimiter", "quote", "encoding", "null", "fields",
        "min_age_seconds", "name", "max_rows", "max_bytes", "compression",
    }
)  # fmt: skip
_NAME_FIELDS = frozenset({"table", "time", "part", "uid", "ext"})
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_COMPRESSIONS = ("snappy", "zstd", "gzip", "none")
_SAFE_NAME = re.compile(r"^[^/\\\x00]+$")


class OptionsError(InvalidContentError):
    """A file option is missing or wrong; `field` names it (`message.delimiter`)."""


def _fail(key: str, why: str) -> OptionsError:
    return OptionsError(why, field=f"message.{key}")


@dataclass(frozen=True, slots=True)
class FileOptions:
    """How one task end's rows live in files. Names are relative to the data source's folder."""

    format: str = "csv"
    pattern: str | None = None
    """Source: a glob over file names (`orders_*.csv`); default `<table>*.<ext>`."""
    header: bool = True
    delimiter: str = ","
    quote: str = '"'
    encoding: str = "utf-8"
    null: str = ""
    """CSV text that means NULL (an unquoted empty field by default)."""
    fields: tuple[Column, ...] | None = None
    """Declared columns (CSV, JSON lines): names and types instead of the header and guessing."""
    min_age_seconds: float = 1.0
    """Source: a file modified more recently than this is still being written: left for the next
    run (and, when reading by modification time, so is every later file)."""
    name: str = DEFAULT_NAME
    """Target: the name of each file written; placeholders {table} {time} {part} {uid} {ext}."""
    max_rows: int | None = None
    max_bytes: int | None = None
    """Target: start a new file after this many rows or bytes (default: one file per run)."""
    compression: str = "snappy"
    """Parquet target: the column compression."""

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    def glob(self, table: str) -> str:
        return self.pattern or f"{table}*.{self.extension}"

    def declared_schema(self, table: str) -> TableSchema | None:
        return None if self.fields is None else TableSchema(table, self.fields)


def _text(options: Mapping[str, Any], key: str, default: str) -> str:
    value = options.get(key, default)
    if not isinstance(value, str):
        raise _fail(key, "must be text")
    return value


def _positive(options: Mapping[str, Any], key: str) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _fail(key, "must be a whole number of at least 1")
    return value


def _field(raw: Any, i: int) -> Column:
    where = f"fields[{i}]"
    if not isinstance(raw, Mapping):
        raise _fail(where, "must be an object with a name and a type")
    unknown = set(raw) - {"name", "type", "precision", "scale", "length", "nullable"}
    if unknown:
        raise _fail(f"{where}.{sorted(unknown)[0]}", "is not a field key")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(f"{where}.name", "must be a non-empty name")
    try:
        kind = LogicalType(str(raw.get("type", "text")).lower())
    except ValueError:
        names = ", ".join(t.value for t in LogicalType)
        raise _fail(f"{where}.type", f"must be one of {names}") from None
    sizes: dict[str, int | None] = {}
    for key in ("precision", "scale", "length"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise _fail(f"{where}.{key}", "must be a whole number")
        sizes[key] = value
    precision, scale = sizes["precision"], sizes["scale"]
    if kind is LogicalType.DECIMAL and precision is not None:  # noqa: SIM102 - reads better
        if not 1 <= precision <= 38 or not 0 <= (scale or 0) <= precision:
            raise _fail(f"{where}.precision", "must be 1 to 38, with 0 <= scale <= precision")
    nullable = raw.get("nullable", True)
    if not isinstance(nullable, bool):
        raise _fail(f"{where}.nullable", "must be true or false")
    return Column(name, kind, nullable, sizes["length"], precision, scale, native_type=kind.value)


def _fields(raw: Any) -> tuple[Column, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise _fail("fields", "must be a non-empty list of {name, type} objects")
    columns = tuple(_field(f, i) for i, f in enumerate(raw))
    if len({c.name for c in columns}) != len(columns):
        raise _fail("fields", "names a column twice")
    return columns


def _name_template(value: str) -> str:
    if not _SAFE_NAME.match(value) or value.startswith("."):
        raise _fail("name", "must be a file name (no '/', '\\' or leading '.')")
    for placeholder in _PLACEHOLDER.findall(value):
        if placeholder not in _NAME_FIELDS:
            raise _fail("name", f"has an unknown placeholder {{{placeholder}}}")
    if "{part}" not in value and "{uid}" not in value:
        raise _fail("name", "needs {part} or {uid}, so two files never get the same name")
    return value


def parse_options(options: Mapping[str, Any] | None) -> FileOptions:
    """The options of a file end; raise OptionsError naming the bad key (`message.<key>`)."""
    options = options or {}
    unknown = set(options) - _KEYS
    if unknown:
        raise _fail(sorted(unknown)[0], "is not a file option")
    pattern = options.get("pattern")
    fmt = _text(options, "format", "").lower()
    if not fmt and isinstance(pattern, str):
        fmt = next((f for f, ext in EXTENSIONS.items() if pattern.endswith("." + ext)), "")
    fmt = fmt or "csv"
    if fmt not in FORMATS:
        raise _fail("format", f"must be one of {', '.join(FORMATS)}")
    if pattern is not None and (not isinstance(pattern, str) or not _SAFE_NAME.match(pattern)):
        raise _fail("pattern", "must be a file name glob (no '/' or '\\')")
    header = options.get("header", True)
    if not isinstance(header, bool):
        raise _fail("header", "must be true or false")
    delimiter, quote = _text(options, "delimiter", ","), _text(options, "quote", '"')
    for key, value in (("delimiter", delimiter), ("quote", quote)):
        if len(value) != 1 or value in "\r\n":
            raise _fail(key, "must be one character (not a line break)")
    if delimiter == quote:
        raise _fail("quote", "must differ from the delimiter")
    encoding = _text(options, "encoding", "utf-8")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise _fail("encoding", f"{encoding!r} is not a known text encoding") from None
    age = options.get("min_age_seconds", 1.0)
    if not isinstance(age, int | float) or isinstance(age, bool) or not 0 <= age <= 86400:
        raise _fail("min_age_seconds", "must be a number of seconds from 0 to 86400")
    compression = _text(options, "compression", "snappy").lower()
    if compression not in _COMPRESSIONS:
        raise _fail("compression", f"must be one of {', '.join(_COMPRESSIONS)}")
    fields = _fields(options.get("fields"))
    if fields is not None and fmt == "parquet":
        raise _fail("fields", "does not apply to Parquet, whose files carry their schema")
    return FileOptions(
        format=fmt,
        pattern=pattern,
        header=header,
        delimiter=delimiter,
        quote=quote,
        encoding=encoding,
        null=_text(options, "null", ""),
        fields=fields,
        min_age_seconds=float(age),
        name=_name_template(_text(options, "name", DEFAULT_NAME)),
        max_rows=_positive(options, "max_rows"),
        max_bytes=_positive(options, "max_bytes"),
        compression=compression,
    )
