"""The PostgreSQL log reader of a composite task: its publication and slot, the exported
snapshot a new table is copied under, and the logical replication stream (pgoutput).

psycopg 3 has no replication protocol, so the stream and slot creation use psycopg2's
`LogicalReplicationConnection`; everything else uses psycopg 3 like the other connectors.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg import sql

from openfdi.connectors.cdc.pgoutput import parse_lsn
from openfdi.connectors.errors import TerminalConnectorError, TransientConnectorError
from openfdi.domain.cdc import TableName, publication_name, slot_name

CONNECT_TIMEOUT_S = 10


def connection_params(content: Mapping[str, Any]) -> dict[str, Any]:
    """libpq parameters of a POSTGRESQL data source's content."""
    return {
        "host": str(content.get("host") or "").strip(),
        "port": int(str(content.get("port") or 5432)),
        "dbname": str(content.get("database_name") or ""),
        "user": str(content.get("user_name") or ""),
        "password": str(content.get("password") or ""),
        "connect_timeout": CONNECT_TIMEOUT_S,
    }


def connect(content: Mapping[str, Any], *, autocommit: bool = True) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(
            **connection_params(content), autocommit=autocommit, application_name="openfdi-cdc"
        )
    except psycopg.OperationalError as exc:
        raise TransientConnectorError(f"cannot reach the PostgreSQL server: {exc}") from exc
    # The apply step confirms a position to the source only after its commit: that commit must
    # be durable whatever the server's default.
    conn.execute("SET TIME ZONE 'UTC'; SET synchronous_commit = on")
    if not autocommit:
        conn.commit()
    return conn


@contextlib.contextmanager
def _mapped_errors(action: str) -> Iterator[None]:
    try:
        yield
    except (psycopg.OperationalError, psycopg2.OperationalError) as exc:
        raise TransientConnectorError(f"{action}: {exc}".strip()) from exc
    except (psycopg.Error, psycopg2.Error) as exc:
        raise TerminalConnectorError(f"{action}: {exc}".strip()) from exc


def check_server(conn: psycopg.Connection[Any]) -> None:
    """Refuse, naming the setting to change, a server or role that cannot serve logical
    replication."""
    row = conn.execute(
        "SELECT current_setting('wal_level'), r.rolreplication OR r.rolsuper "
        "FROM pg_roles r WHERE r.rolname = current_user"
    ).fetchone()
    if row is None:  # pragma: no cover - the current role always exists
        raise TerminalConnectorError("cannot read the current role")
    wal_level, can_replicate = row
    if wal_level != "logical":
        raise TerminalConnectorError(
            f"the source server has wal_level={wal_level}: set wal_level = logical in "
            "postgresql.conf and restart it (docs/cdc.md)"
        )
    if not can_replicate:
        raise TerminalConnectorError(
            "the source user has no REPLICATION privilege: ALTER ROLE … WITH REPLICATION "
            "(docs/cdc.md)"
        )


def table_columns(
    conn: psycopg.Connection[Any], table: TableName
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(columns in order, primary key columns) of a table; a missing table is an error."""
    rows = conn.execute(
        "SELECT a.attname, coalesce(a.attnum = ANY(i.indkey), false) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (table.schema, table.name),
    ).fetchall()
    if not rows:
        raise TerminalConnectorError(f"table {table} does not exist")
    return tuple(r[0] for r in rows), tuple(r[0] for r in rows if r[1])


def column_types(conn: psycopg.Connection[Any], table: TableName) -> dict[str, str]:
    """Each column's type as the source declares it (format_type)."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        (f'"{table.schema}"."{table.name}"',),
    ).fetchall()
    return dict(rows)


def list_tables_with_keys(conn: psycopg.Connection[Any]) -> list[tuple[TableName, bool]]:
    """The user tables of the database, each with whether it has a primary key."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, EXISTS (SELECT 1 FROM pg_index i "
        "  WHERE i.indrelid = c.oid AND i.indisprimary) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%%' AND c.relname NOT LIKE 'openfdi_cdc_%%' "
        "ORDER BY 1, 2"
    ).fetchall()
    return [(TableName(r[0], r[1]), bool(r[2])) for r in rows]


def ensure_publication(
    conn: psycopg.Connection[Any], task_id: str, tables: Sequence[TableName]
) -> None:
    """The task's publication holds exactly `tables` (created on first use)."""
    name = sql.Identifier(publication_name(task_id))
    listed = sql.SQL(", ").join(sql.Identifier(t.schema, t.name) for t in tables)
    with _mapped_errors("cannot set up the publication"):
        exists = conn.execute(
            "SELECT 1 FROM pg_publication WHERE pubname = %s", (publication_name(task_id),)
        ).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(name, listed))
        else:
            conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(name, listed))


def slot_position(conn: psycopg.Connection[Any], task_id: str) -> int | None:
    """The task's slot's confirmed position (0 before any), or None when it has no slot."""
    row = conn.execute(
        "SELECT coalesce(confirmed_flush_lsn, '0/0')::text FROM pg_replication_slots "
        "WHERE slot_name = %s",
        (slot_name(task_id),),
    ).fetchone()
    return None if row is None else parse_lsn(row[0])


def drop_objects(content: Mapping[str, Any], task_id: str) -> None:
    """Drop the task's slot and publication (a forgotten slot keeps WAL forever and fills the
    source's disk). A slot still in use by a live stream is terminated first."""
    with connect(content) as conn, _mapped_errors("cannot drop the task's slot"):
        conn.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
            "WHERE slot_name = %s AND active_pid IS NOT NULL",
            (slot_name(task_id),),
        )
        for _ in range(50):  # the terminated walsender lets go of the slot within moments
            try:
                conn.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s",
                    (slot_name(task_id),),
                )
                break
            except psycopg.errors.ObjectInUse:
                select.select([], [], [], 0.1)
        conn.execute(
            sql.SQL("DROP PUBLICATION IF EXISTS {}").format(
                sql.Identifier(publication_name(task_id))
            )
        )


class ReplicationStream:
    """One replication connection: creates slots with an exported snapshot, then streams."""

    def __init__(self, content: Mapping[str, Any]) -> None:
        params = connection_params(content)
        with _mapped_errors("cannot open a replication connection"):
            self._conn = psycopg2.connect(
                **params,
                application_name="openfdi-cdc",
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
            )
        self._cursor: Any = self._conn.cursor()
        self.wal_end = 0
        """How far the server's WAL reaches, as last reported to this stream."""

    def create_slot(self, name: str, *, temporary: bool = False) -> tuple[int, str]:
        """Create a pgoutput slot; returns (consistent point, exported snapshot name). The
        snapshot stays usable until this connection runs its next command."""
        kind = "TEMPORARY LOGICAL" if temporary else "LOGICAL"
        with _mapped_errors(f"cannot create the replication slot {name}"):
            self._cursor.execute(f"CREATE_REPLICATION_SLOT {name} {kind} pgoutput EXPORT_SNAPSHOT")
            row = self._cursor.fetchone()
        return parse_lsn(row[1]), str(row[2])

    def start(self, name: str, task_id: str, start_lsn: int) -> None:
        with _mapped_errors("cannot start streaming from the slot"):
            try:
                self._cursor.start_replication(
                    slot_name=name,
                    decode=False,
                    start_lsn=start_lsn,
                    options={"proto_version": "1", "publication_names": publication_name(task_id)},
                )
            except psycopg2.errors.UndefinedObject as exc:
                raise TerminalConnectorError(
                    f"the replication slot {name} is gone: the saved position cannot be "
                    "reached; set repulling_snapshot with update_multi_tasks to copy the "
                    "tables again"
                ) from exc

    def read(self, timeout_s: float) -> tuple[int, bytes] | None:
        """The next message's (WAL start, payload), or None after `timeout_s` without one."""
        try:
            message = self._cursor.read_message()
            if message is None:
                select.select([self._cursor], [], [], timeout_s)
                message = self._cursor.read_message()
            self.wal_end = max(self.wal_end, int(self._cursor.wal_end))
        except (psycopg2.Error, OSError) as exc:
            # A stream ends on a server restart with no SQLSTATE to tell (libpq: "no message"):
            # the next try reconnects and resumes from the saved position.
            raise TransientConnectorError(f"the replication stream broke: {exc}") from exc
        if message is None:
            return None
        return int(message.data_start), bytes(message.payload)

    def confirm(self, lsn: int, *, reply: bool = False) -> None:
        """Tell the server everything up to `lsn` is applied: it may recycle that WAL."""
        with _mapped_errors("cannot confirm the applied position"):
            self._cursor.send_feedback(flush_lsn=lsn, reply=reply)

    def settle(self, lsn: int, timeout_s: float = 0.5) -> None:
        """Confirm `lsn` and wait (briefly) until the server answered, so that the slot
        records it before the connection closes: a status update still in flight when the
        connection goes is dropped, and the slot would hold that WAL until the next run."""
        with contextlib.suppress(psycopg2.Error, OSError):
            before = self._cursor.io_timestamp
            self._cursor.send_feedback(flush_lsn=lsn, reply=True, force=True)
            deadline = time.monotonic() + timeout_s
            while self._cursor.io_timestamp == before and time.monotonic() < deadline:
                if self._cursor.read_message() is None:
                    select.select([self._cursor], [], [], 0.05)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


@contextlib.contextmanager
def snapshot_reader(content: Mapping[str, Any], snapshot: str) -> Iterator[psycopg.Connection[Any]]:
    """A read-only transaction that sees the database as of an exported snapshot."""
    conn = connect(content, autocommit=False)
    try:
        with _mapped_errors("cannot read under the slot's snapshot"):
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()
        conn.close()
