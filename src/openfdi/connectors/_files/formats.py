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

import codecs
import decimal
import io
import json
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pcsv

from openfdi.connectors._files.options import FileOptions
from openfdi.connectors._files.types import arrow_type, guess_column, table_schema
from openfdi.connectors._json_text import finite_double, lone_surrogate, printable
from openfdi.connectors._messages import _convert as convert_value
from openfdi.connectors._values import as_utc
from openfdi.connectors.errors import TerminalConnectorError
from openfdi.connectors.spi import Column, LogicalType, RejectedRow, Row, TableSchema

__all__ = [
    "Chunk",
    "FileFormatError",
    "csv_blocks",
    "describe_file",
    "read_file",
    "rows_of",
    "where_broken",
]

GUESS_ROWS = 1000
"""Rows looked at to guess column types (CSV and JSON lines without declared fields)."""
CSV_BLOCK = 4 << 20
"""Bytes pyarrow parses at once: big enough to parse in parallel, small enough to stream."""
RAW_LIMIT = 4096
_DOUBLES = (LogicalType.DOUBLE, LogicalType.FLOAT)
MAX_LINE = 16 << 20
"""Characters of one JSON line read at most: a longer line is refused without being held (a
file of one endless line, or one still being written, must not take the server's memory)."""


class FileFormatError(TerminalConnectorError):
    """A file that cannot be read on: its format is broken, not one of its records. The message
    says what of the file ("cannot be read: ..."); the file end puts the file's name before it
    and where the read stood after it (`where_broken`)."""


def in_file(
    exc: FileFormatError,
    name: str,
    open_file: Callable[[], IO[bytes]],
    options: FileOptions,
    records: int | None = None,
) -> FileFormatError:
    """`exc` naming the file, and where in it: the line of the first byte that does not
    decode (the file read once more), else how many records were read before."""
    where: str | None = None
    if options.format != "parquet" and ("UTF8" in exc.message or "decode" in exc.message):
        try:
            with open_file() as handle:
                where = where_broken(handle, options.encoding)
        except Exception:  # only a better message was at stake
            where = None
    if where is None and records is not None:
        where = f"after record {records}" if records else "at its first record"
    return FileFormatError(f"file {name!r} {exc.message}" + (f" ({where})" if where else ""))


def where_broken(handle: IO[bytes], encoding: str) -> str | None:
    """Where the file first holds bytes `encoding` cannot decode ("line 3: byte 0xff is not
    utf-8 text"), or None: pyarrow says only that a block had some. Read 1 MiB at a time."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 1
    while chunk := handle.read(1 << 20):
        data = decoder.getstate()[0] + chunk  # what the decoder sees: exc.start is inside it
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            lines += data.count(b"\n", 0, exc.start)
            return f"line {lines}: byte 0x{data[exc.start]:02x} is not {encoding} text"
        lines += chunk.count(b"\n")
    return None


def _reason(exc: BaseException) -> str:
    """pyarrow's words for a broken file, in the user's."""
    text = str(exc)
    if "straddling object" in text:
        return (
            f"a CSV record longer than {CSV_BLOCK >> 20} MiB (a quote that is never closed, "
            "or a line without its end)"
        )
    if "Empty CSV file" in text:
        return "it is empty, without a header to take the columns from (declare message.fields)"
    return text


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


def _empty(handle: IO[bytes]) -> bool:
    """Whether the file has no bytes at all (pyarrow refuses to read one: it holds no rows);
    rewinds it."""
    first = handle.read(1)
    handle.seek(0)
    return not first


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
    _named_columns(names, "header")
    # Its first block, as text; malformed lines are left to the read (dirty rows).
    batch = next(iter(_csv_reader(handle, options, names, _skip)), None)
    columns = [
        guess_column(name, [] if batch is None else batch.column(name)[:GUESS_ROWS].to_pylist())
        for name in names
    ]
    return TableSchema(table, tuple(columns))


def _named_columns(names: Sequence[str], where: str) -> None:
    """Refuse column names a file gives that no table can have: a name twice (pyarrow failed on
    it: "internal error: Field "id" exists 2 times in schema"), a lone surrogate (the target's
    encoder failed: "internal error: 'utf-8' codec can't encode"), an empty one."""
    seen: set[str] = set()
    for name in names:
        if lone_surrogate([name]) is not None:
            shown = printable(name)
            raise FileFormatError(
                f"gives no columns: the column name {shown!r} in its {where} is not text"
            )
        if not name.strip():
            raise FileFormatError(f"gives no columns: a column name in its {where} is empty")
        if name in seen:
            raise FileFormatError(
                f"gives no columns: the column name {name!r} comes twice in its {where}"
            )
        seen.add(name)


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
            typed = _python(array.cast(arrow_type(column)), column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # some value does not convert: find which, one by one
        else:
            if kind in _DOUBLES and any(map(math.isinf, filter(None, typed))):
                _refuse_overflow(typed, array, column, bad)
            return typed
    values: list[Any] = []
    for i, text in enumerate(array.to_pylist()):
        try:
            values.append(_checked_value(text, kind))
        except (ValueError, ArithmeticError, TypeError) as exc:
            bad.setdefault(i, f"column {column.name}: {text!r} is not a {kind.value} ({exc})")
            values.append(None)
    return values


def _refuse_overflow(
    values: list[Any], texts: pa.Array, column: Column, bad: dict[int, str]
) -> None:
    """pyarrow casts `1e400` to Infinity: such a row goes into `bad` (`inf` written as such
    stays)."""
    for i, value in enumerate(values):
        if value is not None and math.isinf(value):
            text = texts[i].as_py()
            try:
                finite_double(text, value)
            except ValueError as exc:
                bad.setdefault(i, f"column {column.name}: {exc}")
                values[i] = None


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
            raise FileFormatError(f"has no column {column.name!r}")
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
        held: pa.RecordBatch | None = None  # one block late: the last one is checked first
        for block in reader:
            paced.took_block()
            if held is not None:
                yield held
            held = block
        if held is not None:
            if _quote_left_open(handle, options, held):
                raise FileFormatError(
                    "cannot be read: its last record opens a quote that is never closed (the "
                    "rest of the file would be one value)"
                )
            yield held
    finally:
        paced.release()


def _quote_left_open(handle: IO[bytes], options: FileOptions, last: pa.RecordBatch) -> bool:
    """Whether the file ends inside a quoted value. pyarrow takes such a value to the end of
    the file without a word (`1,"abc` then `2,d`: one row, its note "abc\n2,d\n", the second
    row gone). Unclosed in the last column, the last row's last value is then exactly the
    file's tail, right after a quote; in another column the row is short, a dirty row already.
    (A value holding a doubled quote escapes this check.)"""
    if not last.num_rows or not last.num_columns:
        return False
    value = last.column(last.num_columns - 1)[last.num_rows - 1].as_py()
    if not isinstance(value, str) or not value:
        return False
    try:
        tail = (options.quote + value).encode(options.encoding)
    except UnicodeEncodeError:
        return False
    handle.seek(0, io.SEEK_END)
    end = handle.tell()  # not seek's answer: paramiko's SFTP files answer None
    if end < len(tail):
        return False
    handle.seek(end - len(tail))
    return handle.read(len(tail)) == tail


def _read_csv(
    handle: IO[bytes], options: FileOptions, schema: TableSchema, batch_rows: int
) -> Iterator[Chunk]:
    if _empty(handle):
        return
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
        if _empty(handle):
            return
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
        raise FileFormatError(f"cannot be read: {_reason(exc)}") from exc


# --- Parquet -----------------------------------------------------------------------------------


def _read_parquet(handle: IO[bytes], schema: TableSchema, batch_rows: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq  # here: 14 MB of libraries a CSV or JSON end never needs

    parquet = pq.ParquetFile(handle)
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(schema.names)):
        yield rows_of(batch, schema, text=False)


# --- JSON lines -------------------------------------------------------------------------------

_JSON = json.JSONDecoder(parse_float=decimal.Decimal)


def _no_check() -> None:
    return None


def _lines(
    handle: IO[bytes], encoding: str, live: Callable[[], None] = _no_check
) -> Iterator[tuple[int, str, str | None]]:
    """The file's lines as (number from 1, text, why it is refused or None). A byte the
    encoding cannot decode, and a line longer than `MAX_LINE` (skipped to its end without
    being held, its start kept), refuse that line only. `live` is called often (raising to
    stop): a line of gigabytes, or millions of blank lines, yield nothing for a long time."""
    text = io.TextIOWrapper(handle, encoding=encoding, errors="surrogateescape", newline=None)
    number = 0
    while line := text.readline(MAX_LINE):
        number += 1
        if not number & 0xFFFF:
            live()
        if len(line) == MAX_LINE and not line.endswith("\n"):
            while (rest := text.readline(MAX_LINE)) and not rest.endswith("\n"):
                live()
            yield number, line[:RAW_LIMIT], f"longer than {MAX_LINE >> 20} Mi characters"
            continue
        if not line.isascii():
            try:
                line.encode("utf-8")  # surrogateescape put a byte that did not decode there
            except UnicodeEncodeError as exc:
                byte = ord(line[exc.start]) - 0xDC00
                why = f"byte 0x{byte:02x} at character {exc.start} is not {encoding} text"
                yield number, line, why
                continue
        yield number, line, None


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
    for n, line, refused in _lines(handle, options.encoding):
        if n > GUESS_ROWS:
            break
        if refused is not None or not line.strip():
            continue
        try:
            doc = _JSON.decode(line)
        except (ValueError, RecursionError):  # the read refuses it, naming the line
            continue
        if isinstance(doc, dict):
            for key, value in doc.items():
                seen.setdefault(key, []).append(value)
    _named_columns(list(seen), "keys")
    return TableSchema(table, tuple(_guess_json(k, v) for k, v in seen.items()))


def _checked_value(value: Any, kind: LogicalType) -> Any:
    """A JSON or CSV value as `kind`'s Python type; a number too large for a double refused."""
    converted = convert_value(value, kind)
    return finite_double(value, converted) if kind in _DOUBLES and value is not None else converted


def _read_jsonl(
    handle: IO[bytes],
    options: FileOptions,
    schema: TableSchema,
    batch_rows: int,
    live: Callable[[], None] = _no_check,
) -> Iterator[Chunk]:
    chunk = Chunk([])
    columns = schema.columns
    for number, line, refused in _lines(handle, options.encoding, live):
        if not line.strip():
            continue
        chunk.records += 1
        try:
            if refused is not None:
                raise ValueError(refused)
            doc = _JSON.decode(line)
            if not isinstance(doc, dict):
                raise ValueError("a line is not a JSON object")
            row = tuple(_checked_value(doc.get(c.name), c.type) for c in columns)
            if (lone := lone_surrogate(row)) is not None:  # a "\ud800" escape: no target takes it
                raise ValueError(f"field {columns[lone[0]].name}: {lone[1]}")
            chunk.rows.append(row)
        except (ValueError, ArithmeticError, TypeError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            text = printable(line[:RAW_LIMIT].rstrip("\n"))
            chunk.refused.append(RejectedRow((text,), printable(f"line {number}: {why}")))
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
        raise FileFormatError(f"gives no columns: {_reason(exc)}") from exc


def read_file(
    handle: IO[bytes],
    options: FileOptions,
    schema: TableSchema,
    batch_rows: int,
    skip: int = 0,
    live: Callable[[], None] = _no_check,
) -> Iterator[Chunk]:
    """The file's records as chunks of typed rows, the first `skip` records left out; `live`
    raises to stop a read that yields nothing for long (JSON lines)."""
    if options.format == "parquet":
        chunks = _read_parquet(handle, schema, batch_rows)
    elif options.format == "jsonl":
        chunks = _read_jsonl(handle, options, schema, batch_rows, live)
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
        raise FileFormatError(f"cannot be read: {_reason(exc)}") from exc
