"""Writing rows into files (layer: connectors): CSV and Parquet through pyarrow, JSON lines with
exact decimals, each file under a hidden temp name until it is complete and then published by
an atomic rename, so no reader ever sees half a file.

A batch is encoded when it is written (so rows that cannot be encoded are refused at once, with
the reason) but reaches the file only at `commit`, made durable there. A file is published when
the run's last batch is committed, when it reaches `max_rows` / `max_bytes`, or when the
connector is closed with committed rows in it (a stopped run): one file per run by default.
Whatever was not committed is dropped.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import pyarrow.parquet as pq

from openfdi.connectors._files.options import FileOptions
from openfdi.connectors._files.store import Store, temp_name
from openfdi.connectors._files.types import arrow_type
from openfdi.connectors._messages import _to_json
from openfdi.connectors._rejects import write_isolating_rejects
from openfdi.connectors._values import format_interval
from openfdi.connectors.spi import Column, LogicalType, RejectedRow, Row

__all__ = ["FileWriter", "LineSpool", "Spool", "csv_lines"]


def _csv_type(column: Column) -> pa.DataType:
    """CSV holds text: the types pyarrow's CSV writer cannot render travel as their text."""
    if column.type in (LogicalType.BINARY, LogicalType.INTERVAL):
        return pa.string()
    return arrow_type(column)


def _csv_value(column: Column) -> Any:
    if column.type is LogicalType.BINARY:
        return lambda v: None if v is None else bytes(v).hex()
    if column.type is LogicalType.INTERVAL:
        return lambda v: None if v is None else format_interval(v)
    return _decimal_text(column)


class _Codec(abc.ABC):
    """How rows become one format's bytes: `encode` a batch (raises on a value its column
    cannot hold), then `open` a file and `write` encoded batches into it."""

    def __init__(self, columns: Sequence[Column], options: FileOptions) -> None:
        self.columns = tuple(columns)
        self.options = options

    @abc.abstractmethod
    def encode(self, rows: list[Row]) -> Any: ...

    @abc.abstractmethod
    def open(self, handle: IO[bytes]) -> _Sink: ...

    def rows_of(self, encoded: Any) -> int:
        return int(encoded.num_rows)

    def slice(self, encoded: Any, start: int, length: int) -> Any:
        return encoded.slice(start, length)


class _Sink(abc.ABC):
    @abc.abstractmethod
    def write(self, encoded: Any) -> None: ...

    def finish(self) -> None:
        return None

    def held_bytes(self) -> int:
        """Bytes written but still held in memory (not yet in the file)."""
        return 0


class _ArrowSink(_Sink):
    def __init__(self, writer: pq.ParquetWriter) -> None:
        self._writer = writer

    def write(self, encoded: pa.Table) -> None:
        self._writer.write_table(encoded)

    def finish(self) -> None:
        self._writer.close()


def _csv_field(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A column as pyarrow's CSV writer spells it (its cast to text; text quoted, `"` doubled),
    NULL as nothing. A timestamp in UTC is cast without its zone and given its `Z`: the same
    text, ten times faster than the cast of a zoned timestamp (which looks the zone up for
    every value; a third of a CSV's encoding time in bench/files.py)."""
    # Imported here: pyarrow.compute's function wrappers cost the server 11 MB (bench/files.py)
    # that a Parquet or JSON lines file never needs.
    import pyarrow.compute as pc

    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if _holds_quote(values):
            values = pc.replace_substring(values, '"', '""')
        text = pc.binary_join_element_wise('"', values, '"', "")
    elif pa.types.is_timestamp(kind) and kind.tz == "UTC":
        naive = values.cast(pa.timestamp(kind.unit)).cast(pa.string())
        text = pc.binary_join_element_wise(naive, "Z", "")
    else:
        text = values.cast(pa.string())
    return pc.fill_null(text, "") if text.null_count else text


def _holds_quote(values: pa.Array | pa.ChunkedArray) -> bool:
    """Whether a text column may hold a `"`: memchr over its bytes (GB/s), before a kernel pass
    (bytes outside a sliced array can only cause a needless pass)."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    for chunk in chunks:
        data = chunk.buffers()[2]
        if data is not None and memoryview(data).tobytes().find(b'"') >= 0:
            return True
    return False


def csv_lines(table: pa.Table, delimiter: str) -> bytes:
    """The table's rows as pyarrow's `CSVWriter` writes them (byte for byte, without the
    header), built with Arrow kernels: one line per row, each ending with a newline."""
    import pyarrow.compute as pc  # here, not at the top: see `_csv_field`

    if table.num_rows == 0:
        return b""
    texts = [_csv_field(column) for column in table.columns]
    texts[-1] = pc.binary_join_element_wise(texts[-1], "\n", "")
    rows = texts[0] if len(texts) == 1 else pc.binary_join_element_wise(*texts, delimiter)
    out: list[bytes] = []
    for chunk in rows.chunks if isinstance(rows, pa.ChunkedArray) else [rows]:
        # The lines are the string array's bytes, end to end (int32 value offsets).
        offsets = memoryview(chunk.buffers()[1]).cast("B").cast("i")
        start, end = offsets[chunk.offset], offsets[chunk.offset + len(chunk)]
        out.append(memoryview(chunk.buffers()[2])[start:end].tobytes())
    return b"".join(out)


class _CsvSink(_Sink):
    """CSV as pyarrow's CSV writer writes it (quoted header, text quoted, NULL empty), built
    by `csv_lines`."""

    def __init__(self, handle: IO[bytes], names: Sequence[str], options: FileOptions) -> None:
        self._handle = handle
        self._delimiter = options.delimiter
        if options.header:
            quoted = ('"' + name.replace('"', '""') + '"' for name in names)
            handle.write((self._delimiter.join(quoted) + "\n").encode("utf-8"))

    def write(self, encoded: pa.Table) -> None:
        self._handle.write(csv_lines(encoded, self._delimiter))


class _RowGroupSink(_ArrowSink):
    """Parquet: committed batches (a few thousand rows each) are gathered into row groups of
    about ROW_GROUP_ROWS rows, as readers of Parquet expect, and written when one is full or the
    file ends. Holding them costs no safety: a Parquet file is only readable once complete (its
    footer is written last), so nothing of it can be recovered before that anyway."""

    ROW_GROUP_ROWS = 16384
    """Rows per row group: the Parquet writer's memory grows with the group (a 1,000,000-row
    copy of bench/files.py peaked near 200 MB with 5,000-row groups, 240 MB with 32 Ki, 300 MB
    with 128 Ki): 16 Ki rows is three times fewer groups for little memory."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        super().__init__(writer)
        self._held: list[pa.Table] = []
        self._rows = 0

    def write(self, encoded: pa.Table) -> None:
        self._held.append(encoded)
        self._rows += encoded.num_rows
        if self._rows >= self.ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._held:
            group = pa.concat_tables(self._held)  # chunked: no copy; one row group all the same
            self._held, self._rows = [], 0
            self._writer.write_table(group, row_group_size=group.num_rows)

    def held_bytes(self) -> int:
        return sum(t.nbytes for t in self._held)

    def finish(self) -> None:
        self._flush()
        super().finish()


class _ArrowCodec(_Codec):
    def types(self) -> list[pa.DataType]:
        return [arrow_type(c) for c in self.columns]

    def fixes(self) -> list[Any]:
        return [_decimal_text(c) for c in self.columns]

    def encode(self, rows: list[Row]) -> pa.Table:
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in self.columns]
        arrays = [
            pa.array(list(map(fix, values)) if fix else values, type=kind)
            for values, kind, fix in zip(columns, self.types(), self.fixes(), strict=True)
        ]
        return pa.Table.from_arrays(arrays, names=[c.name for c in self.columns])


def _decimal_text(column: Column) -> Any:
    if column.type is LogicalType.DECIMAL and arrow_type(column) == pa.string():
        return lambda v: None if v is None else str(v)  # unbounded: every digit, as text
    return None


class _CsvCodec(_ArrowCodec):
    def types(self) -> list[pa.DataType]:
        return [_csv_type(c) for c in self.columns]

    def fixes(self) -> list[Any]:
        return [_csv_value(c) for c in self.columns]

    def open(self, handle: IO[bytes]) -> _Sink:
        return _CsvSink(handle, [c.name for c in self.columns], self.options)


class _ParquetCodec(_ArrowCodec):
    def open(self, handle: IO[bytes]) -> _Sink:
        schema = pa.schema(
            [pa.field(c.name, t) for c, t in zip(self.columns, self.types(), strict=True)]
        )
        compression = None if self.options.compression == "none" else self.options.compression
        # Imported here: pyarrow.parquet loads 14 MB of libraries a CSV or JSON end never uses.
        import pyarrow.parquet as pq

        return _RowGroupSink(pq.ParquetWriter(handle, schema, compression=compression))


class _JsonlSink(_Sink):
    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle

    def write(self, encoded: list[bytes]) -> None:
        self._handle.write(b"".join(encoded))


class _JsonlCodec(_Codec):
    """One JSON object per line: decimals as strings (exact), times ISO-8601, binary as hex."""

    def encode(self, rows: list[Row]) -> list[bytes]:
        names = [c.name for c in self.columns]
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        return [
            (dumps(dict(zip(names, map(_to_json, row), strict=True))) + "\n").encode("utf-8")
            for row in rows
        ]

    def open(self, handle: IO[bytes]) -> _Sink:
        return _JsonlSink(handle)

    def rows_of(self, encoded: Any) -> int:
        return len(encoded)

    def slice(self, encoded: Any, start: int, length: int) -> Any:
        return encoded[start : start + length]


_CODECS: dict[str, type[_Codec]] = {
    "csv": _CsvCodec,
    "parquet": _ParquetCodec,
    "jsonl": _JsonlCodec,
}


class Spool:
    """A pass-through slice's tables on their way to the file: on disk (Arrow IPC in an
    anonymous scratch file of the store) until the slice is committed, then written one table
    at a time. A slice may hold hundreds of thousands of rows and must stay undoable until its
    commit (a refused or stopped slice leaves nothing); on disk it costs no memory."""

    def __init__(self, handle: IO[bytes], schema: pa.Schema) -> None:
        self._handle = handle
        self._schema = schema
        self._writer: pa.ipc.RecordBatchStreamWriter | None = pa.ipc.new_stream(handle, schema)
        self.rows = 0

    def add(self, table: pa.Table) -> int:
        if self._writer is None:
            raise ValueError("the spool was read or closed")
        self._writer.write_table(table)
        self.rows += table.num_rows
        return int(table.num_rows)

    def tables(self) -> Iterator[pa.Table]:
        """The tables, in order (once; the spool is closed after)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._handle.seek(0)
        try:
            with pa.ipc.open_stream(self._handle) as reader:
                for batch in reader:
                    yield pa.Table.from_batches([batch], schema=self._schema)
        finally:
            self._handle.close()

    def close(self) -> None:
        self._writer = None
        self._handle.close()


class LineSpool:
    """A `file-csv` pass-through slice: CSV lines as the row path writes them, on disk (an
    anonymous scratch file) until the slice is committed, then appended to the file."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.rows = 0

    def add(self, lines: bytes, rows: int) -> None:
        self._handle.write(lines)
        self.rows += rows

    def copy_into(self, target: IO[bytes]) -> None:
        """Append the lines to `target` (once; the spool is closed after)."""
        try:
            self._handle.seek(0)
            shutil.copyfileobj(self._handle, target, 1 << 20)
        finally:
            self._handle.close()

    def close(self) -> None:
        self._handle.close()


class _Part:
    """One file being written under its temp name."""

    def __init__(self, store: Store, final: str, codec: _Codec) -> None:
        self.final = final
        self.temp = temp_name(final)
        self.handle = store.open_write(self.temp)
        self.sink = codec.open(self.handle)
        self.rows = 0

    def size(self) -> int:
        return int(self.handle.tell()) + self.sink.held_bytes()


class FileWriter:
    """The files one run writes for one target table."""

    def __init__(
        self,
        store: Store,
        options: FileOptions,
        table: str,
        columns: Sequence[Column],
        *,
        publish_each_commit: bool = False,
    ) -> None:
        self._store = store
        self._publish_each_commit = publish_each_commit
        """The run resumes past its commits (`WritePlan.keeps_committed`): a file that could
        not be recovered after a crash is published at each commit, not at the run's end."""
        self._options = options
        self._table = table
        self._columns = tuple(columns)
        self._codec = _CODECS[options.format](columns, options)
        self._started = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self._parts = 0
        self._part: _Part | None = None
        self._pending: list[Any] = []
        self._ends = False
        self._released = 0.0
        self.published: list[str] = []

    def encode(self, rows: list[Row], last: bool) -> tuple[int, list[RejectedRow]]:
        """Encode a batch (kept until `commit`); rows that cannot be encoded come back refused."""
        encoded: list[Any] = []

        def attempt(some: list[Row]) -> None:
            encoded.append(self._codec.encode(some))

        def row_error(exc: Exception) -> str | None:
            if isinstance(exc, pa.ArrowException | ValueError | TypeError | OverflowError):
                return f"cannot be written as {self._options.format}: {exc}"
            return None

        written, bad = write_isolating_rejects(rows, attempt, row_error)
        self._pending.extend(e for e in encoded if self._codec.rows_of(e))
        self._ends = self._ends or last
        return written, [RejectedRow(rows[i], reason) for i, reason in bad]

    @property
    def columns(self) -> tuple[Column, ...]:
        return self._columns

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self._columns)

    def arrow_types(self) -> list[pa.DataType] | None:
        """The Arrow types of the columns as this format's rows are built (a `spool`
        takes tables of them); None for JSON lines, encoded row by row."""
        return self._codec.types() if isinstance(self._codec, _ArrowCodec) else None

    @staticmethod
    def _drop(items: list[Any]) -> None:
        for item in items:
            if isinstance(item, Spool | LineSpool):
                item.close()

    def spool(self) -> Spool:
        """A spool for tables already in `arrow_types`, added with `add_spool` once complete."""
        types = self.arrow_types()
        if types is None:
            raise TypeError("JSON lines are encoded row by row")
        schema = pa.schema([pa.field(n, t) for n, t in zip(self.names, types, strict=True)])
        return Spool(self._store.scratch(), schema)

    def line_spool(self) -> LineSpool:
        """A spool for CSV lines (the `file-csv` form), added with `add_spool` once complete."""
        o = self._options
        if not isinstance(self._codec, _CsvCodec) or o.max_rows is not None or o.max_bytes:
            raise TypeError("CSV lines go only into CSV files without a row limit")
        return LineSpool(self._store.scratch())

    def add_spool(self, spool: Spool | LineSpool) -> None:
        """Write the spool's tables at the next `commit` (dropped, like `encode`'s, by
        `rollback`)."""
        self._pending.append(spool)

    def _name(self) -> str:
        self._parts += 1
        return self._options.name.format(
            table=self._table,
            time=self._started,
            part=f"{self._parts:04d}",
            uid=uuid.uuid4().hex[:12],
            ext=self._options.extension,
        )

    def _open(self) -> _Part:
        if self._part is None:
            self._part = _Part(self._store, self._name(), self._codec)
        return self._part

    def _full(self, part: _Part) -> bool:
        o = self._options
        return (o.max_rows is not None and part.rows >= o.max_rows) or (
            o.max_bytes is not None and part.size() >= o.max_bytes
        )

    def _encoded(self, pending: list[Any]) -> Iterator[Any]:
        for item in pending:
            if isinstance(item, Spool):
                yield from item.tables()
            else:
                yield item

    def commit(self) -> None:
        """Append what was encoded since the last commit, durably; publish a file that is
        complete (the run's end, or a size limit)."""
        pending, self._pending = self._pending, []
        for encoded in self._encoded(pending):
            if isinstance(encoded, LineSpool):  # no row limit: no rows to count inside it
                part = self._open()
                encoded.copy_into(part.handle)
                part.rows += encoded.rows
                continue
            rows, start = self._codec.rows_of(encoded), 0
            while start < rows:
                part = self._open()
                room = rows - start
                if self._options.max_rows is not None:
                    room = min(room, self._options.max_rows - part.rows)
                part.sink.write(self._codec.slice(encoded, start, room))
                part.rows += room
                start += room
                if self._full(part):
                    self._publish()
        current = self._part
        recoverable = False
        if current is not None:
            self._store.sync(current.handle)
            if current.rows and self._options.format != "parquet":
                # CSV and JSON lines can be cut at a commit: after a crash, `recover` publishes
                # the committed rows (a Parquet file needs its footer: it cannot; nor can a
                # store that keeps the name, a server's folder).
                marked = self._store.mark_committed(current.temp, current.size())
                recoverable, current.temp = marked != current.temp, marked
        if self._ends or (
            self._publish_each_commit and current is not None and current.rows and not recoverable
        ):
            # A run that resumes past this commit would otherwise lose its rows in a crash:
            # its checkpoint moves on while the file stays unfinished.
            self._publish()
        # What the batch's tables held goes back now, at most once a second (with malloc,
        # see `_files/__init__.py`, this is a heap trim, which walks the heap).
        now = time.monotonic()
        if now - self._released >= 1.0:
            self._released = now
            pa.default_memory_pool().release_unused()

    def rollback(self) -> None:
        self._drop(self._pending)
        self._pending.clear()
        self._ends = False

    def _publish(self) -> None:
        part, self._part = self._part, None
        if part is None:
            return
        if part.rows == 0:
            part.handle.close()
            self._store.remove(part.temp)
            return
        part.sink.finish()
        self._store.sync(part.handle)
        part.handle.close()
        self._store.publish(part.temp, part.final)
        self.published.append(part.final)

    def close(self) -> None:
        """Drop what was not committed; publish the committed rows of an unfinished file."""
        self.rollback()
        self._publish()

    def abandon(self) -> None:
        """Remove the file being written (after a failure that leaves it unusable)."""
        part, self._part = self._part, None
        if part is not None:
            part.handle.close()
            self._store.remove(part.temp)
