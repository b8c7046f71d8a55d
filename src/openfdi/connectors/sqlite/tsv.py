"""SQLite as a source of the text pass-through form (layer: connectors); see `_tsv`.

SQLite itself writes most of each row's line: a SELECT renders numbers, booleans, dates and
timestamps in the text form and joins runs of them, so Python handles a few fields per row
instead of converting ten values (`columnar`) that a target would then encode again. Two kinds
of column come back on their own and are finished a column at a time with C builtins:
- doubles: SQLite prints a REAL with 15 significant digits, which is not exact, so the number
  comes back and Python prints it (`repr`, the shortest exact form);
- text: escaping it in SQL (four instr() scans a value, character-aware) cost more than the rest
  of the row; in Python one scan of a chunk's whole column finds the rare value to escape.
Text is fetched as UTF-8 bytes and never decoded: a str holding one emoji takes 4 bytes a
character, and decoding then encoding each chunk again cost more than SQLite took to produce it.

SQLite stores anything in any column, and the row path (`types.reader_for`) converts what it
finds leniently. The text form may only carry a value when the target, parsing it, gets exactly
what the row path would give it. So each expression accepts only the canonical storage forms
(those `types.writer_for` writes, and a few equally plain ones) and renders any other value as a
lone tab: a field too many, which every target refuses, so the slice is written again through
the row path, which reports each such row as it always did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from openfdi.connectors.spi import Column, LogicalType, Row
from openfdi.connectors.sqlite.columnar import positions

__all__ = ["line_select", "lines_joiner"]

REFUSED = "char(9)"
"""What a value the text form cannot carry becomes: an unescaped tab, so the line has a field too
many and the target refuses it (see the module's docstring)."""
REFUSED_TEXT = "0.5"
"""What a text field that cannot travel becomes: a number, where text is expected (see `_texts`)."""
NULL = "'\\N'"
_DIGITS = "[0-9]"
_DATE_GLOB = f"{_DIGITS * 4}-{_DIGITS * 2}-{_DIGITS * 2}"
_TIMESTAMP_GLOB = f"{_DATE_GLOB} {_DIGITS * 2}:{_DIGITS * 2}:{_DIGITS * 2}"
# A decimal stored as a REAL carries its exact digits only below this many (see types).
_REAL_SAFE_DIGITS = 15


def _text_field(q: str) -> str:
    """The stored text itself (escaped by Python), NULL, or REFUSED_TEXT for what the row path
    would turn into text some other way (a REAL's repr, a BLOB's decoding)."""
    return (
        f"CASE typeof({q}) WHEN 'text' THEN {q} WHEN 'null' THEN NULL "
        f"WHEN 'integer' THEN CAST({q} AS TEXT) ELSE {REFUSED_TEXT} END"
    )


def _integer(q: str) -> str:
    return f"CASE typeof({q}) WHEN 'integer' THEN {q} WHEN 'null' THEN {NULL} ELSE {REFUSED} END"


def _boolean(q: str) -> str:
    # 0 and 1, stored as integers (or 0.0 and 1.0): what the row path reads as booleans.
    return (
        f"CASE WHEN {q} IS NULL THEN {NULL} WHEN typeof({q}) IN ('integer', 'real') THEN "
        f"CASE {q} WHEN 0 THEN '0' WHEN 1 THEN '1' ELSE {REFUSED} END ELSE {REFUSED} END"
    )


def _decimal(q: str, scale: int) -> str:
    # Text: digits, a point, signs and an exponent only (as str(Decimal) writes small ones:
    # 1E-10), which Decimal() and the targets parse alike.
    # A REAL (numeric affinity) passes when it holds a decimal of at most `scale` places and
    # 15 digits, which printf() then spells exactly: the row path's Decimal(repr(v)) quantized.
    real = REFUSED
    if scale < _REAL_SAFE_DIGITS:
        limit = f"1e{_REAL_SAFE_DIGITS - scale}"
        real = (
            f"CASE WHEN abs({q}) < {limit} AND {q} = round({q}, {scale}) "
            f"THEN printf('%.{scale}f', {q}) ELSE {REFUSED} END"
        )
    return (
        f"CASE typeof({q}) WHEN 'text' THEN CASE WHEN {q} GLOB '*[^0-9.eE+-]*' OR {q} = '' "
        f"THEN {REFUSED} ELSE {q} END "
        f"WHEN 'integer' THEN {q} WHEN 'real' THEN {real} "
        f"WHEN 'null' THEN {NULL} ELSE {REFUSED} END"
    )


def _date(q: str) -> str:
    return (
        f"CASE WHEN {q} IS NULL THEN {NULL} WHEN typeof({q}) = 'text' AND length({q}) = 10 "
        f"AND {q} GLOB '{_DATE_GLOB}' THEN {q} ELSE {REFUSED} END"
    )


def _timestamp(q: str, suffix: str) -> str:
    """`YYYY-MM-DD HH:MM:SS[.ffffff]` followed by `suffix`, which is dropped. Every character is
    checked: `05.123+02` is as long as six digits of fraction, and Python reads it as an offset
    (the row path converts to UTC) where a target's `timestamp` ignores it."""
    n = len(suffix)
    whole = f"{_TIMESTAMP_GLOB}{suffix}"
    fraction = f"{_TIMESTAMP_GLOB}.{_DIGITS * 6}{suffix}"
    return (
        f"CASE WHEN {q} IS NULL THEN {NULL} WHEN typeof({q}) = 'text' AND "
        f"CASE length({q}) WHEN {19 + n} THEN {q} GLOB '{whole}' "
        f"WHEN {26 + n} THEN {q} GLOB '{fraction}' ELSE 0 END "
        f"THEN substr({q}, 1, length({q}) - {n}) ELSE {REFUSED} END"
    )


def _double_field(q: str) -> str:
    """The number itself (printed by Python), '\\N' or the refusal."""
    return (
        f"CASE typeof({q}) WHEN 'real' THEN {q} WHEN 'integer' THEN {q} "
        f"WHEN 'null' THEN {NULL} ELSE {REFUSED} END"
    )


def _expression(column: Column, q: str) -> str:
    kind = column.type
    if kind in (LogicalType.BIGINT, LogicalType.INT, LogicalType.SMALLINT):
        return _integer(q)
    if kind is LogicalType.BOOLEAN:
        return _boolean(q)
    if kind is LogicalType.DECIMAL and column.scale is not None:
        return _decimal(q, column.scale)
    if kind is LogicalType.DATE:
        return _date(q)
    if kind is LogicalType.TIMESTAMP:
        return _timestamp(q, "")
    if kind is LogicalType.TIMESTAMPTZ:
        return _timestamp(q, "+00:00")
    raise ValueError(f"no text form for a {kind.value} column")


_TEXT = frozenset({LogicalType.VARCHAR, LogicalType.TEXT})


def line_select(
    columns: Sequence[Column], quote: Callable[[str], str]
) -> tuple[list[str], dict[int, Callable[[Sequence[Any]], list[bytes]]]]:
    """The select list of a line's fields (runs of columns joined by SQLite, doubles, texts),
    and how to finish the fields that need it, by index."""
    fields: list[str] = []
    finish: dict[int, Callable[[Sequence[Any]], list[bytes]]] = {}
    run: list[str] = []
    for column in columns:
        q = quote(column.name)
        if column.type is LogicalType.DOUBLE or column.type in _TEXT:
            if run:
                fields.append(_joined(run))
                run = []
            double = column.type is LogicalType.DOUBLE
            finish[len(fields)] = _doubles if double else _texts
            fields.append(_double_field(q) if double else _text_field(q))
        else:
            run.append(_expression(column, q))
    if run:
        fields.append(_joined(run))
    return fields, finish


def _joined(run: list[str]) -> str:
    # || makes text of what it joins; a run of one column needs the CAST to come back as text
    # (an integer, say, would come back as a number).
    return " || char(9) || ".join(run) if len(run) > 1 else f"CAST({run[0]} AS TEXT)"


def lines_joiner(
    finish: dict[int, Callable[[Sequence[Any]], list[bytes]]],
) -> Callable[[Sequence[Row]], list[bytes]]:
    """Turns fetched rows (fields as bytes, but those `finish` turns into bytes, a column at a
    time) into their lines, without newlines."""
    join = b"\t".join
    if not finish:
        return lambda rows: list(map(join, rows))

    def lines(rows: Sequence[Row]) -> list[bytes]:
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        for i, column_bytes in finish.items():
            columns[i] = column_bytes(columns[i])
        return list(map(join, zip(*columns, strict=True)))

    return lines


_SPECIALS = (b"\\", b"\t", b"\n", b"\r", b"\0")
_EMPTY = b""


def _texts(values: Sequence[Any]) -> list[bytes]:
    """A text column's values escaped, NULL as `\\N`; a value the row path would not read as
    this text (REFUSED_TEXT) or that holds NUL (the text form has no escape for it) is refused."""
    out = list(values)
    nulls = positions(out, None)
    for i in nulls:
        out[i] = _EMPTY
    if set(map(type, out)) == {bytes}:
        joined = _EMPTY.join(out)
        if not any(special in joined for special in _SPECIALS):
            for i in nulls:
                out[i] = b"\\N"
            return out  # the common case: no call per value
    return list(map(_text, values))


def _text(value: Any) -> bytes:
    if value is None:
        return b"\\N"
    if not isinstance(value, bytes) or b"\0" in value:
        return b"\t"  # refused: a field too many
    return (
        value.replace(b"\\", b"\\\\")
        .replace(b"\t", b"\\t")
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
    )


def _doubles(values: Sequence[Any]) -> list[bytes]:
    """Each double as repr spells it (the shortest text that reads back as the same double),
    mapped in C; the few other values (NULL, integers, the refusal) one by one."""
    if set(map(type, values)) == {float}:
        return _reprs(values)
    odd = [i for i, kind in enumerate(map(type, values)) if kind is not float]
    filled = list(values)
    for i in odd:
        filled[i] = 0.0
    out = _reprs(filled)
    for i in odd:
        out[i] = _double(values[i])
    return out


def _reprs(floats: Sequence[float]) -> list[bytes]:
    return "\n".join(map(float.__repr__, floats)).encode().split(b"\n")


def _double(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value  # NULL or the refusal, already spelled by SQLite
    if isinstance(value, float):
        return repr(value).encode()
    return b"%d" % value  # an integer in a DOUBLE column: the same number
