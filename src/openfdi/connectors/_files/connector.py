"""The file connector's body shared by FILE and FTP (layer: connectors): a task end is a set of
files in one folder (`Store`), read and written in the formats of `formats` and `writer`.

The task's `table` names the data set: a source reads the files matching `pattern` (default
`<table>*.<ext>`), a target writes files named after it. The task end's `message` object holds
the file options (docs/files.md); create and update vet it through the spec's `check_options`.
"""

from __future__ import annotations

import abc
import contextlib
import fnmatch
import functools
import logging
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import pyarrow as pa

from openfdi.connectors._files import formats
from openfdi.connectors._files.options import FileOptions, parse_options
from openfdi.connectors._files.passthrough import Block, CsvFileSlice, CsvSlice, ahead
from openfdi.connectors._files.store import Store
from openfdi.connectors._files.tsv_in import parse_tsv
from openfdi.connectors._files.watermark import DONE, Mark, Watermark, selected
from openfdi.connectors._files.writer import FileWriter
from openfdi.connectors._tsv import CSV, FILE_CSV, TSV, csv_form, file_csv_form, tsv_form
from openfdi.connectors._values import estimate_rows_bytes
from openfdi.connectors.errors import (
    ConnectorError,
    QueryCancelledError,
    SliceRefusedError,
    TableNotFoundError,
    TerminalConnectorError,
    translating,
)
from openfdi.connectors.spi import (
    Batch,
    Connector,
    PassThrough,
    RawSlice,
    ReadPlan,
    TableSchema,
    WriteMode,
    WritePlan,
    WriteResult,
)

__all__ = ["FilesConnector", "check_options"]

log = logging.getLogger(__name__)

TSV_BLOCK_BYTES = 1 << 20
"""TSV text parsed at once by a file target (a PostgreSQL source's chunk): small, so that the
text, its copy and the parser's buffers stay a few MiB."""

SLICE_BLOCKS = 2
"""CSV blocks (4 MiB each) per pass-through slice: a slice, the unit of commit, then moves in
well under a second."""


def check_options(options: Mapping[str, Any]) -> None:
    """The spec's check of a task end's `message` object (no I/O)."""
    parse_options(options)


def _local_error(exc: BaseException) -> ConnectorError | None:
    if isinstance(exc, FileNotFoundError):
        return TableNotFoundError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):
        return TerminalConnectorError(f"{type(exc).__name__}: {exc}")
    return None


class FilesConnector(Connector, PassThrough):
    """A folder of files as a source or a target. A subclass says how to reach the folder.

    A CSV source also passes its rows through to a SQL target as TSV text (`passthrough`)."""

    def __init__(self, content: Mapping[str, Any]) -> None:
        self.content = dict(content)
        self.options = FileOptions()
        self._cancelled = threading.Event()
        self._store: Store | None = None
        self._schemas: dict[str, TableSchema] = {}
        self._writer: FileWriter | None = None

    @abc.abstractmethod
    def open_store(self) -> Store:
        """Reach the folder (confined, connected, logged in)."""

    def errors(self) -> AbstractContextManager[None]:
        """Where driver and OS errors become connector errors (FTP overrides it)."""
        return translating(_local_error)

    def store(self) -> Store:
        self._live()
        if self._store is None:
            self._store = self.open_store()
        return self._store

    def _live(self) -> None:
        if self._cancelled.is_set():
            raise QueryCancelledError("the read or write was cancelled")

    def configure(self, options: Mapping[str, Any] | None) -> None:
        self.options = parse_options(options)

    def check(self) -> None:
        with self.errors():
            self.store().check()

    def list_tables(self) -> list[str]:
        with self.errors():
            return sorted(e.name for e in self.store().entries())

    def describe(self, table: str) -> TableSchema:
        with self._cancellation(), self.errors():
            return self._describe(table)

    def _describe(self, table: str) -> TableSchema:
        if table in self._schemas:
            return self._schemas[table]
        declared = self.options.declared_schema(table)
        if declared is not None:
            schema = declared
        else:
            pattern = self.options.glob(table)
            names = sorted(
                e.name for e in self.store().entries() if fnmatch.fnmatchcase(e.name, pattern)
            )
            if not names:
                raise TableNotFoundError(
                    f"no file matches {pattern!r} to take the columns from (declare `fields` "
                    "for a folder that may be empty)"
                )
            # A file with no bytes has no header: take the columns from one that has some.
            sizes = {e.name: e.size for e in self.store().entries()}
            first = min(names, key=lambda n: (sizes.get(n, 0) == 0, n))
            try:
                with self._about(first), self.store().open_read(first) as handle:
                    schema = formats.describe_file(handle, self.options, table)
            except formats.FileFormatError as exc:
                raise self._in_file(exc, first) from exc
        self._schemas[table] = schema
        return schema

    # --- source ---------------------------------------------------------------------------

    def read(self, plan: ReadPlan) -> Iterator[Batch]:
        with self._cancellation(), self.errors():
            yield from self._read(plan)

    @contextlib.contextmanager
    def _cancellation(self) -> Iterator[None]:
        """After `cancel()`, what a transfer it interrupted raises is the cancellation."""
        try:
            yield
        except ConnectorError as exc:
            if self._cancelled.is_set() and not isinstance(exc, QueryCancelledError):
                raise QueryCancelledError("the read or write was cancelled") from exc
            raise

    def _read(self, plan: ReadPlan) -> Iterator[Batch]:
        schema = self._describe(plan.table)
        names = plan.columns or schema.names
        picked = [schema.names.index(n) for n in names]
        whole = picked == list(range(len(schema.names)))
        order, position, files = self._files(plan)
        incremental = order.column is not None
        for entry, skip in files:
            key, records = order.key(entry), skip
            held: Batch | None = None  # one batch late, so a file's last one marks it done
            try:
                with self._about(entry.name), self.store().open_read(entry.name) as handle:
                    for chunk in formats.read_file(
                        handle, self.options, schema, plan.batch_rows, skip, self._live
                    ):
                        self._live()
                        records += chunk.records
                        rows = (
                            chunk.rows
                            if whole
                            else [tuple(r[i] for i in picked) for r in chunk.rows]
                        )
                        if held is not None:
                            yield held
                        held = Batch(
                            tuple(names),
                            rows,
                            estimate_rows_bytes(rows),
                            Mark(key, records).text() if incremental else None,
                            refused=tuple(chunk.refused),
                        )
            except formats.FileFormatError as exc:
                raise self._in_file(exc, entry.name, records) from exc
            if incremental:
                position = Mark(key, DONE).text()
            if held is not None:
                yield Batch(held.columns, held.rows, held.nbytes, position, refused=held.refused)
            elif incremental:  # an empty file: done all the same
                yield Batch(tuple(names), [], 0, position, refused=())
        # The end of the read, carrying the last position (the target publishes its file).
        yield Batch(tuple(names), [], 0, position, last=True)

    @contextlib.contextmanager
    def _about(self, name: str) -> Iterator[None]:
        """An error reading the file `name` names it: a file removed after the folder was
        listed, a connection lost mid-file. (A broken format names it in `_in_file`.)"""
        try:
            with self.errors():
                yield
        except (formats.FileFormatError, QueryCancelledError):
            raise
        except ConnectorError as exc:
            gone = " (removed after the folder was listed?)" * isinstance(exc, TableNotFoundError)
            exc.message = f"file {name!r}{gone}: {exc.message}"
            exc.args = (exc.message,)
            raise

    def _in_file(
        self, exc: formats.FileFormatError, name: str, records: int | None = None
    ) -> formats.FileFormatError:
        """`exc` naming the file and where its read stood: the run's remark."""
        store = self.store()
        return formats.in_file(
            exc, name, functools.partial(store.open_read, name), self.options, records
        )

    def _files(self, plan: ReadPlan) -> tuple[Watermark, str | None, list[tuple[Any, int]]]:
        order = Watermark(plan.incremental_column)
        mark = order.parse(plan.watermark)
        files = selected(
            self.store().entries(),
            self.options.glob(plan.table),
            order,
            mark,
            self.options.min_age_seconds,
        )
        return order, (mark.text() if mark is not None else None), list(files)

    # --- pass-through (CSV -> TSV text) -----------------------------------------------------

    def passthrough_forms(
        self, table: str, columns: Sequence[str], *, as_target: bool
    ) -> tuple[tuple[str, ...], ...]:
        if as_target:
            return self._target_forms(columns)
        if self.options.format != "csv":
            return ()
        schema = self.describe(table)
        picked = [schema.column(n) for n in columns]
        forms = []
        o = self.options
        # The file's own bytes, when they are the CSV form (every column, in order): the
        # cheapest, nothing converted. Else TSV text made from the parsed blocks.
        plain = (o.delimiter, o.quote, o.null, o.encoding.replace("_", "-").lower()) == (
            ",",
            '"',
            "",
            "utf-8",
        )
        # The file is read twice at once (streamed, and checked by a thread): a local folder.
        if plain and tuple(columns) == schema.names and self.store().reads_concurrently:
            forms.append(csv_form(picked))
        forms.append(tsv_form(picked))
        return tuple(f for f in forms if f is not None)

    def read_raw(self, plan: ReadPlan, form: tuple[str, ...]) -> Generator[RawSlice, None, None]:
        with self._cancellation(), self.errors():
            yield from self._read_raw(plan, form)

    def _read_raw(self, plan: ReadPlan, form: tuple[str, ...]) -> Generator[RawSlice, None, None]:
        schema = self._describe(plan.table)
        names = plan.columns or schema.names
        order, position, files = self._files(plan)
        incremental = order.column is not None
        if form[0] == CSV:  # a slice per file, its bytes as they are
            for entry, skip in files:
                self._live()
                done = Mark(order.key(entry), DONE).text() if incremental else None
                store, name = self.store(), entry.name
                yield CsvFileSlice(
                    functools.partial(store.open_read, name),
                    self.options,
                    schema,
                    form,
                    done,
                    plan.batch_rows,
                    skip,
                    name,
                )
            return
        for entry, skip in files:
            key, records = order.key(entry), skip
            held: CsvSlice | None = None  # one slice late, so a file's last one marks it done
            with (
                self._about(entry.name),
                self.store().open_read(entry.name) as handle,
                contextlib.closing(ahead(formats.csv_blocks(handle, self.options, skip))) as parsed,
            ):
                blocks: list[Block] = []
                # The lambda reads `records` when an error comes: the records read by then.
                named = self._named(parsed, entry.name, lambda: records)  # noqa: B023
                for table, malformed in named:
                    self._live()
                    blocks.append(Block(table, malformed))
                    records += table.num_rows + len(malformed)
                    if len(blocks) < SLICE_BLOCKS:
                        continue
                    if held is not None:
                        yield held
                    at = Mark(key, records).text() if incremental else None
                    held = CsvSlice(blocks, schema, names, form, at, plan.batch_rows)
                    blocks = []
                if blocks:
                    if held is not None:
                        yield held
                    held = CsvSlice(blocks, schema, names, form, None, plan.batch_rows)
            if incremental:
                position = Mark(key, DONE).text()
            if held is not None:
                held.position = position
                yield held

    def _named(
        self, blocks: Iterator[tuple[pa.RecordBatch, list[Any]]], name: str, at: Callable[[], int]
    ) -> Iterator[tuple[pa.RecordBatch, list[Any]]]:
        """`blocks`, a broken file's error naming the file and where (`at`: records read)."""
        try:
            yield from blocks
        except formats.FileFormatError as exc:
            raise self._in_file(exc, name, at()) from exc

    # --- pass-through into files (TSV text -> Arrow tables) --------------------------------

    def _target_forms(self, columns: Sequence[str]) -> tuple[tuple[str, ...], ...]:
        """The TSV form of the target's columns, for CSV and Parquet files in a local folder,
        and for a plain CSV file first the `file-csv` form (lines a source writes as is).

        The file is then published when the connector closes (a pass-through read has no last
        batch to say the run's end): on this host that is a rename that cannot fail for want
        of a network, so files on an FTP server keep the row path, published inside the run."""
        writer = self._writer
        if (
            writer is None
            or writer.arrow_types() is None
            or tuple(columns) != writer.names
            or not self.store().is_local
        ):
            return ()
        forms = [tsv_form(writer.columns)]
        o = self.options
        if o.format == "csv" and o.delimiter == "," and o.max_rows is None and o.max_bytes is None:
            # The file's own lines, as the source wrote them (nothing parsed): only without
            # rotation, which would have to find row ends inside the bytes.
            forms.insert(0, file_csv_form(writer.columns))
        return tuple(f for f in forms if f is not None)

    def write_raw(self, raw: RawSlice, plan: WritePlan, stop: Callable[[], bool]) -> int | None:
        writer = self._writer
        if writer is not None and raw.form[0] == FILE_CSV:
            self._live()
            return self._write_csv_lines(raw, writer, stop)
        types = writer.arrow_types() if writer is not None else None
        if writer is None or types is None or raw.form[0] != TSV:
            raise TerminalConnectorError("a file target takes slices only as TSV or file-csv")
        self._live()
        spool = writer.spool()  # the slice waits on disk: undoable, and no memory held
        block = bytearray()
        try:
            with contextlib.closing(raw.chunks()) as chunks:
                for chunk in chunks:  # each ends at a row's end
                    if stop():
                        spool.close()
                        return None
                    block += chunk
                    if len(block) >= TSV_BLOCK_BYTES:
                        spool.add(parse_tsv(bytes(block), writer.names, types))
                        block.clear()
            if block:
                spool.add(parse_tsv(bytes(block), writer.names, types))
        except pa.ArrowException as exc:
            spool.close()
            raise SliceRefusedError(f"a value does not fit its column: {exc}") from None
        except BaseException:
            spool.close()
            raise
        writer.add_spool(spool)
        rows = spool.rows
        return rows

    @staticmethod
    def _write_csv_lines(raw: RawSlice, writer: FileWriter, stop: Callable[[], bool]) -> int | None:
        """A `file-csv` slice: its lines, unframed, wait in a spool on disk for the commit."""
        spool = writer.line_spool()
        try:
            with contextlib.closing(raw.chunks()) as chunks:
                for chunk in chunks:
                    if stop():
                        spool.close()
                        return None
                    count, _, lines = chunk.partition(b"\n")
                    spool.add(lines, int(count))
        except BaseException:
            spool.close()
            raise
        writer.add_spool(spool)
        return spool.rows

    # --- target ---------------------------------------------------------------------------

    def prepare_target(self, plan: WritePlan) -> TableSchema:
        if plan.write_mode is not WriteMode.INSERT:
            raise TerminalConnectorError(
                f"a file target only adds files: writeMode {plan.write_mode.value} is not "
                "possible (use insert)"
            )
        schema = plan.source_schema
        if schema is None:
            raise TerminalConnectorError("a file target needs the source's columns")
        if self.options.format == "csv" and (
            self.options.quote != '"' or self.options.null or self.options.encoding != "utf-8"
        ):
            raise TerminalConnectorError(
                "a CSV target writes UTF-8 with '\"' quotes and empty NULLs: leave quote, null "
                "and encoding at their defaults"
            )
        if self._writer is None:
            with self.errors():
                store = self.store()
                for name in store.recover():
                    log.warning("published %s: the committed rows of a run that died", name)
            self._writer = FileWriter(
                store,
                self.options,
                plan.table,
                schema.columns,
                publish_each_commit=plan.keeps_committed,
            )
        return schema

    def write(self, batch: Batch, plan: WritePlan) -> WriteResult:
        self._live()
        if self._writer is None:
            self.prepare_target(plan)
        assert self._writer is not None  # prepare_target made it
        written, rejected = self._writer.encode(batch.rows, batch.last)
        return WriteResult(written, rejected)

    def commit(self) -> None:
        self._live()
        if self._writer is not None:
            with self.errors():
                self._writer.commit()

    def rollback(self) -> None:
        if self._writer is not None:
            self._writer.rollback()

    def cancel(self) -> None:
        self._cancelled.set()
        # A transfer waiting on a stalled server would hold the run past its stop deadline
        # (the engine then abandons its thread, still blocked): wake it.
        store = self._store
        if store is not None:
            with contextlib.suppress(Exception):
                store.interrupt()

    def close(self) -> None:
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                with self.errors():
                    writer.close()
        finally:
            store, self._store = self._store, None
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()
