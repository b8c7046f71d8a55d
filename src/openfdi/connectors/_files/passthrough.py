"""CSV files into a SQL target without decoding rows in Python (layer: connectors): the text
pass-through form of `connectors._tsv`.

pyarrow parses the CSV a block at a time (C++, every column as text); each column is checked
by a vectorised cast to its logical type (so the target parses exactly the values the row path
would write: a decimal with too many digits, a bad date, ... refuses the slice, which the engine
then writes row by row, its bad rows as dirty data), put in the one text spelling every dialect
reads (booleans 0/1, timestamps with time zone as UTC wall time), escaped, and the columns are
joined into TSV lines, all with Arrow compute kernels. Blocks are converted one ahead, in a
thread (the kernels release the GIL), while the target sends the previous one.
"""

from __future__ import annotations

import concurrent.futures
import math
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TypeVar

import pyarrow as pa

from openfdi.connectors._files.formats import (
    FileFormatError,
    csv_blocks,
    in_file,
    read_file,
    rows_of,
)
from openfdi.connectors._files.options import FileOptions
from openfdi.connectors._files.types import arrow_type
from openfdi.connectors._json_text import finite_double
from openfdi.connectors._values import estimate_rows_bytes
from openfdi.connectors.errors import SliceRefusedError
from openfdi.connectors.spi import Batch, Column, LogicalType, RawSlice, RejectedRow, TableSchema

__all__ = ["Block", "CsvFileSlice", "CsvSlice", "ahead", "check_column", "tsv_lines"]

T = TypeVar("T")
_END = object()

NULL = "\\N"
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


@dataclass(slots=True)
class Block:
    """One parsed block of a CSV file (every column text) and the malformed lines it skipped."""

    table: pa.RecordBatch
    malformed: list[RejectedRow]


def ahead(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """`items`, produced by a thread up to `depth` ahead of the consumer: pyarrow parses the
    next CSV blocks (without the GIL) while the target is still loading the previous slice.
    An exception in the producer is raised in the consumer; closing the consumer stops it."""
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    closed = threading.Event()

    def offer(item: object) -> bool:
        while not closed.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            offer(exc)

    thread = threading.Thread(target=produce, name="openfdi-csv-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        closed.set()
        thread.join()  # a producer waiting on a full queue sees `closed` within 0.1 s


def _escaped(text: pa.Array) -> pa.Array:
    import pyarrow.compute as pc  # here, not at the top: see `check_column`

    data = text.buffers()[2]
    # memchr over the column's bytes (GB/s) before a kernel pass per character (most text has
    # none of them); bytes outside a sliced array can only cause a needless pass.
    raw = b"" if data is None else data.to_pybytes()
    for plain, escaped in _ESCAPES:
        if raw.find(plain.encode()) >= 0:
            text = pc.replace_substring(text, plain, escaped)
    return text


def check_column(text: pa.Array, column: Column) -> pa.Array | None:
    """Raise ArrowInvalid when a value of this text column is not of its type, in the strict
    spelling the row path reads (an offset on a timestamp without time zone, `on` for a
    boolean, a decimal with too many digits are refused); the typed values, None for text."""
    # pyarrow.compute is imported where a kernel runs: its ~300 function wrappers cost 11 MB
    # of the server's memory (bench/files.py), which a Parquet or JSON lines end never uses.
    import pyarrow.compute as pc

    if column.type in (LogicalType.TEXT, LogicalType.VARCHAR):
        if column.length is not None:
            longest = pc.max(pc.utf8_length(text)).as_py()
            if longest is not None and longest > column.length:
                raise pa.ArrowInvalid(f"a value of {column.name} is over {column.length} long")
        return None
    typed = text.cast(arrow_type(column))
    if column.type in (LogicalType.DOUBLE, LogicalType.FLOAT):
        infinite = pc.is_inf(typed)
        if pc.any(infinite).as_py():  # `1e400` cast to Infinity: the row path refuses it
            for value in pc.filter(text, infinite).to_pylist():
                try:
                    finite_double(value, math.inf)
                except ValueError as exc:
                    raise pa.ArrowInvalid(f"column {column.name}: {exc}") from exc
    return typed


def _column_text(text: pa.Array, column: Column) -> pa.Array:
    """One column in the TSV form's spelling; raises ArrowInvalid on a value of the wrong type."""
    import pyarrow.compute as pc  # here, not at the top: see `check_column`

    kind = column.type
    typed = check_column(text, column)
    if typed is None:
        return _escaped(text)
    if kind is LogicalType.BOOLEAN:
        return typed.cast(pa.int8()).cast(pa.string())
    if kind is LogicalType.TIMESTAMPTZ:
        return typed.cast(pa.timestamp("us")).cast(pa.string())  # its UTC wall time
    if kind in (LogicalType.TIMESTAMP, LogicalType.DATE):
        return typed.cast(pa.string())  # one spelling: `YYYY-MM-DD[ HH:MM:SS.ffffff]`
    return pc.utf8_trim_whitespace(text)  # numbers: the digits as written, checked above


def tsv_lines(block: pa.RecordBatch, columns: Sequence[Column]) -> bytes:
    """The block's rows (these columns) as TSV lines, NULL as `\\N`."""
    import pyarrow.compute as pc  # here, not at the top: see `check_column`

    if block.num_rows == 0:
        return b""
    texts = [
        pc.fill_null(_column_text(block.column(block.schema.get_field_index(c.name)), c), NULL)
        for c in columns
    ]
    # Each line ends with its newline, so the lines are the string array's bytes, end to end.
    texts[-1] = pc.binary_join_element_wise(texts[-1], pa.scalar("\n"), "")
    rows = texts[0] if len(texts) == 1 else pc.binary_join_element_wise(*texts, "\t")
    offsets = memoryview(rows.buffers()[1]).cast("B").cast("i")  # int32 value offsets
    start, end = offsets[rows.offset], offsets[rows.offset + len(rows)]
    return bytes(rows.buffers()[2][start:end].to_pybytes())


class CsvSlice(RawSlice):
    """Some blocks of one CSV file, as TSV lines (`chunks`) or as typed rows (`batches`)."""

    def __init__(
        self,
        blocks: list[Block],
        schema: TableSchema,
        columns: Sequence[str],
        form: tuple[str, ...],
        position: object,
        batch_rows: int,
    ) -> None:
        self._blocks = blocks
        self._schema = schema
        self._columns = tuple(columns)
        self._picked = [schema.column(n) for n in columns]
        self._batch_rows = batch_rows
        self.form = form
        self.position = position
        self.nbytes = 0

    def chunks(self) -> Generator[bytes, None, None]:
        if any(b.malformed for b in self._blocks):
            raise SliceRefusedError("malformed CSV lines: reading the slice row by row")
        with concurrent.futures.ThreadPoolExecutor(1, "openfdi-tsv") as pool:
            pending = [pool.submit(tsv_lines, b.table, self._picked) for b in self._blocks[:1]]
            for i in range(len(self._blocks)):
                if i + 1 < len(self._blocks):  # the next block converts while this one is sent
                    pending.append(pool.submit(tsv_lines, self._blocks[i + 1].table, self._picked))
                try:
                    chunk = pending[i].result()
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SliceRefusedError(f"a value does not fit its column: {exc}") from None
                self.nbytes += len(chunk)
                yield chunk

    def batches(self) -> Generator[Batch, None, None]:
        picked = TableSchema(self._schema.name, tuple(self._picked))
        for block in self._blocks:
            for start in range(0, max(block.table.num_rows, 1), self._batch_rows):
                chunk = rows_of(block.table.slice(start, self._batch_rows), picked, text=True)
                refused = [*block.malformed, *chunk.refused] if start == 0 else chunk.refused
                yield Batch(
                    self._columns,
                    chunk.rows,
                    estimate_rows_bytes(chunk.rows),
                    refused=tuple(refused),
                )


CHUNK = 1 << 20
_BOM = b"\xef\xbb\xbf"


def _after_header(data: bytes) -> int | None:
    """Where the first CSV record of `data` ends (after its line break), quotes respected; None
    when it does not end inside `data`."""
    quoted = False
    for i, byte in enumerate(data):
        if byte == 0x22:  # "
            quoted = not quoted
        elif byte == 0x0A and not quoted:  # \n
            return i + 1
    return None


class CsvFileSlice(RawSlice):
    """A whole CSV file, its bytes streamed as they are (the `text-csv` form) while a thread
    parses the same file with pyarrow and checks every value against its column's type; any
    value that does not fit, or a malformed line, refuses the slice before the target commits
    it, and `batches()` reads the file row by row instead (bad rows then become dirty rows)."""

    def __init__(
        self,
        open_file: Callable[[], IO[bytes]],
        options: FileOptions,
        schema: TableSchema,
        form: tuple[str, ...],
        position: object,
        batch_rows: int,
        skip: int,
        name: str = "",
    ) -> None:
        self._open = open_file
        self._name = name
        self._options = options
        self._schema = schema
        self._batch_rows = batch_rows
        self._skip = skip
        self.form = form
        self.position = position
        self.nbytes = 0

    def _check(self, problem: list[str], done: threading.Event) -> None:
        try:
            with self._open() as handle:
                # One core: the check only has to keep ahead of the target's own parsing, and
                # the target (a database on this host, often) needs the others.
                for block, malformed in csv_blocks(handle, self._options, threads=False):
                    if done.is_set():
                        return
                    if malformed:
                        problem.append(f"malformed CSV line: {malformed[0].reason}")
                        return
                    for column in self._schema.columns:
                        check_column(
                            block.column(block.schema.get_field_index(column.name)), column
                        )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            problem.append(f"a value does not fit its column: {exc}")
        except Exception as exc:  # reading failed: the row path will say why
            problem.append(f"{type(exc).__name__}: {exc}")

    def chunks(self) -> Generator[bytes, None, None]:
        if self._skip:
            raise SliceRefusedError("resuming inside a file: reading it row by row")
        problem: list[str] = []
        done = threading.Event()
        checker = threading.Thread(
            target=self._check, args=(problem, done), name="openfdi-csv-check", daemon=True
        )
        checker.start()
        try:
            with self._open() as handle:
                data = handle.read(CHUNK)
                if data.startswith(_BOM):
                    data = data[len(_BOM) :]
                while self._options.header:  # the header line is not a row
                    end = _after_header(data)
                    if end is not None:
                        data = data[end:]
                        break
                    more = handle.read(CHUNK)
                    if not more:
                        return
                    data += more
                while data:
                    if problem:
                        raise SliceRefusedError(problem[0])
                    self.nbytes += len(data)
                    yield data
                    data = handle.read(CHUNK)
            checker.join()
            if problem:  # raised before the target ends its COPY: nothing of the file stays
                raise SliceRefusedError(problem[0])
        finally:
            done.set()

    def batches(self) -> Generator[Batch, None, None]:
        records = self._skip
        try:
            with self._open() as handle:
                for chunk in read_file(
                    handle, self._options, self._schema, self._batch_rows, self._skip
                ):
                    records += chunk.records
                    yield Batch(
                        self._schema.names,
                        chunk.rows,
                        estimate_rows_bytes(chunk.rows),
                        refused=tuple(chunk.refused),
                    )
        except FileFormatError as exc:
            raise in_file(exc, self._name, self._open, self._options, records) from exc
