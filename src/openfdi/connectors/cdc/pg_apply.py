"""The apply step of a composite task into PostgreSQL: initial copies, then changes applied in
log order, with the log position saved in the same target transaction as the rows.

The position lives in the target (`openfdi_cdc_offsets`), not only in openfdi's metadata: a
transaction of the source is applied and its end LSN recorded atomically, so after any stop or
kill -9 the next run skips exactly what was applied, and nothing is applied twice or lost.
Values travel as PostgreSQL's own text form and are cast to the target column's type, so
numeric, timestamptz, json and bytea arrive exactly as they left.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from openfdi.connectors.cdc.pg_source import connect
from openfdi.connectors.cdc.pgoutput import UNCHANGED, Change, Relation
from openfdi.connectors.errors import TerminalConnectorError, TransientConnectorError
from openfdi.connectors.postgres.connector import CHUNK_BYTES, copy_messages
from openfdi.connectors.postgres.errors import CREATED_CONCURRENTLY
from openfdi.domain.cdc import TableName

OFFSETS_TABLE = "openfdi_cdc_offsets"
STREAM_KEY = ""
"""The offsets row of the stream itself; other rows are each table's snapshot position."""


@dataclass(frozen=True, slots=True)
class TargetTable:
    name: TableName
    types: dict[str, str]
    """Column name -> its type as format_type() prints it."""
    key: tuple[str, ...]


class PgApplier:
    """One target connection, one open transaction at a time."""

    def __init__(self, content: Mapping[str, Any], task_id: str) -> None:
        self.task_id = task_id
        self.conn = connect(content, autocommit=False)
        self._tables: dict[TableName, TargetTable] = {}
        self._statements: dict[tuple[Any, ...], sql.Composed] = {}
        with self._errors("cannot prepare the target"):
            try:
                self.conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (task_id text NOT NULL, "
                    "source_table text NOT NULL, lsn bigint NOT NULL, "
                    "PRIMARY KEY (task_id, source_table))"
                )
                self.conn.commit()
            except CREATED_CONCURRENTLY:
                self.conn.rollback()  # another task's run made it at the same moment

    @contextlib.contextmanager
    def _errors(self, action: str) -> Any:
        try:
            yield
        except psycopg.OperationalError as exc:
            raise TransientConnectorError(f"{action}: {exc}") from exc
        except psycopg.Error as exc:
            raise TerminalConnectorError(f"{action}: {exc}") from exc

    # --- positions -------------------------------------------------------------------------

    def offsets(self) -> tuple[int | None, dict[str, int]]:
        """(the stream's applied position, each snapshotted table's snapshot position)."""
        with self._errors("cannot read the saved positions"):
            rows = self.conn.execute(
                f"SELECT source_table, lsn FROM {OFFSETS_TABLE} WHERE task_id = %s",
                (self.task_id,),
            ).fetchall()
            self.conn.commit()
        found = dict(rows)
        return found.pop(STREAM_KEY, None), found

    def save_offset(self, source_table: str, lsn: int) -> None:
        """In the open transaction: committed with the rows it covers."""
        self.conn.execute(
            f"INSERT INTO {OFFSETS_TABLE} (task_id, source_table, lsn) VALUES (%s, %s, %s) "
            "ON CONFLICT (task_id, source_table) DO UPDATE SET lsn = EXCLUDED.lsn",
            (self.task_id, source_table, lsn),
        )

    def forget_offsets(self, keep: Sequence[str] | None = None) -> None:
        """Drop saved positions (all, or of tables not in `keep`), committed at once."""
        with self._errors("cannot reset the saved positions"):
            if keep is None:
                self.conn.execute(
                    f"DELETE FROM {OFFSETS_TABLE} WHERE task_id = %s", (self.task_id,)
                )
            else:
                self.conn.execute(
                    f"DELETE FROM {OFFSETS_TABLE} WHERE task_id = %s AND source_table <> %s "
                    "AND NOT (source_table = ANY(%s))",
                    (self.task_id, STREAM_KEY, list(keep)),
                )
            self.conn.commit()

    # --- tables ----------------------------------------------------------------------------

    def table(self, name: TableName) -> TargetTable:
        if name not in self._tables:
            with self._errors(f"cannot read target table {name}"):
                rows = self.conn.execute(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
                    "coalesce(a.attnum = ANY(i.indkey), false) "
                    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
                    "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 "
                    "AND NOT a.attisdropped ORDER BY a.attnum",
                    (name.schema, name.name),
                ).fetchall()
                self.conn.commit()
            if not rows:
                raise TerminalConnectorError(
                    f"target table {name} does not exist: create it with the source's columns"
                )
            key = tuple(r[0] for r in rows if r[2])
            self._tables[name] = TargetTable(name, {r[0]: r[1] for r in rows}, key)
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
        """Add (name, type) columns to a target table, in the open transaction: a column the
        source gained is added where the target lacks it, before the changes that fill it."""
        with self._errors(f"cannot add columns to target table {target}"):
            for name, type_text in columns:
                self.conn.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                        sql.Identifier(target.schema, target.name),
                        sql.Identifier(name),
                        sql.SQL(type_text),
                    )
                )
        self._tables.pop(target, None)

    def type_name(self, oid: int, typmod: int) -> str:
        """A built-in type (the same oid on every server) by its name, as format_type() says."""
        with self._errors("cannot name a column's type"):
            row = self.conn.execute("SELECT format_type(%s, %s)", (oid, typmod)).fetchone()
        return str(row[0]) if row else ""

    def copy_table(
        self,
        source: psycopg.Connection[Any],
        source_table: TableName,
        target: TableName,
        columns: Sequence[str],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Replace the target table's rows by the source's (in the open transaction); the
        source connection reads under the slot's snapshot. Returns the rows copied; `progress`
        hears the rows passed so far after each chunk (it may raise, to end the copy).

        Binary COPY when every column has the same built-in type on both sides (about 40 %
        faster than text for the typical table: nothing is printed and parsed again), else
        text, which the target's input functions cast. The source's row messages are gathered
        into chunks (`copy_messages`): psycopg's per-row iteration and one write per row cost
        as much as the server's work."""
        self.check_columns(target, columns)
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        src = sql.Identifier(source_table.schema, source_table.name)
        dst = sql.Identifier(target.schema, target.name)
        with self._errors(f"cannot copy {source_table} to {target}"):
            types = _wire_types(source, source_table, columns)
            binary = _builtin(types) and types == _wire_types(self.conn, target, columns)
            options = sql.SQL(" (FORMAT binary)" if binary else "")
            self.conn.execute(sql.SQL("DELETE FROM {}").format(dst))
            out_sql = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT{}").format(cols, src, options)
            in_sql = sql.SQL("COPY {} ({}) FROM STDIN{}").format(dst, cols, options)
            with (
                source.cursor() as reading,
                reading.copy(out_sql) as out,
                self.conn.cursor() as writing,
            ):
                with writing.copy(in_sql) as into:
                    buffer = bytearray()
                    for rows, message in enumerate(copy_messages(out, source), 1):  # a row each
                        buffer += message
                        if len(buffer) >= CHUNK_BYTES:
                            into.write(bytes(buffer))
                            buffer.clear()
                            if progress is not None:
                                progress(rows)
                    if buffer:
                        into.write(bytes(buffer))
                copied = writing.rowcount  # COPY FROM's own count: no second scan
        return max(0, copied)

    def copy_rows(
        self,
        target: TableName,
        columns: Sequence[str],
        chunks: Iterable[Sequence[Sequence[Any]]],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Replace the target table's rows by `chunks` of rows of another kind of source (in
        the open transaction): values as text (cast by COPY's input) or bytes for bytea;
        `progress` hears the rows written so far after each chunk (it may raise, to end it)."""
        self.check_columns(target, columns)
        dst = sql.Identifier(target.schema, target.name)
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        count = 0
        with self._errors(f"cannot copy into {target}"):
            self.conn.execute(sql.SQL("DELETE FROM {}").format(dst))
            with self.conn.cursor().copy(
                sql.SQL("COPY {} ({}) FROM STDIN").format(dst, cols)
            ) as into:
                for chunk in chunks:
                    for row in chunk:
                        into.write_row(row)
                    count += len(chunk)
                    if progress is not None:
                        progress(count)
        return count

    # --- changes ---------------------------------------------------------------------------

    def apply(self, changes: Sequence[tuple[Change, Relation, TableName]]) -> None:
        """Apply changes in order (in the open transaction); runs of the same statement go
        through executemany, which psycopg pipelines."""
        pending_key: tuple[Any, ...] | None = None
        pending: list[list[Any]] = []
        with self._errors("the target refused a change"), self.conn.cursor() as cur:
            for change, relation, target in changes:
                if change.kind == "TRUNCATE":  # in its place in the order, after what came first
                    if pending and pending_key is not None:
                        cur.executemany(self._statements[pending_key], pending)
                    pending, pending_key = [], None
                    self.truncate(target)
                    continue
                key, params = self._statement(change, relation, target)
                if key != pending_key and pending:
                    assert pending_key is not None
                    cur.executemany(self._statements[pending_key], pending)
                    pending = []
                pending_key = key
                pending.append(params)
            if pending and pending_key is not None:
                cur.executemany(self._statements[pending_key], pending)

    def _statement(
        self, change: Change, relation: Relation, target: TableName
    ) -> tuple[tuple[Any, ...], list[Any]]:
        table = self.table(target)
        cols = relation.columns
        key_cols = table.key or relation.key
        if change.kind == "DELETE":
            old = change.old or ()
            key: tuple[Any, ...] = ("D", target, key_cols)
            if key not in self._statements:
                self._statements[key] = sql.SQL("DELETE FROM {} WHERE {}").format(
                    sql.Identifier(target.schema, target.name), self._match(table, key_cols)
                )
            return key, [old[cols.index(c)] for c in key_cols]
        new = change.new or ()
        sent = tuple(c for c, v in zip(cols, new, strict=True) if v is not UNCHANGED)
        values = [v for v in new if v is not UNCHANGED]
        if change.kind == "UPDATE" and (change.old is not None or len(sent) < len(cols)):
            # A key that changed, or TOASTed values not sent: update in place, by the old key,
            # only the columns the server sent (the target keeps the unchanged large values).
            old = change.old or new
            key = ("U", target, sent, key_cols)
            if key not in self._statements:
                assignments = sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(c), self._param(table, c))
                    for c in sent
                )
                self._statements[key] = sql.SQL("UPDATE {} SET {} WHERE {}").format(
                    sql.Identifier(target.schema, target.name),
                    assignments,
                    self._match(table, key_cols),
                )
            return key, [*values, *(old[cols.index(c)] for c in key_cols)]
        key = ("I", target, cols, key_cols)
        if key not in self._statements:
            others = [c for c in cols if c not in key_cols]
            on_conflict = (
                sql.SQL("DO UPDATE SET {}").format(
                    sql.SQL(", ").join(
                        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others
                    )
                )
                if others
                else sql.SQL("DO NOTHING")
            )
            self._statements[key] = sql.SQL(
                "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}"
            ).format(
                sql.Identifier(target.schema, target.name),
                sql.SQL(", ").join(map(sql.Identifier, cols)),
                sql.SQL(", ").join(self._param(table, c) for c in cols),
                sql.SQL(", ").join(map(sql.Identifier, key_cols)),
                on_conflict,
            )
        return key, values

    @staticmethod
    def _param(table: TargetTable, column: str) -> sql.Composed:
        # The text form cast to the column's type: the server parses it as it printed it.
        return sql.SQL("%s::{}").format(sql.SQL(table.types[column]))

    def _match(self, table: TargetTable, key_cols: Sequence[str]) -> sql.Composed:
        return sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), self._param(table, c)) for c in key_cols
        )

    def truncate(self, target: TableName) -> None:
        with self._errors(f"cannot truncate {target}"):
            self.conn.execute(
                sql.SQL("DELETE FROM {}").format(sql.Identifier(target.schema, target.name))
            )

    # --- transaction -----------------------------------------------------------------------

    def commit(self) -> None:
        with self._errors("the target commit failed"):
            self.conn.commit()

    def rollback(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.rollback()

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.cancel_safe(timeout=1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def forget_task(content: Mapping[str, Any], task_id: str) -> None:
    """Delete a deleted task's saved positions from its target."""
    with connect(content) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (OFFSETS_TABLE,)).fetchone()
        if exists and exists[0] is not None:
            conn.execute(f"DELETE FROM {OFFSETS_TABLE} WHERE task_id = %s", (task_id,))


_FIRST_USER_OID = 16384
"""PostgreSQL's FirstNormalObjectId: types below it are built in, with the same oid and the
same binary COPY format on every server (a user type's, such as a composite's or an array of
one, carries oids that differ between databases)."""


def _wire_types(
    conn: psycopg.Connection[Any], table: TableName, columns: Sequence[str]
) -> list[tuple[int, int]] | None:
    """Each column's (type oid, typmod), in `columns` order; None if one is missing."""
    rows = conn.execute(
        "SELECT a.attname, a.atttypid::int, a.atttypmod FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
        (table.schema, table.name),
    ).fetchall()
    found = {name: (int(oid), int(typmod)) for name, oid, typmod in rows}
    if any(c not in found for c in columns):
        return None
    return [found[c] for c in columns]


def _builtin(types: list[tuple[int, int]] | None) -> bool:
    return types is not None and all(oid < _FIRST_USER_OID for oid, _ in types)
