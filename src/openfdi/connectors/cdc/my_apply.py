"""The apply step of a composite task into MySQL/MariaDB: initial copies, then changes applied in
log order (upsert by key, delete by key), with the log position saved in the same target
transaction as the rows (`openfdi_cdc_offsets` in the target's database), as pg_apply.py does
for PostgreSQL.

Values from a MySQL source arrive normalised (my_source.normalise: exact text, bytes); values
from PostgreSQL arrive in PostgreSQL's text form and are turned into what MySQL parses by their
type oid (bytea's hex, booleans, time zones to UTC).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from openfdi.connectors.cdc import my_source, my_values
from openfdi.connectors.cdc.pg_apply import STREAM_KEY, TargetTable
from openfdi.connectors.cdc.pgoutput import UNCHANGED, Change, Relation
from openfdi.connectors.errors import TerminalConnectorError
from openfdi.domain.cdc import TableName

OFFSETS_TABLE = "openfdi_cdc_offsets"
_BOOL, _BYTEA, _TIMESTAMPTZ, _TIMETZ = 16, 17, 1184, 1266


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _table(name: TableName) -> str:
    return f"{_q(name.schema)}.{_q(name.name)}"


def from_pg_text(value: Any, oid: int) -> Any:
    """A value in PostgreSQL's text form as MySQL takes it."""
    if value is None or not isinstance(value, str):
        return value
    if oid == _BYTEA:
        return bytes.fromhex(value[2:]) if value.startswith("\\x") else value.encode()
    if oid == _BOOL:
        return 1 if value == "t" else 0
    if oid == _TIMESTAMPTZ:
        if value in ("infinity", "-infinity"):
            raise TerminalConnectorError(f"a MySQL column cannot hold the timestamp {value}")
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
        return parsed.isoformat(sep=" ")
    return value


def _bits_number(value: Any) -> Any:
    # Bits travel as their binary digits (PostgreSQL's text form); a MySQL BIT column takes
    # a number (the digits as a string would be taken as the string's bytes).
    return int(value, 2) if isinstance(value, str) else value


def target_converter(column_type: str) -> Callable[[Any], Any] | None:
    """What a MySQL target column needs done to the values of either source."""
    kind = column_type.lower().split("(", 1)[0].strip()
    if kind == "bit":
        return _bits_number
    if kind in my_values.GEOMETRY_TYPES:
        return my_values.geometry_stored
    return None


def from_pg_value(value: Any) -> Any:
    """A value psycopg read from PostgreSQL (the snapshot) as MySQL takes it."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, memoryview):
        return bytes(value)
    return value


class MyApplier:
    """One target connection, one open transaction at a time (same surface as PgApplier)."""

    def __init__(self, content: Mapping[str, Any], task_id: str) -> None:
        self.task_id = task_id
        self.database = my_source.database(content)
        self.conn = my_source.connect(content)
        self.conn.autocommit(False)
        self._tables: dict[TableName, TargetTable] = {}
        self._target_converters: dict[
            tuple[TableName, tuple[str, ...]], list[tuple[int, Callable[[Any], Any]]]
        ] = {}
        with self._errors("cannot prepare the target"):
            self._run(
                f"CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (task_id varchar(64) NOT NULL, "
                "source_table varchar(255) NOT NULL, lsn bigint NOT NULL, "
                "PRIMARY KEY (task_id, source_table))"
            )
            self.conn.commit()

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return my_source.mapped_errors(action)

    def _run(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall())

    # --- positions -------------------------------------------------------------------------

    def offsets(self) -> tuple[int | None, dict[str, int]]:
        with self._errors("cannot read the saved positions"):
            rows = self._run(
                f"SELECT source_table, lsn FROM {OFFSETS_TABLE} WHERE task_id = %s",
                (self.task_id,),
            )
            self.conn.commit()
        found = {str(k): int(v) for k, v in rows}
        return found.pop(STREAM_KEY, None), found

    def save_offset(self, source_table: str, lsn: int) -> None:
        with self._errors("cannot save the position"):
            self._run(
                f"INSERT INTO {OFFSETS_TABLE} (task_id, source_table, lsn) VALUES (%s, %s, %s) "
                "ON DUPLICATE KEY UPDATE lsn = VALUES(lsn)",
                (self.task_id, source_table, lsn),
            )

    def forget_offsets(self, keep: Sequence[str] | None = None) -> None:
        with self._errors("cannot reset the saved positions"):
            rows = self._run(
                f"SELECT source_table FROM {OFFSETS_TABLE} WHERE task_id = %s", (self.task_id,)
            )
            for (name,) in rows:
                if keep is None or (name != STREAM_KEY and name not in keep):
                    self._run(
                        f"DELETE FROM {OFFSETS_TABLE} WHERE task_id = %s AND source_table = %s",
                        (self.task_id, name),
                    )
            self.conn.commit()

    # --- tables ----------------------------------------------------------------------------

    def table(self, name: TableName) -> TargetTable:
        if name not in self._tables:
            with self._errors(f"cannot read target table {name}"):
                shape = my_source.table_columns(self.conn, name)
                types = dict(
                    self._run(
                        "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                        (name.schema, name.name),
                    )
                )
                self.conn.commit()
            self._tables[name] = TargetTable(name, {str(k): str(v) for k, v in types.items()},
                                             shape.key)  # fmt: skip
        return self._tables[name]

    def check_columns(self, target: TableName, source_columns: Sequence[str]) -> TargetTable:
        table = self.table(target)
        missing = [c for c in source_columns if c not in table.types]
        if missing:
            raise TerminalConnectorError(
                f"target table {target} has no column {missing[0]!r} of the source table"
            )
        return table

    def add_columns(self, target: TableName, columns: Sequence[tuple[str, str]]) -> None:
        """A MySQL target does not take PostgreSQL's type names: the run stops, naming them."""
        names = ", ".join(c for c, _ in columns)
        raise TerminalConnectorError(
            f"the source gained columns {names} that MySQL target table {target} lacks: add "
            "them to the target, then start the task again"
        )

    def type_name(self, oid: int, typmod: int) -> str:
        return ""

    def copy_table(
        self,
        source: Any,
        source_table: TableName,
        target: TableName,
        columns: Sequence[str],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Replace the target's rows by a PostgreSQL table's, read under the slot's snapshot."""
        cols = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        src = f'"{source_table.schema}"."{source_table.name}"'

        def chunks() -> Iterable[list[tuple[Any, ...]]]:
            with source.cursor(name="openfdi_cdc_copy") as cur:
                cur.execute(f"SELECT {cols} FROM {src}")
                while rows := cur.fetchmany(5_000):
                    yield [tuple(from_pg_value(v) for v in row) for row in rows]

        return self.copy_rows(target, columns, chunks(), progress=progress)

    def copy_rows(
        self,
        target: TableName,
        columns: Sequence[str],
        chunks: Iterable[Sequence[Sequence[Any]]],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Replace the target table's rows by `chunks` of rows (in the open transaction);
        `progress` hears the rows written so far after each chunk (it may raise, to end it)."""
        table = self.check_columns(target, columns)
        converted = self._converters(table, columns)
        if converted:
            chunks = (self._convert_rows(chunk, converted) for chunk in chunks)
        statement = (
            f"INSERT INTO {_table(target)} ({', '.join(map(_q, columns))}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )
        count = 0
        with self._errors(f"cannot copy into {target}"), self.conn.cursor() as cur:
            cur.execute(f"DELETE FROM {_table(target)}")
            for chunk in chunks:
                cur.executemany(statement, chunk)
                count += len(chunk)
                if progress is not None:
                    progress(count)
        return count

    def _converters(
        self, table: TargetTable, columns: Sequence[str]
    ) -> list[tuple[int, Callable[[Any], Any]]]:
        """(index, converter) of the columns whose values the target column needs converted."""
        key = (table.name, tuple(columns))
        found = self._target_converters.get(key)
        if found is None:
            found = self._target_converters[key] = [
                (i, f)
                for i, c in enumerate(columns)
                if (f := target_converter(table.types.get(c, ""))) is not None
            ]
        return found

    @staticmethod
    def _convert_rows(
        rows: Sequence[Sequence[Any]], converted: list[tuple[int, Callable[[Any], Any]]]
    ) -> list[list[Any]]:
        out = [list(r) for r in rows]
        for row in out:
            for i, convert in converted:
                row[i] = convert(row[i])
        return out

    # --- changes ---------------------------------------------------------------------------

    def apply(self, changes: Sequence[tuple[Change, Relation, TableName]]) -> None:
        """Apply changes in order (in the open transaction); runs of the same upsert go
        through one multi-row INSERT."""
        pending_sql: str | None = None
        pending: list[list[Any]] = []
        with self._errors("the target refused a change"), self.conn.cursor() as cur:
            for change, relation, target in changes:
                statement, params = self._statement(change, relation, target)
                if statement != pending_sql and pending:
                    assert pending_sql is not None
                    cur.executemany(pending_sql, pending)
                    pending = []
                pending_sql = statement
                if statement.startswith("INSERT"):
                    pending.append(params)
                else:
                    if pending:
                        cur.executemany(pending_sql, pending)
                        pending = []
                    cur.execute(statement, params)
            if pending and pending_sql is not None:
                cur.executemany(pending_sql, pending)

    def _values(self, relation: Relation, row: Sequence[Any], table: TargetTable) -> list[Any]:
        if not relation.type_oids:  # a MySQL source: converted already (my_values)
            values = list(row)
        else:
            values = [from_pg_text(v, oid) for v, oid in zip(row, relation.type_oids, strict=True)]
        for i, convert in self._converters(table, relation.columns):
            if values[i] is not UNCHANGED:
                values[i] = convert(values[i])
        return values

    def _statement(
        self, change: Change, relation: Relation, target: TableName
    ) -> tuple[str, list[Any]]:
        table = self.table(target)
        cols = relation.columns
        key_cols = table.key or relation.key
        where = " AND ".join(f"{_q(c)} = %s" for c in key_cols)
        if change.kind == "TRUNCATE":
            return f"DELETE FROM {_table(target)}", []
        if change.kind == "DELETE":
            old = self._values(relation, change.old or (), table)
            return f"DELETE FROM {_table(target)} WHERE {where}", [
                old[cols.index(c)] for c in key_cols
            ]
        new = self._values(relation, change.new or (), table)
        sent = [c for c, v in zip(cols, change.new or (), strict=True) if v is not UNCHANGED]
        values = [v for v, raw in zip(new, change.new or (), strict=True) if raw is not UNCHANGED]
        if change.kind == "UPDATE" and (change.old is not None or len(sent) < len(cols)):
            old = self._values(relation, change.old or change.new or (), table)
            assignments = ", ".join(f"{_q(c)} = %s" for c in sent)
            return f"UPDATE {_table(target)} SET {assignments} WHERE {where}", [
                *values,
                *(old[cols.index(c)] for c in key_cols),
            ]
        others = [c for c in cols if c not in key_cols] or list(key_cols[:1])
        updates = ", ".join(f"{_q(c)} = VALUES({_q(c)})" for c in others)
        return (
            f"INSERT INTO {_table(target)} ({', '.join(map(_q, cols))}) "
            f"VALUES ({', '.join(['%s'] * len(cols))}) ON DUPLICATE KEY UPDATE {updates}",
            values,
        )

    def truncate(self, target: TableName) -> None:
        with self._errors(f"cannot truncate {target}"), self.conn.cursor() as cur:
            cur.execute(f"DELETE FROM {_table(target)}")

    # --- transaction -----------------------------------------------------------------------

    def commit(self) -> None:
        with self._errors("the target commit failed"):
            self.conn.commit()

    def rollback(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.rollback()

    def cancel(self) -> None:
        """Break a statement that hangs: closing the socket makes it fail at once."""
        with contextlib.suppress(Exception):
            self.conn._sock.shutdown(2)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def forget_task(content: Mapping[str, Any], task_id: str) -> None:
    """Delete a deleted task's saved positions from its MySQL target."""
    conn = my_source.connect(content)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME = %s",
                (OFFSETS_TABLE,),
            )
            if cur.fetchone() is not None:
                cur.execute(f"DELETE FROM {OFFSETS_TABLE} WHERE task_id = %s", (task_id,))
    finally:
        conn.close()
