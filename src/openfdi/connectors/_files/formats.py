"""Reading CSV, JSON lines and Parquet files as typed rows, a bounded batch at a time (layer:
connectors).

CSV is split and unquoted by pyarrow's streaming reader (C++, a block at a time), every column
as text; each column is then converted to its logical type at once, vectorised, and only a
column whose conversion fails is converted value by value, so that the rows holding a bad value
become dirty rows (with the reason) instead of failing the run. Parquet carries its own types.
JSON lines are parsed line by line with exact decimals; a line that does not parse is one dirty
row. Each chunk says how many records of the file it consumed, which is how a read resumes in
the middle of a file.
"""

from __future__ import annotations

import decimal
import io
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pcsv

from openfdi.connectors._files.options import FileOptions
from openfdi.connectors._files.types import arrow_type, guess_column, table_schema
from openfdi.connectors._messages import _convert as convert_value
from openfdi.connectors._values import as_utc
from openfdi.connectors.errors import TerminalConnectorError
from openfdi.connectors.spi import Column, LogicalType, RejectedRow, Row, TableSchema

__all__ = ["Chunk", "csv_blocks", "describe_file", "read_file", "rows_of"]

GUESS_ROWS = 1000
"""Rows looked at to guess column types (CSV and JSON lines without declared fields)."""
CSV_BLOCK = 4 << 20
"""Bytes pyarrow parses at once: big enough to parse in parallel, small enough to stream."""
RAW_LIMIT = 4096


@dataclass(slots=True)
class Chunk:
    rows: list[Row]
    refused: list[RejectedRow] = field(default_factory=list)
    records: int = 0
    """Records of the file this chunk consumed (rows and refused ones)."""


# --- CSV ----------------------------------------------------------------------------------------


def _csv_reader(
    handle: IO[bytes],
    options: FileOptions,
    text_columns: Sequence[str] = (),
    on_invalid: Callable[[Any], str] | None = None,
    threads: bool = True,
) -> pcsv.CSVStreamingReader:
    """pyarrow's streaming reader over the file, the columns named in `text_columns` as text."""
    declared = options.fields is not None
    read = pcsv.ReadOptions(
        use_threads=threads,
        block_size=CSV_BLOCK,
        encoding=options.encoding,
        column_names=[c.name for c in options.fields or ()] if declared else None,
        skip_rows=1 if options.header and declared else 0,
        autogenerate_column_names=not options.header and not declared,
    )
    parse = pcsv.ParseOptions(
        delimiter=options.delimiter,
        quote_char=options.quote,
        newlines_in_values=True,
        invalid_row_handler=on_invalid,
    )
    convert = pcsv.ConvertOptions(
        column_types={n: pa.string() for n in text_columns},
        null_values=[options.null],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    return pcsv.open_csv(handle, read_options=read, parse_options=parse, convert_options=convert)


def _skip(_row: Any) -> str:
    return "skip"


def _collect(into: list[RejectedRow]) -> Callable[[Any], str]:
    """An invalid-row handler keeping each malformed line (cut to 4 KiB) as a dirty row."""

    def on_invalid(row: Any) -> str:
        text = str(getattr(row, "text", ""))[:RAW_LIMIT]
        reason = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        into.append(RejectedRow((text,), reason))
        return "skip"

    return on_invalid


def _csv_names(handle: IO[bytes], options: FileOptions) -> list[str]:
    """The file's column names (declared, from its header, or f0, f1, ...); rewinds it."""
    if options.fields is not None:
        return [c.name for c in options.fields]
    names: list[str] = _csv_reader(handle, options, on_invalid=_skip).schema.names
    handle.seek(0)
    return names


def _csv_schema(handle: IO[bytes], options: FileOptions, table: str) -> TableSchema:
    declared = options.declared_schema(table)
    if declared is not None:
        return declared
    names = _csv_names(handle, options)
    # Its first block, as text; malformed lines are left to the read (dirty rows).
    batch = next(iter(_csv_reader(handle, options, names, _skip)), None)
    columns = [
        guess_column(name, [] if batch is None else batch.column(name)[:GUESS_ROWS].to_pylist())
        for name in names
    ]
    return TableSchema(table, tuple(columns))


def _converted(array: pa.Array, column: Column, bad: dict[int, str]) -> list[Any]:
    """One text column as Python values of its logical type; rows that fail go into `bad`."""
    kind = column.type
    if kind in (LogicalType.TEXT, LogicalType.VARCHAR, LogicalType.JSON):
        return array.to_pylist()  # type: ignore[no-any-return]
    if not (kind is LogicalType.DECIMAL and column.precision is None) and kind not in (
        LogicalType.BINARY,
        LogicalType.INTERVAL,
    ):
        try:
            return _python(array.cast(arrow_type(column)), column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # some value does not convert: find which, one by one
    values: list[Any] = []
    for i, text in enumerate(array.to_pylist()):
        try:
            values.append(convert_value(text, kind))
        except (ValueError, ArithmeticError, TypeError) as exc:
            bad.setdefault(i, f"column {column.name}: {text!r} is not a {kind.value} ({exc})")
            values.append(None)
    return values


def _python(array: pa.Array | pa.ChunkedArray, column: Column) -> list[Any]:
    values: list[Any] = array.to_pylist()
    if column.type is LogicalType.TIMESTAMPTZ:
        return [None if v is None else as_utc(v) for v in values]
    return values


def rows_of(batch: pa.RecordBatch, schema: TableSchema, text: bool) -> Chunk:
    bad: dict[int, str] = {}
    columns: list[list[Any]] = []
    for column in schema.columns:
        index = batch.schema.get_field_index(column.name)
        if index < 0:
            raise TerminalConnectorError(f"a file has no column {column.name!r}")
        array = batch.column(index)
        if text:
            columns.append(_converted(array, column, bad))
        else:
            if array.type != arrow_type(column) and column.type is not LogicalType.TEXT:
                array = array.cast(arrow_type(column))
            columns.append(_python(array, column))
    rows: list[Row] = list(zip(*columns, strict=True)) if columns else []
    if not bad:
        return Chunk(rows, [], len(rows))
    raw = [batch.column(i).to_pylist() for i in range(batch.num_columns)] if text else None
    refused = [
        RejectedRow(tuple(col[i] for col in raw) if raw else rows[i], reason)
        for i, reason in sorted(bad.items())
    ]
    kept = [row for i, row in enumerate(rows) if i not in bad]
    return Chunk(kept, refused, len(rows))


class _Paced(io.RawIOBase):
    """The file as pyarrow's streaming reader sees it, read at most `LEAD_BLOCKS` blocks ahead of
    the blocks taken from the reader. Without this its I/O thread reads ahead as fast as the
    disk or network allows and holds what it read: a slow consumer (the row path, a busy
    target) would have most of a large file in memory."""

    LEAD_BLOCKS = 3
    WAIT_S = 1.0
    """At most this long per read: a record longer than the lead must still be readable."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._done = 0
        self._allowed = self.LEAD_BLOCKS * CSV_BLOCK
        self._moved = threading.Condition()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        with self._moved:
            self._moved.wait_for(lambda: self._done < self._allowed, timeout=self.WAIT_S)
        data = self._raw.read(size)
        self._done += len(data)
        return data

    def took_block(self) -> None:
        with self._moved:
            self._allowed += CSV_BLOCK
            self._moved.notify_all()

    def release(self) -> None:
        """Let a reader that is being abandoned finish without waiting."""
        with self._moved:
            self._allowed = 1 << 62
            self._moved.notify_all()


def _blocks(
    handle: IO[bytes],
    options: FileOptions,
    names: Sequence[str],
    on_invalid: Callable[[Any], str],
    threads: bool = True,
) -> Iterator[pa.RecordBatch]:
    """The CSV file's blocks (these columns as text), read a few blocks ahead only."""
    paced = _Paced(handle)
    try:
        reader = _csv_reader(paced, options, names, on_invalid, threads)  # type: ignore[arg-type]
        for block in reader:
            paced.took_block()
            yield block
    finally:
        paced.release()


def _read_csv(
    handle: IO[bytes], options: FileOptions, schema: TableSchema, batch_rows: int
) -> Iterator[Chunk]:
    invalid: list[RejectedRow] = []
    for block in _blocks(handle, options, _csv_names(handle, options), _collect(invalid)):
        for start in range(0, max(block.num_rows, 1), batch_rows):
            part = block.slice(start, batch_rows)
            chunk = rows_of(part, schema, text=True)
            if invalid:
                chunk.refused[:0] = invalid
                chunk.records += len(invalid)
                invalid.clear()
            yield chunk
    if invalid:
        yield Chunk([], list(invalid), len(invalid))


def csv_blocks(
    handle: IO[bytes], options: FileOptions, skip: int = 0, *, threads: bool = True
) -> Iterator[tuple[pa.RecordBatch, list[RejectedRow]]]:
    """The CSV file's blocks, every column as text, each with the malformed lines skipped in
    it; the first `skip` records left out (the pass-through's read). `threads`: let pyarrow
    parse on several cores."""
    invalid: list[RejectedRow] = []
    try:
        names = _csv_names(handle, options)
        for block in _blocks(handle, options, names, _collect(invalid), threads):
            malformed, invalid[:] = list(invalid), []
            if skip:
                dropped = min(skip, len(malformed))
                malformed, skip = malformed[dropped:], skip - dropped
                rows = min(skip, block.num_rows)
                block, skip = block.slice(rows), skip - rows
            if block.num_rows or malformed:
                yield block, malformed
        if invalid:
            names = names or _csv_names(handle, options)
            empty = pa.RecordBatch.from_pylist(
                [], schema=pa.schema([(n, pa.string()) for n in names])
            )
            yield empty, list(invalid)
    except (pa.ArrowException, UnicodeDecodeError) as exc:
        raise TerminalConnectorError(f"cannot read the file: {exc}") from exc


# --- Parquet -----------------------------------------------------------------------------------


def _read_parquet(handle: IO[bytes], schema: TableSchema, batch_rows: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq  # here: 14 MB of libraries a CSV or JSON end never needs

    parquet = pq.ParquetFile(handle)
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(schema.names)):
        yield rows_of(batch, schema, text=False)


# --- JSON lines -------------------------------------------------------------------------------

_JSON = json.JSONDecoder(parse_float=decimal.Decimal)


def _lines(handle: IO[bytes], encoding: str) -> Iterator[str]:
    yield from io.TextIOWrapper(handle, encoding=encoding, newline=None)


def _guess_json(name: str, values: list[Any]) -> Column:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return Column(name, LogicalType.BOOLEAN, native_type="boolean")
    if present and all(isinstance(v, dict | list) for v in present):
        return Column(name, LogicalType.JSON, native_type="json")
    if any(isinstance(v, bool | dict | list) for v in present):
        return Column(name, LogicalType.TEXT, native_type="text")
    return guess_column(name, [str(v) for v in present])


def _jsonl_schema(handle: IO[bytes], options: FileOptions, table: str) -> TableSchema:
    declared = options.declared_schema(table)
    if declared is not None:
        return declared
    seen: dict[str, list[Any]] = {}
    for n, line in enumerate(_lines(handle, options.encoding)):
        if n >= GUESS_ROWS:
            break
        if not line.strip():
            continue
        try:
            doc = _JSON.decode(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            for key, value in doc.items():
                seen.setdefault(key, []).append(value)
    return TableSchema(table, tuple(_guess_json(k, v) for k, v in seen.items()))


def _read_jsonl(
    handle: IO[bytes], options: FileOptions, schema: TableSchema, batch_rows: int
) -> Iterator[Chunk]:
    chunk = Chunk([])
    columns = schema.columns
    for line in _lines(handle, options.encoding):
        if not line.strip():
            continue
        chunk.records += 1
        try:
            doc = _JSON.decode(line)
            if not isinstance(doc, dict):
                raise ValueError("a line is not a JSON object")
            chunk.rows.append(tuple(convert_value(doc.get(c.name), c.type) for c in columns))
        except (ValueError, ArithmeticError, TypeError) as exc:
            chunk.refused.append(RejectedRow((line[:RAW_LIMIT].rstrip("\n"),), str(exc)))
        if chunk.records >= batch_rows:
            yield chunk
            chunk = Chunk([])
    if chunk.records:
        yield chunk


# --- dispatch ----------------------------------------------------------------------------------


def describe_file(handle: IO[bytes], options: FileOptions, table: str) -> TableSchema:
    """The columns of a file: declared, from its header and first rows, or its Parquet schema."""
    try:
        if options.format == "parquet":
            import pyarrow.parquet as pq

            return table_schema(table, pq.ParquetFile(handle).schema_arrow)
        if options.format == "jsonl":
            return _jsonl_schema(handle, options, table)
        return _csv_schema(handle, options, table)
    except (pa.ArrowException, UnicodeDecodeError) as exc:
        raise TerminalConnectorError(f"cannot read the file's columns: {exc}") from exc


def read_file(
    handle: IO[bytes],
    options: FileOptions,
    schema: TableSchema,
    batch_rows: int,
    skip: int = 0,
) -> Iterator[Chunk]:
    """The file's records as chunks of typed rows, the first `skip` records left out."""
    if options.format == "parquet":
        chunks = _read_parquet(handle, schema, batch_rows)
    elif options.format == "jsonl":
        chunks = _read_jsonl(handle, options, schema, batch_rows)
    else:
        chunks = _read_csv(handle, options, schema, batch_rows)
    try:
        for chunk in chunks:
            if skip >= chunk.records:
                skip -= chunk.records
                continue
            if skip:
                drop_refused = min(skip, len(chunk.refused))
                chunk.refused = chunk.refused[drop_refused:]
                chunk.rows = chunk.rows[skip - drop_refused :]
                chunk.records -= skip
                skip = 0
            yield chunk
    except (pa.ArrowException, UnicodeDecodeError) as exc:
        raise TerminalConnectorError(f"cannot read the file: {exc}") from exc
