"""JSON records to typed rows and rows back to JSON, numbers kept exact (layer: connectors).

Responses are parsed with every non-integer number as `Decimal` (never through a float), so a
DECIMAL column gets exactly the digits the API sent, and a DOUBLE column the double nearest to
them, as if parsed once. Rows are sent back the same way: a `Decimal` is written as its own digits
(a JSON number, or a string when the target says `"decimals": "string"`). `json` can do neither
by itself (it would go through float), hence the small writer below.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from openfdi.connectors._json_text import ENCODE_STR, exact_json, finite_double, printable
from openfdi.connectors._messages import Field, _converter, _getter, _text
from openfdi.connectors.spi import Column, LogicalType, RejectedRow, Row, TableSchema

__all__ = [
    "BadRecordError",
    "decoder",
    "encoder",
    "exact_json",
    "page_decoder",
    "parse_body",
    "parse_json",
    "parse_json_bytes",
    "schema_of",
    "walk",
]

RAW_LIMIT = 4096
"""Characters of a refused record kept in its dirty row."""

_DECODER = json.JSONDecoder(parse_float=decimal.Decimal)
_BAD_VALUE = (ValueError, TypeError, ArithmeticError, OverflowError)
"""What a conversion raises for a value that does not fit its type (decimal.InvalidOperation is
an ArithmeticError, not a ValueError)."""


class BadRecordError(ValueError):
    """A record that cannot become a row; the message says which field and why."""


_FAST_DECODER = msgspec.json.Decoder(float_hook=decimal.Decimal)
"""msgspec hands each non-integer number's text to `Decimal`, as `_DECODER` does: the same
values, parsed in a third less time (the page thread's JSON parsing was the largest part of an
API read, bench/http_api.py)."""


def parse_json(text: str) -> Any:
    """A JSON document with exact decimals. RecursionError (a hostile nesting) is the caller's."""
    return _DECODER.decode(text)


def parse_json_bytes(body: bytes) -> Any:
    """`parse_json` of a UTF-8 body. What msgspec refuses goes to `parse_json`, which then
    decides: the standard library's extensions (NaN, Infinity, lone surrogates) read as
    before, and a body that is not JSON or not UTF-8 fails with the same error as before
    (ValueError, UnicodeDecodeError)."""
    return parse_body(body)[0]


def parse_body(body: bytes) -> tuple[Any, bool]:
    """`parse_json_bytes`, and whether the standard library parsed it: only then may its
    strings hold a lone surrogate (msgspec refuses `"\\ud800"`), which the caller checks for."""
    try:
        return _FAST_DECODER.decode(body), False
    except msgspec.DecodeError:
        return parse_json(body.decode("utf-8")), True


def walk(doc: Any, steps: Sequence[str | int]) -> Any:
    """The value at `steps` in `doc`, or None where the path leads nowhere."""
    for step in steps:
        if isinstance(step, int):
            if not isinstance(doc, list) or step >= len(doc):
                return None
            doc = doc[step]
        elif isinstance(doc, dict):
            doc = doc.get(step)
        else:
            return None
        if doc is None:
            return None
    return doc


def schema_of(fields: Sequence[Field], name: str) -> TableSchema:
    """The rows' schema: one column per field; without fields, the whole record as `payload`."""
    if not fields:
        return TableSchema(name, (Column("payload", LogicalType.JSON),))
    return TableSchema(name, tuple(Column(f.name, f.type) for f in fields))


def _convert_for(kind: LogicalType) -> Callable[[Any], Any]:
    """`_messages`' converter, except that objects and arrays keep exact numbers as JSON text
    (its own text form passes Decimals through float)."""
    base = _converter(kind)
    if kind is LogicalType.JSON:
        return exact_json
    if kind in (LogicalType.VARCHAR, LogicalType.TEXT):
        return lambda v: exact_json(v) if isinstance(v, dict | list) else _text(v)
    if kind in (LogicalType.DOUBLE, LogicalType.FLOAT):
        return lambda v: finite_double(v, base(v))
    return base


def _slow_decoder(plan: list[tuple[str, LogicalType, Any, Any]]) -> Callable[[Any], Row]:
    """Field by field, naming the field whose value does not fit (and the reference for the
    compiled decoder below, which must give the same rows)."""
    no_meta: dict[str, Any] = {}

    def decode(record: Any) -> Row:
        if not isinstance(record, dict):
            raise BadRecordError(f"the record is not a JSON object: {exact_json(record)[:80]}")
        row: list[Any] = []
        for name, kind, get, convert in plan:
            value = get(record, no_meta)
            if value is None:
                row.append(None)
                continue
            try:
                row.append(convert(value))
            except _BAD_VALUE as exc:
                shown = exact_json(value)[:80]
                raise BadRecordError(
                    f"field {name}: {shown} is not a {kind.value} ({exc})"
                ) from None
        return tuple(row)

    return decode


_AS_IS: dict[LogicalType, str] = {
    LogicalType.BIGINT: "int",
    LogicalType.INT: "int",
    LogicalType.SMALLINT: "int",
    LogicalType.DECIMAL: "Decimal",
    LogicalType.VARCHAR: "str",
    LogicalType.TEXT: "str",
    LogicalType.BOOLEAN: "bool",
}
"""The Python type a decoded JSON value already has when it needs no conversion for the column."""


def _utc_time(value: Any) -> Any:
    if type(value) is str:
        stamp = dt.datetime.fromisoformat(value)
        zone = stamp.tzinfo
        if zone is dt.UTC:  # `...Z`, the usual spelling: nothing to convert
            return stamp
        return stamp.replace(tzinfo=dt.UTC) if zone is None else stamp.astimezone(dt.UTC)
    return _converter(LogicalType.TIMESTAMPTZ)(value)


def decoder(fields: Sequence[Field], columns: Sequence[str] | None) -> Callable[[Any], Row]:
    """A function from one decoded record to the row of `columns` (default: every field); it
    raises BadRecordError naming the field whose value does not fit its type.

    Why compiled: per-record Python calls were 60 % of a read (profiled: a getter and a converter
    per field). The generated function reads each path with inline `dict.get`s, keeps a value
    that already has its column's type, and converts the others; any failure re-runs the record
    through the field-by-field decoder, which names the field. Only JSON path keys validated by
    the options (written with repr) and fixed names go into the source.
    """
    if not fields:
        return lambda record: (exact_json(record),)
    by_name = {f.name: f for f in fields}
    chosen = [by_name[c] for c in columns] if columns else list(fields)
    plan = [(f.name, f.type, _getter(f, "json"), _convert_for(f.type)) for f in chosen]
    slow = _slow_decoder(plan)
    env: dict[str, Any] = {"Decimal": decimal.Decimal, "walk": walk, "slow": slow,
                           "BAD": (*_BAD_VALUE, AttributeError)}  # fmt: skip
    lines = ["def decode(rec):", "    if type(rec) is not dict:", "        return slow(rec)",
             "    try:"]  # fmt: skip
    for i, f in enumerate(chosen):
        steps = f.path or ()
        if steps and all(isinstance(s, str) for s in steps):
            lines.append(f"        v = rec.get({steps[0]!r})")
            for step in steps[1:]:
                lines.append(f"        v = v.get({step!r}) if type(v) is dict else None")
        else:
            env[f"p{i}"] = steps
            lines.append(f"        v = walk(rec, p{i})")
        env[f"c{i}"] = _utc_time if f.type is LogicalType.TIMESTAMPTZ else plan[i][3]
        as_is = _AS_IS.get(f.type)
        keep = f"v if type(v) is {as_is} else " if as_is else ""
        lines.append(f"        x{i} = None if v is None else {keep}c{i}(v)")
    names = ", ".join(f"x{i}" for i in range(len(chosen)))
    lines += [f"        return ({names},)", "    except BAD:", "        return slow(rec)"]
    exec("\n".join(lines), env)  # noqa: S102 - see the docstring: generated from vetted names
    compiled: Callable[[Any], Row] = env["decode"]
    return compiled


_PYTHON_TYPE: dict[str, type] = {"int": int, "Decimal": decimal.Decimal, "str": str, "bool": bool}
_NONE = type(None)


def _extractor(paths: Sequence[Sequence[str | int]]) -> Callable[[list[Any]], list[list[Any]]]:
    """A function from a page's records (dicts) to one list per path of the values there, as
    `decoder` reads each (None where a path leads nowhere). Compiled: one list comprehension per
    distinct key prefix, so `$.customer.name` and `$.customer.city` look `customer` up once."""
    env: dict[str, Any] = {"walk": walk}
    lines = ["def extract(records):"]
    lists: dict[tuple[str | int, ...], str] = {}

    def list_of(steps: tuple[str | int, ...]) -> str:
        if steps in lists:
            return lists[steps]
        keys = bool(steps) and all(isinstance(s, str) for s in steps)
        outer = list_of(steps[:-1]) if keys and len(steps) > 1 else ""  # before naming this one
        name = f"n{len(lists)}"
        if not keys:
            env[f"p{name}"] = steps
            lines.append(f"    {name} = [walk(r, p{name}) for r in records]")
        elif len(steps) == 1:
            lines.append(f"    {name} = [r.get({steps[0]!r}) for r in records]")
        else:
            lines.append(
                f"    {name} = [v.get({steps[-1]!r}) if type(v) is dict else None for v in {outer}]"
            )
        lists[steps] = name
        return name

    names = [list_of(tuple(steps)) for steps in paths]
    lines.append(f"    return [{', '.join(names)}]")
    exec("\n".join(lines), env)  # noqa: S102 - keys written with repr, as in `decoder`
    extract: Callable[[list[Any]], list[list[Any]]] = env["extract"]
    return extract


def _column_converter(
    kind: LogicalType, convert: Callable[[Any], Any]
) -> Callable[[list[Any]], list[Any]]:
    """Converts a column of values (None stays None) as `decoder` converts each; raises what the
    conversion of a bad value raises."""
    if kind is LogicalType.TIMESTAMPTZ:
        return _utc_times
    as_is = _PYTHON_TYPE.get(_AS_IS.get(kind, ""))

    def column(values: list[Any]) -> list[Any]:
        kinds = set(map(type, values))
        kinds.discard(_NONE)
        if as_is is not None and kinds <= {as_is}:
            return values  # every value already has the column's type: nothing to do
        return [None if v is None else v if type(v) is as_is else convert(v) for v in values]

    return column


def _utc_times(values: list[Any]) -> list[Any]:
    """`_utc_time` of a column: ISO-8601 texts parsed in one pass, shifted to UTC only where one
    is not already (most APIs write `...Z`)."""
    parse = dt.datetime.fromisoformat
    try:
        stamps = [None if v is None else parse(v) for v in values]
    except TypeError:  # not all text (epoch numbers...): value by value
        return [None if v is None else _utc_time(v) for v in values]
    if all(s is None or s.tzinfo is dt.UTC for s in stamps):
        return stamps
    return [
        None
        if s is None
        else s
        if s.tzinfo is dt.UTC
        else s.replace(tzinfo=dt.UTC)
        if s.tzinfo is None
        else s.astimezone(dt.UTC)
        for s in stamps
    ]


def page_decoder(
    fields: Sequence[Field], columns: Sequence[str] | None
) -> Callable[[list[Any]], list[Row] | None]:
    """A function from a page's records to their rows, column by column (the same rows as
    `decoder`'s, record by record), or None when a record needs `decoder`: one that is not an
    object, or a value that does not convert (which `decoder` then names).

    Why by column: per record, a read spent most of its time in the decoding function's calls and
    per-value type tests (profiled: bench/http_api.py). A page is taken apart with one list
    comprehension per field (the paths compiled to inline `dict.get`s, as in `decoder`), a
    column whose values all have its type already is kept as it is (one `set(map(type, ...))`),
    and the rows are zipped back together.
    """
    if not fields:
        return lambda records: None
    by_name = {f.name: f for f in fields}
    chosen = [by_name[c] for c in columns] if columns else list(fields)
    extract = _extractor([f.path or () for f in chosen])
    converters = [_column_converter(f.type, _convert_for(f.type)) for f in chosen]
    failures = (*_BAD_VALUE, AttributeError)

    def decode_page(records: list[Any]) -> list[Row] | None:
        if not records:
            return []
        if set(map(type, records)) != {dict}:
            return None
        try:
            values = [convert(c) for convert, c in zip(converters, extract(records), strict=True)]
        except failures:
            return None
        return list(zip(*values, strict=True))

    return decode_page


def refused_record(record: Any, reason: str) -> RejectedRow:
    """The dirty row of a record that could not become a row: its JSON (cut to 4 KiB) and why."""
    return RejectedRow((printable(exact_json(record)[:RAW_LIMIT]),), printable(reason))


def encoder(
    columns: Sequence[str],
    fields: Sequence[Field] | None,
    json_columns: Sequence[bool],
    *,
    decimals_as_strings: bool,
) -> Callable[[Row], str]:
    """A function from a row of `columns` to its JSON object text.

    Keys are the column names, or where `fields` name a column, nested along that field's path
    (`$.order.id` -> {"order": {"id": ...}}). A column of the JSON type holds a document's text,
    embedded as that document rather than as a string.
    """
    by_name = {f.name: f for f in fields or () if f.path}
    paths = [by_name[c].path if c in by_name else (c,) for c in columns]
    flat = all(p is not None and len(p) == 1 and isinstance(p[0], str) for p in paths)
    as_strings = decimals_as_strings

    def value_text(i: int, value: Any) -> str:
        if json_columns[i] and isinstance(value, str):
            return exact_json(parse_json(value), decimals_as_strings=as_strings)
        return exact_json(value, decimals_as_strings=as_strings)

    if flat:
        keys = [ENCODE_STR(str(p[0])) for p in paths if p is not None]
        return _flat_encoder(keys, json_columns, value_text, decimals_as_strings)

    def nested(row: Row) -> str:
        doc: dict[str, Any] = {}
        for i, (path, v) in enumerate(zip(paths, row, strict=True)):
            node: Any = doc
            steps = path or (columns[i],)
            for step in steps[:-1]:
                node = node.setdefault(str(step), {})
            node[str(steps[-1])] = _Raw(value_text(i, v))
        return _raw_json(doc)

    return nested


def _flat_encoder(
    keys: Sequence[str],
    json_columns: Sequence[bool],
    value_text: Callable[[int, Any], str],
    decimals_as_strings: bool,
) -> Callable[[Row], str]:
    """A compiled row -> `{"key":value,...}` function.

    Why compiled: a call to `exact_json` per value was most of a write (profiled). The generated
    function writes strings, ints and finite Decimals inline, by their exact type, and hands
    every other value to `exact_json` (the reference). Only JSON-encoded keys (as repr literals)
    go into the source.
    """
    env: dict[str, Any] = {"S": ENCODE_STR, "D": decimal.Decimal, "V": value_text}
    parts = []
    for i, key in enumerate(keys):
        fallback = f"V({i}, v{i})"
        if json_columns[i]:
            expr = fallback
        else:
            number = (
                "" if decimals_as_strings else f"str(v{i}) if t is D and v{i}.is_finite() else "
            )
            expr = (
                f"(S(v{i}) if (t := type(v{i})) is str else str(v{i}) if t is int else "
                f"{number}'null' if v{i} is None else {fallback})"
            )
        parts.append(f"{(('{' if i == 0 else ',') + key + ':')!r} + {expr}")
    names = "".join(f"v{i}, " for i in range(len(keys)))
    source = f"def encode(row):\n    {names}= row\n    return " + " + ".join(parts) + " + '}'"
    if not keys:
        source = "def encode(row):\n    return '{}'"
    exec(source, env)  # noqa: S102 - see the docstring: generated from JSON-encoded keys only
    compiled: Callable[[Row], str] = env["encode"]
    return compiled


class _Raw(str):
    """JSON text already written, placed as it is."""


def _raw_json(doc: dict[str, Any]) -> str:
    items = (
        f"{ENCODE_STR(k)}:{v if isinstance(v, _Raw) else _raw_json(v)}" for k, v in doc.items()
    )
    return "{" + ",".join(items) + "}"
