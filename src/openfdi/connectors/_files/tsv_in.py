"""Rows arriving as TSV text for a file target (layer: connectors): the text pass-through form of
`connectors._tsv`, as PostgreSQL's `COPY ... TO STDOUT` writes it.

pyarrow parses each block (C++, no row ever becomes Python objects) straight into the Arrow
types the row path builds from the same values (`FileWriter`'s codec types), so a CSV or Parquet
file gets the same bytes either way. The form spells every value one way (booleans 0/1,
timestamps with time zone as their UTC wall time, NULL as `\\N`); a value that does not parse
as its column's type raises `pa.ArrowInvalid`, and the caller refuses the slice (the engine then
writes it row by row, as the row path would have).

Most text holds no escape at all: a block where every backslash starts a `\\N` is parsed as it
is. A block with escaped characters (a tab, a newline, a backslash inside a value) is first
rewritten, in Python, into CSV quoting that pyarrow reads back exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.csv as pcsv

__all__ = ["parse_tsv"]

NULL = b"\\N"
_ESCAPED = re.compile(rb"\\[^N]")
"""A backslash that does not start a NULL: an escape (a literal backslash is `\\\\`)."""
_UNESCAPE = {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r", b"b": b"\b", b"f": b"\f",
             b"v": b"\v"}  # fmt: skip
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)


def _unescaped(field: bytes) -> bytes:
    def one(found: re.Match[bytes]) -> bytes:
        plain = _UNESCAPE.get(found.group(1))
        if plain is None:
            raise pa.ArrowInvalid(f"an unknown escape {found.group(0)!r} in the TSV text")
        return plain

    return _ESCAPE.sub(one, field)


def _requoted(block: bytes) -> bytes:
    """The TSV block as tab-separated text with CSV quoting: each field holding an escape or a
    quote is unescaped and quoted (`"` doubled); `\\N` stays an unquoted NULL."""
    lines = block.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for line in lines:
        fields = line.split(b"\t")
        for i, field in enumerate(fields):
            if field != NULL and (b"\\" in field or b'"' in field):
                fields[i] = b'"' + _unescaped(field).replace(b'"', b'""') + b'"'
        out.append(b"\t".join(fields))
    out.append(b"")
    return b"\n".join(out)


def _is_tz(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) and kind.tz is not None


def parse_tsv(block: bytes, names: Sequence[str], types: Sequence[pa.DataType]) -> pa.Table:
    """Whole TSV lines (each ending with a newline) as a table of these columns and types.

    Raises `pa.ArrowInvalid` on a line with the wrong number of fields or a value its column's
    type cannot hold exactly."""
    quoted = _ESCAPED.search(block) is not None
    if quoted:
        block = _requoted(block)
    # Otherwise a quote is a plain character of its value: no quoting at all.
    parse = pcsv.ParseOptions(
        delimiter="\t",
        quote_char='"' if quoted else False,
        double_quote=True,
        escape_char=False,
        newlines_in_values=quoted,
        ignore_empty_lines=False,  # a row of one empty text value is a row
    )
    # A timestamp with time zone is written as its UTC wall time: parsed as such, then marked
    # as UTC (the same instants, not shifted).
    parsed_types = {
        name: pa.timestamp(kind.unit) if _is_tz(kind) else kind
        for name, kind in zip(names, types, strict=True)
    }
    convert = pcsv.ConvertOptions(
        column_types=parsed_types,
        null_values=[NULL.decode()],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["1"],
        false_values=["0"],
        check_utf8=True,
    )
    # One thread: pyarrow's pool threads each keep an allocator heap of their own, which held
    # on to 60 MB more of a 1,000,000-row copy (bench/files.py), for a parse that is a small
    # part of the time; the source's server formats the next rows meanwhile.
    read = pcsv.ReadOptions(
        column_names=list(names), block_size=max(len(block), 1 << 20), use_threads=False
    )
    table = pcsv.read_csv(
        pa.py_buffer(block), read_options=read, parse_options=parse, convert_options=convert
    )
    for i, kind in enumerate(types):
        if _is_tz(kind):
            # The same numbers, read as UTC: a view of the parsed column (no copy, and no
            # cast, which would load pyarrow.compute's 11 MB for a Parquet file that needs none).
            chunks = [chunk.view(kind) for chunk in table.column(i).chunks]
            table = table.set_column(i, pa.field(names[i], kind), pa.chunked_array(chunks, kind))
    return table
