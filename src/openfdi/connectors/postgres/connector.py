"""The PostgreSQL connector (layer: connectors), on psycopg 3.

Reads stream through a named (server-side) cursor. Writes use COPY; an upsert COPYs into a
temporary staging table, then merges it with one `INSERT ... SELECT ... ON CONFLICT DO UPDATE`.
Savepoints (psycopg's nested `transaction()`) make each bulk attempt atomic, so refused rows can
be isolated. `cancel()` is libpq's cancel request, sent from the calling thread.

Content: `host`, `port`, `database_name`, `user_name`, `password`, and optionally `schema`
(openfdi's own field: the schema unqualified table names resolve to; default: the server's
search_path). Sessions run in UTC, so timestamptz values arrive as UTC datetimes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
import psycopg.sql

from openfdi.connectors._sqlbase import Convert, SqlConnector, port_of, require
from openfdi.connectors._values import as_naive_utc
from openfdi.connectors.postgres import errors, types
from openfdi.connectors.spi import Column, LogicalType, Row, TableSchema, WriteMode, WritePlan

__all__ = ["PostgresConnector"]

CONNECT_TIMEOUT_SECONDS = 10
CANCEL_TIMEOUT_SECONDS = 5.0

_COLUMNS_SQL = """
SELECT a.attname,
       bt.typname,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       a.attnotnull,
       format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_PRIMARY_KEY_SQL = """
SELECT a.attname
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisprimary
ORDER BY k.ord
"""
_TABLES_SQL = """
SELECT n.nspname, c.relname, n.nspname = current_schema()
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND has_table_privilege(c.oid, 'SELECT')
"""


class _Stream:
    def __init__(self, cursor: psycopg.ServerCursor[Row]) -> None:
        self._cursor = cursor

    def fetchmany(self, size: int) -> list[Row]:
        return self._cursor.fetchmany(size)

    def close(self, *, exhausted: bool) -> None:
        self._cursor.close()


class PostgresConnector(SqlConnector):
    """POSTGRESQL datasource."""

    nulls_first = " NULLS FIRST"

    def __init__(self, content: Mapping[str, Any]) -> None:
        super().__init__(content)
        require(content, "host", "database_name", "user_name")
        self._params: dict[str, Any] = {
            "host": str(content["host"]).strip(),
            "port": port_of(content, 5432),
            "dbname": str(content["database_name"]),
            "user": str(content["user_name"]),
            "password": str(content.get("password") or ""),
        }
        schema = content.get("schema")
        self._schema = str(schema) if schema else None
        if self._schema is not None:
            self.q(self._schema)
        self._conn: psycopg.Connection[Row] | None = None
        self._cursor_ids = itertools.count(1)

    # --- connection ----------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Row]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(
                **self._params,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name="openfdi",
                autocommit=False,
            )
            # extra_float_digits > 0 makes the server print floats exactly (shortest round-trip).
            settings = "SET TIME ZONE 'UTC'; SET extra_float_digits = 3"
            if self._schema is not None:
                settings += f"; SET search_path TO {self.q(self._schema)}"
            conn.execute(settings)
            conn.commit()
            self._conn = conn
        return self._conn

    def _errors(self) -> AbstractContextManager[None]:
        return errors.map_driver_errors(self._secrets, self._cancelled.is_set)

    def check(self) -> None:
        self._ensure_live()
        with self._errors():
            conn = self._connection()
            conn.execute("SELECT 1").fetchone()
            conn.rollback()

    def list_tables(self) -> list[str]:
        self._ensure_live()
        with self._errors():
            conn = self._connection()
            rows = conn.execute(_TABLES_SQL).fetchall()
            conn.rollback()
        return sorted(name if current else f"{schema}.{name}" for schema, name, current in rows)

    def _describe_or_none(self, table: str) -> TableSchema | None:
        conn = self._connection()
        found = conn.execute("SELECT to_regclass(%s)::oid", (self.qualified(table),)).fetchone()
        if found is None or found[0] is None:
            return None
        oid = found[0]
        primary = tuple(name for (name,) in conn.execute(_PRIMARY_KEY_SQL, (oid,)))
        columns = tuple(
            types.column_from_catalog(
                name,
                typname,
                typmod,
                nullable=not notnull,
                is_primary_key=name in primary,
                native_type=native,
            )
            for name, typname, typmod, notnull, native in conn.execute(_COLUMNS_SQL, (oid,))
        )
        return TableSchema(table, columns, primary)

    # --- reading -------------------------------------------------------------------------------

    def _select_expression(self, column: Column) -> str:
        # Text-like logical types are read as text: json/jsonb keep their document text, and
        # types mapped to TEXT (uuid, interval, arrays, enums...) arrive as strings.
        if column.type in (LogicalType.TEXT, LogicalType.VARCHAR, LogicalType.JSON):
            return f"{self.q(column.name)}::text"
        return self.q(column.name)

    def _read_converter(self, column: Column) -> Convert | None:
        return None  # psycopg already returns the SPI's types, in UTC for timestamptz

    def _literal(self, value: Any) -> str:
        return psycopg.sql.Literal(value).as_string(self._connection())

    def _open_stream(self, sql: str) -> _Stream:
        conn = self._connection()
        cursor = conn.cursor(name=f"openfdi_read_{next(self._cursor_ids)}")
        cursor.execute(sql)
        return _Stream(cursor)

    def _end_read(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.rollback()

    # --- writing -------------------------------------------------------------------------------

    def _render_type(self, column: Column, *, in_key: bool) -> str:
        return types.ddl_type(column)

    def _write_converter(self, column: Column) -> Convert | None:
        if column.type is LogicalType.TIMESTAMP:
            # PostgreSQL ignores the offset in text input for `timestamp` columns: convert an
            # aware value to UTC wall time here, as a cast from timestamptz would in a UTC session.
            return lambda v: as_naive_utc(v) if hasattr(v, "tzinfo") else v
        if column.type is LogicalType.JSON:
            return lambda v: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        return None

    def _truncate_sql(self, qualified: str) -> str:
        return f"TRUNCATE {qualified}"  # transactional in PostgreSQL, and far faster than DELETE

    def _execute(self, sql: str) -> None:
        self._connection().execute(sql)

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        with self._connection().transaction():  # a SAVEPOINT inside the open transaction
            yield

    def _bulk_write(
        self, table: str, columns: Sequence[Column], rows: list[Row], plan: WritePlan
    ) -> None:
        conn = self._connection()
        names = ", ".join(self.q(c.name) for c in columns)
        if plan.write_mode is not WriteMode.UPSERT:
            self._copy(conn, f"COPY {self.qualified(table)} ({names}) FROM STDIN", rows)
            return
        stage = self.q(
            "openfdi_stage_" + hashlib.sha256(f"{table}\0{names}".encode()).hexdigest()[:16]
        )
        conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DROP AS "
            f"SELECT {names} FROM {self.qualified(table)} WITH NO DATA"
        )
        self._copy(conn, f"COPY {stage} ({names}) FROM STDIN", rows)
        keys = ", ".join(self.q(k) for k in plan.key_columns)
        updates = [
            f"{self.q(c.name)} = EXCLUDED.{self.q(c.name)}"
            for c in columns
            if c.name not in plan.key_columns
        ]
        action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
        # One key twice in a batch would make ON CONFLICT touch a row twice, which PostgreSQL
        # refuses; keep the last occurrence (highest ctid: the stage is only ever appended to).
        conn.execute(
            f"INSERT INTO {self.qualified(table)} ({names}) "
            f"SELECT DISTINCT ON ({keys}) {names} FROM {stage} ORDER BY {keys}, ctid DESC "
            f"ON CONFLICT ({keys}) {action}"
        )
        conn.execute(f"TRUNCATE {stage}")

    @staticmethod
    def _copy(conn: psycopg.Connection[Row], statement: str, rows: list[Row]) -> None:
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def _row_error(self, exc: Exception) -> str | None:
        if not errors.is_row_error(exc):
            return None
        # The CONTEXT lines locate the row inside the failed slice ("COPY t, line 1"): noise.
        return str(exc).split("\nCONTEXT:")[0].strip()

    def _commit_ddl(self) -> None:
        self.commit()

    def commit(self) -> None:
        self._ensure_live()
        if self._conn is not None:
            with self._errors():
                self._conn.commit()

    def rollback(self) -> None:
        if self._conn is not None and not self._conn.closed:
            with self._errors():
                self._conn.rollback()

    def _interrupt(self) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            return
        if hasattr(conn, "cancel_safe"):  # psycopg >= 3.2: does not block on a slow network
            conn.cancel_safe(timeout=CANCEL_TIMEOUT_SECONDS)
        else:
            conn.cancel()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with self._errors():
                conn.close()  # closing without commit discards the open transaction
