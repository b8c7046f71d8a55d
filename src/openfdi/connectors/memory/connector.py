"""Tables in this process's memory, behind the SPI (see the package docstring).

Writes are buffered per connector and applied under the store's lock at `commit()`, so readers
never see half a batch. Reads take a copy of the committed rows, so a writer never races them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from openfdi.connectors._sqlbase import coerce_watermark
from openfdi.connectors.memory.errors import (
    InvalidContentError,
    QueryCancelledError,
    TableNotFoundError,
)
from openfdi.connectors.spi import (
    Batch,
    Connector,
    ReadPlan,
    Row,
    TableSchema,
    WriteMode,
    WritePlan,
    WriteResult,
)

__all__ = ["MemoryConnector", "Store", "store"]


@dataclass
class _Table:
    schema: TableSchema
    rows: list[Row] = field(default_factory=list)


@dataclass
class Store:
    """One named set of tables."""

    tables: dict[str, _Table] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, schema: TableSchema, rows: list[Row] | None = None) -> None:
        """Create (or replace) a table holding `rows` (test set-up)."""
        with self.lock:
            self.tables[schema.name] = _Table(schema, list(rows or []))

    def rows(self, table: str) -> list[Row]:
        """The committed rows of `table`, in order."""
        with self.lock:
            return list(self.tables[table].rows)


_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def store(name: str) -> Store:
    """The store called `name`, made on first use."""
    with _STORES_LOCK:
        return _STORES.setdefault(name, Store())


def drop_store(name: str) -> None:
    with _STORES_LOCK:
        _STORES.pop(name, None)


def _sortable(value: Any) -> tuple[bool, Any]:
    return (value is not None, value)


class MemoryConnector(Connector):
    def __init__(self, content: Mapping[str, Any]) -> None:
        name = content.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidContentError("datasource content is missing 'name'", field="name")
        self._store = store(name)
        self._pending: list[tuple[WritePlan, Batch | None]] = []
        self._cancelled = threading.Event()

    def _live(self) -> None:
        if self._cancelled.is_set():
            raise QueryCancelledError("the connector was cancelled")

    def check(self) -> None:
        self._live()

    def list_tables(self) -> list[str]:
        self._live()
        with self._store.lock:
            return sorted(self._store.tables)

    def describe(self, table: str) -> TableSchema:
        self._live()
        with self._store.lock:
            found = self._store.tables.get(table)
        if found is None:
            raise TableNotFoundError(f"table {table!r} does not exist")
        return found.schema

    def read(self, plan: ReadPlan) -> Iterator[Batch]:
        schema = self.describe(plan.table)
        names = plan.columns or schema.names
        index = [schema.names.index(n) for n in names]
        rows = self._store.rows(plan.table)
        if plan.incremental_column is not None:
            at = schema.names.index(plan.incremental_column)
            column = schema.column(plan.incremental_column)
            mark = None if plan.watermark is None else coerce_watermark(plan.watermark, column)
            rows = sorted(
                (r for r in rows if r[at] is not None and (mark is None or r[at] > mark)),
                key=lambda r: _sortable(r[at]),
            )
        out: list[Row] = []
        for i, row in enumerate(rows):
            self._live()
            out.append(tuple(row[j] for j in index))
            next_same = (
                plan.incremental_column is not None
                and i + 1 < len(rows)
                and rows[i + 1][at] == row[at]
            )
            if len(out) >= plan.batch_rows and not next_same:
                position = row[at] if plan.incremental_column is not None else None
                yield Batch.of(names, out, position)
                out = []
        position = rows[-1][at] if rows and plan.incremental_column is not None else None
        batch = Batch.of(names, out, position)
        yield Batch(batch.columns, batch.rows, batch.nbytes, position, last=True)

    def prepare_target(self, plan: WritePlan) -> TableSchema:
        self._live()
        with self._store.lock:
            found = self._store.tables.get(plan.table)
            if found is None:
                if not plan.create_table or plan.source_schema is None:
                    raise TableNotFoundError(f"table {plan.table!r} does not exist")
                found = self._store.tables[plan.table] = _Table(plan.source_schema)
        if plan.write_mode is WriteMode.TRUNCATE_INSERT:
            self._pending.append((plan, None))
        return found.schema

    def write(self, batch: Batch, plan: WritePlan) -> WriteResult:
        self._live()
        self._pending.append((plan, batch))
        return WriteResult(len(batch.rows))

    def commit(self) -> None:
        self._live()
        pending, self._pending = self._pending, []
        with self._store.lock:
            for plan, batch in pending:
                table = self._store.tables[plan.table]
                if batch is None:
                    table.rows.clear()
                    continue
                self._apply(table, plan, batch)

    @staticmethod
    def _apply(table: _Table, plan: WritePlan, batch: Batch) -> None:
        names = table.schema.names
        given = plan.columns or batch.columns
        at = [given.index(n) if n in given else -1 for n in names]
        full = [tuple(row[i] if i >= 0 else None for i in at) for row in batch.rows]
        if plan.write_mode is not WriteMode.UPSERT:
            table.rows.extend(full)
            return
        keys = [names.index(k) for k in plan.key_columns]
        where = {tuple(r[k] for k in keys): n for n, r in enumerate(table.rows)}
        for row in full:
            key = tuple(row[k] for k in keys)
            if key in where:
                table.rows[where[key]] = row
            else:
                where[key] = len(table.rows)
                table.rows.append(row)

    def rollback(self) -> None:
        self._pending.clear()

    def cancel(self) -> None:
        self._cancelled.set()

    def close(self) -> None:
        self._pending.clear()
