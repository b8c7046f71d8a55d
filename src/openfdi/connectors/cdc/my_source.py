"""The MySQL/MariaDB log reader of a composite task: the server check, the consistent snapshot a
table is copied under, and the binary log's row events (python-mysql-replication).

A position is a binlog file and the offset after a transaction's commit event. It is kept as one
integer, `(file number << 32) | offset` (a binlog file holds at most 4 GiB), so that positions
compare in log order and fit the offsets table's bigint like PostgreSQL's LSNs.

Values are converted per column type to one form whichever path they took (my_values.py):
decimals, times and JSON as their exact text, binary columns as bytes, bits as digits, geometry
as WKB.
"""

from __future__ import annotations

import contextlib
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pymysql  # type: ignore[import-untyped]
import pymysql.cursors  # type: ignore[import-untyped]
from pymysqlreplication import BinLogStreamReader  # type: ignore[import-untyped]
from pymysqlreplication.constants import FIELD_TYPE  # type: ignore[import-untyped]
from pymysqlreplication.event import (  # type: ignore[import-untyped]
    FormatDescriptionEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (  # type: ignore[import-untyped]
    DeleteRowsEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from openfdi.connectors.cdc import my_values
from openfdi.connectors.errors import (
    ConnectorError,
    TerminalConnectorError,
    TransientConnectorError,
)
from openfdi.domain.cdc import TableName

if TYPE_CHECKING:
    from openfdi.connectors.mysql.reader import AsyncReader

CONNECT_TIMEOUT_S = 10
MySQLError = pymysql.err.MySQLError
HEARTBEAT_S = 0.2
"""The server sends a heartbeat when idle this long: the reader's chance to see a stop."""
NEEDED = {
    "log_bin": "ON",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    "binlog_row_metadata": "FULL",
}
"""Server settings a composite task needs (binlog_row_metadata: the column names and charsets,
without which binary and text values cannot be told apart exactly)."""


def connection_params(content: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "host": str(content.get("host") or "").strip(),
        "port": int(str(content.get("port") or 3306)),
        "user": str(content.get("user_name") or ""),
        "password": str(content.get("password") or ""),
    }


def database(content: Mapping[str, Any]) -> str:
    return str(content.get("database_name") or "")


def connect(content: Mapping[str, Any]) -> Any:
    try:
        conn = pymysql.connect(
            **connection_params(content),
            database=database(content) or None,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
        )
    except pymysql.err.OperationalError as exc:
        raise TransientConnectorError(f"cannot reach the MySQL server: {exc}") from exc
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
    return conn


@contextlib.contextmanager
def mapped_errors(action: str) -> Iterator[None]:
    # asyncmy (and the MYSQL connector's reader, below) are imported where they are used: the
    # binlog reader's process (my_process) imports this module and needs neither, and they
    # were most of its start (1.2 of 1.3 s on a busy machine, 17 of 47 MB).
    import asyncmy.errors

    try:
        yield
    except (pymysql.err.OperationalError, asyncmy.errors.OperationalError) as exc:
        raise TransientConnectorError(f"{action}: {exc}") from exc
    except (pymysql.err.MySQLError, asyncmy.errors.MySQLError) as exc:
        raise TerminalConnectorError(f"{action}: {exc}") from exc


def _query(conn: Any, text: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(text, params)
        return list(cur.fetchall())


def check_server(conn: Any) -> None:
    """Refuse, naming the setting to change, a server or user that cannot serve row-based CDC."""
    with mapped_errors("cannot read the source server's settings"):
        found = {
            str(k).lower(): str(v).upper()
            for k, v in _query(
                conn,
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                "('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata')",
            )
        }
        grants = " ".join(str(r[0]).upper() for r in _query(conn, "SHOW GRANTS"))
    for name, want in NEEDED.items():
        have = found.get(name, "unset")
        if have != want:
            setting = "log_bin (the --log-bin option)" if name == "log_bin" else name
            raise TerminalConnectorError(
                f"the source server has {name}={have}: set {setting} = {want} in the server's "
                "configuration and restart it (docs/cdc.md)"
            )
    if "ALL PRIVILEGES ON *.*" not in grants:
        missing = [p for p in ("REPLICATION SLAVE", "SELECT") if p not in grants]
        if "REPLICATION CLIENT" not in grants and "BINLOG MONITOR" not in grants:
            missing.append("REPLICATION CLIENT")
        if missing:
            raise TerminalConnectorError(
                f"the source user lacks the privileges {', '.join(missing)}: GRANT SELECT, "
                "REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO the user (docs/cdc.md)"
            )


@dataclass(frozen=True, slots=True)
class SourceTable:
    name: TableName
    columns: tuple[str, ...]
    key: tuple[str, ...]
    converters: Mapping[str, my_values.Converter] = field(default_factory=dict)
    """Column -> its converter (my_values), for the columns whose values need one."""

    @property
    def converted(self) -> tuple[int, ...]:
        """Indexes of the columns whose snapshot values need their converter."""
        return tuple(i for i, c in enumerate(self.columns) if c in self.converters)

    def converters_of(self, columns: Sequence[str]) -> tuple[my_values.Converter, ...]:
        """One converter per column of a row event (a column the table no longer has, or
        gained since it was read, by its value alone)."""
        return tuple(self.converters.get(c, my_values.text_value) for c in columns)


def table_columns(conn: Any, table: TableName) -> SourceTable:
    rows = _query(
        conn,
        "SELECT c.COLUMN_NAME, s.COLUMN_NAME IS NOT NULL, c.DATA_TYPE, c.COLUMN_TYPE "
        "FROM information_schema.COLUMNS c LEFT JOIN information_schema.STATISTICS s "
        "ON s.TABLE_SCHEMA = c.TABLE_SCHEMA AND s.TABLE_NAME = c.TABLE_NAME "
        "AND s.COLUMN_NAME = c.COLUMN_NAME AND s.INDEX_NAME = 'PRIMARY' "
        "WHERE c.TABLE_SCHEMA = %s AND c.TABLE_NAME = %s ORDER BY c.ORDINAL_POSITION",
        (table.schema, table.name),
    )
    if not rows:
        raise TerminalConnectorError(f"table {table} does not exist")
    converters = {
        str(r[0]): found
        for r in rows
        if (found := my_values.converter(_text(r[2]), _text(r[3]))) is not None
    }
    return SourceTable(
        table,
        tuple(str(r[0]) for r in rows),
        tuple(str(r[0]) for r in rows if r[1]),
        converters,
    )


def list_tables_with_keys(conn: Any, schema: str) -> list[tuple[TableName, bool]]:
    rows = _query(
        conn,
        "SELECT t.TABLE_NAME, EXISTS (SELECT 1 FROM information_schema.STATISTICS s "
        "  WHERE s.TABLE_SCHEMA = t.TABLE_SCHEMA AND s.TABLE_NAME = t.TABLE_NAME "
        "  AND s.INDEX_NAME = 'PRIMARY') "
        "FROM information_schema.TABLES t WHERE t.TABLE_SCHEMA = %s "
        "AND t.TABLE_TYPE = 'BASE TABLE' AND t.TABLE_NAME NOT LIKE 'openfdi_cdc_%%' ORDER BY 1",
        (schema,),
    )
    return [(TableName(schema, str(r[0])), bool(r[1])) for r in rows]


# --- positions -------------------------------------------------------------------------------


def encode_position(log_file: str, offset: int) -> int:
    return (int(log_file.rsplit(".", 1)[1]) << 32) | offset


def position_text(position: int, base: str = "") -> str:
    number, offset = position >> 32, position & 0xFFFF_FFFF
    return f"{base}.{number:06d}:{offset}" if base else f"{number:06d}:{offset}"


def binary_logs(conn: Any) -> list[str]:
    """The binlog files the server still has, oldest first."""
    with mapped_errors("cannot list the source's binary logs"):
        return [str(r[0]) for r in _query(conn, "SHOW BINARY LOGS")]


def log_file_of(position: int, logs: Sequence[str]) -> str | None:
    """The name of the file `position` is in, when the server still has it."""
    number = position >> 32
    for name in logs:
        if int(name.rsplit(".", 1)[1]) == number:
            return name
    return None


# --- snapshot --------------------------------------------------------------------------------


@contextlib.contextmanager
def snapshot(content: Mapping[str, Any]) -> Iterator[tuple[AsyncReader, int]]:
    """A transaction that sees the database as of one binlog position: (reader, position).

    MariaDB reports the position its consistent snapshot corresponds to (binlog_snapshot_file
    and _position) without any lock; elsewhere a short global read lock pins it. The rows are
    read with asyncmy (compiled row parsing, the MYSQL connector's reader)."""
    import asyncmy.errors

    from openfdi.connectors.mysql.reader import AsyncReader

    params = connection_params(content)
    try:
        reader = AsyncReader(
            {**params, "db": database(content) or None, "charset": "utf8mb4",
             "autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S}
        )  # fmt: skip
    except (asyncmy.errors.MySQLError, OSError) as exc:
        raise TransientConnectorError(f"cannot reach the MySQL server: {exc}") from exc

    def run(statement: str) -> list[tuple[Any, ...]]:
        async def query() -> list[tuple[Any, ...]]:
            async with reader.conn.cursor() as cur:
                await cur.execute(statement)
                return list(await cur.fetchall() or ())

        return list(reader.run(query()))

    try:
        with mapped_errors("cannot open a consistent snapshot"):
            run("SET time_zone = '+00:00'")
            run("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            run("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            status = {str(k).lower(): v for k, v in run("SHOW STATUS LIKE 'binlog_snapshot_%'")}
            if status.get("binlog_snapshot_file"):
                position = encode_position(
                    str(status["binlog_snapshot_file"]), int(status["binlog_snapshot_position"])
                )
            else:  # MySQL: pin the position under a global read lock
                run("ROLLBACK")
                run("FLUSH TABLES WITH READ LOCK")
                try:
                    run("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    master = run("SHOW MASTER STATUS")[0]
                    position = encode_position(str(master[0]), int(master[1]))
                finally:
                    run("UNLOCK TABLES")
        yield reader, position
    finally:
        with contextlib.suppress(Exception):
            run("ROLLBACK")
        reader.close()


def read_table(
    reader: AsyncReader, table: SourceTable, chunk: int = 5_000
) -> Iterator[Sequence[Sequence[Any]]]:
    """The table's rows in chunks, streamed from the server under the snapshot; values of
    the types that need it converted (my_values)."""
    cols = ", ".join(f"`{c}`" for c in table.columns)
    converted = [(i, table.converters[table.columns[i]]) for i in table.converted]
    with mapped_errors(f"cannot read {table.name}"):
        stream = reader.stream(f"SELECT {cols} FROM `{table.name.schema}`.`{table.name.name}`")
        done = False
        try:
            while rows := stream.fetchmany(chunk):
                if converted:
                    out = [list(r) for r in rows]
                    for row in out:
                        for i, convert in converted:
                            row[i] = convert(row[i])
                    yield out
                else:
                    yield rows
            done = True
        finally:
            stream.close(exhausted=done)


# --- the stream ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowChange:
    kind: str
    table: TableName
    columns: tuple[str, ...]
    """The event's column names (the table's shape when the change was logged)."""
    new: tuple[Any, ...] | None
    old: tuple[Any, ...] | None


@dataclass(frozen=True, slots=True)
class TxnCommit:
    position: int
    """After the commit event: where the next transaction starts."""
    commit_time_us: int
    gtid: Gtid | None = None
    """The transaction's MariaDB GTID, when the server logs them (MariaDB 10.0+ always)."""


@dataclass(frozen=True, slots=True)
class Gtid:
    """A MariaDB GTID, domain-server-sequence. A server's binlog holds each domain's
    transactions in sequence order, so the last applied GTID of each domain (its
    `gtid_slave_pos`) says where to resume in whatever file the server keeps them now."""

    domain: int
    server: int
    seq: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.seq}"


GTID_ROW = "gtid "
"""Offsets rows named `gtid <domain>-<server>` hold that domain's last applied sequence."""


def gtid_row(gtid: Gtid) -> tuple[str, int]:
    return f"{GTID_ROW}{gtid.domain}-{gtid.server}", gtid.seq


def gtids_of(saved: Mapping[str, int]) -> dict[str, Gtid]:
    """The saved rows' GTIDs, the last of each domain: row name -> GTID."""
    latest: dict[int, tuple[str, Gtid]] = {}
    for name, seq in saved.items():
        if not name.startswith(GTID_ROW):
            continue
        domain, server = (int(part) for part in name[len(GTID_ROW) :].split("-"))
        found = latest.get(domain)
        if found is None or seq > found[1].seq:
            latest[domain] = (name, Gtid(domain, server, seq))
    return dict(latest.values())


def server_id_of(task_id: str) -> int:
    """The replica server id the task's reader registers with (unique per task, never 0)."""
    return 1_000_000 + zlib.crc32(task_id.encode()) % 2_000_000_000


_EVENTS = [
    WriteRowsEvent,
    UpdateRowsEvent,
    DeleteRowsEvent,
    XidEvent,
    QueryEvent,
    RotateEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
]


_RESUME_FLAG = "_BinLogStreamReader__resume_stream"


class BinlogStream:
    """One replication connection reading the binlog from a position."""

    def __init__(
        self,
        content: Mapping[str, Any],
        task_id: str,
        position: int,
        log_file: str | None,
        schemas: Sequence[str],
        gtids: Sequence[Gtid] = (),
    ) -> None:
        """From `position` in `log_file`, or, without a file (the one of the position is
        gone), from just after the MariaDB GTIDs `gtids` wherever the server holds them."""
        self.position = position
        self._gtid: Gtid | None = None
        where: dict[str, Any] = (
            {"resume_stream": True, "log_file": log_file, "log_pos": position & 0xFFFF_FFFF}
            if log_file is not None
            else {"auto_position": ",".join(map(str, gtids)), "is_mariadb": True}
        )
        with mapped_errors("cannot open the binlog stream"):
            self._reader = BinLogStreamReader(
                connection_settings={**connection_params(content), "charset": "utf8mb4"},
                server_id=server_id_of(task_id),
                blocking=True,
                slave_heartbeat=HEARTBEAT_S,
                only_events=_EVENTS,
                only_schemas=list(schemas),
                freeze_schema=True,
                **where,
            )

    def read(self) -> list[RowChange | TxnCommit] | None:
        """The next event's changes or commit ([] for one of no interest)."""
        try:
            event = self._reader.fetchone()
        except (pymysql.err.MySQLError, OSError, EOFError, AttributeError) as exc:
            raise _broken(exc) from exc
        except Exception as exc:
            if "purged" in str(exc).lower() or "1236" in str(exc):
                raise _broken(exc) from exc
            raise
        if event is None:
            return None
        if isinstance(event, RotateEvent) and self._reader.auto_position:
            # Where the GTIDs led is now a file and an offset, which the reader keeps: should
            # it reconnect on its own, it goes on from there, not from the GTIDs again.
            # (The reader's resume flag is private: checked, so that a library that renamed it
            # fails here rather than resume from the file's start.)
            if not hasattr(self._reader, _RESUME_FLAG):
                raise TerminalConnectorError(
                    "python-mysql-replication changed: review BinlogStream's GTID resume"
                )
            self._reader.auto_position = None
            self._reader.is_mariadb = False
            setattr(self._reader, _RESUME_FLAG, True)
        if isinstance(event, MariadbGtidEvent):
            self._gtid = Gtid(int(event.domain_id), int(event.server_id), int(event.gtid_seq_no))
            return []
        log_pos = int(event.packet.log_pos)
        if isinstance(event, XidEvent) or (
            isinstance(event, QueryEvent) and _query_text(event) == "COMMIT"
        ):
            position = encode_position(str(self._reader.log_file), log_pos)
            self.position = position
            gtid, self._gtid = self._gtid, None
            return [TxnCommit(position, int(event.timestamp) * 1_000_000, gtid)]
        if isinstance(event, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
            table = TableName(str(event.schema), str(event.table))
            columns = tuple(str(c.name) for c in event.columns)
            sets = [
                (i, list(c.set_values or ()))
                for i, c in enumerate(event.columns)
                if c.type == FIELD_TYPE.SET
            ]
            out: list[RowChange | TxnCommit] = []
            if isinstance(event, WriteRowsEvent):
                for row in event.rows:
                    values = _values(row["values"], row["none_sources"], sets)
                    out.append(RowChange("INSERT", table, columns, values, None))
            elif isinstance(event, DeleteRowsEvent):
                for row in event.rows:
                    values = _values(row["values"], row["none_sources"], sets)
                    out.append(RowChange("DELETE", table, columns, None, values))
            else:
                for row in event.rows:
                    out.append(
                        RowChange(
                            "UPDATE",
                            table,
                            columns,
                            _values(row["after_values"], row["after_none_sources"], sets),
                            _values(row["before_values"], row["before_none_sources"], sets),
                        )
                    )
            return out
        if isinstance(event, QueryEvent):
            truncated = _truncated_table(_query_text(event), _text(event.schema))
            if truncated is not None:
                return [RowChange("TRUNCATE", truncated, (), None, None)]
        return []

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._reader.close()


def _values(
    row: dict[str, Any], none_sources: dict[str, str], sets: list[tuple[int, list[str]]]
) -> tuple[Any, ...]:
    """A row image's values; a SET's as the server prints it (members in definition order),
    not the decoder's Python set, whose empty set is None like a NULL (told apart by the
    decoder's `none_sources`)."""
    values = tuple(row.values())
    if not sets:
        return values
    out, names = list(values), list(row)
    for i, members in sets:
        value = out[i]
        if value is None:
            if none_sources.get(names[i]) == "empty set":
                out[i] = ""
        elif isinstance(value, set):
            out[i] = ",".join(m for m in members if m in value)
    return tuple(out)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _query_text(event: Any) -> str:
    text = _text(event.query).strip()
    return text.upper() if len(text) < 16 else text


_TRUNCATE = re.compile(r"^\s*TRUNCATE\s+(?:TABLE\s+)?(?:`?(\w+)`?\.)?`?(\w+)`?\s*$", re.I)


def _truncated_table(text: str, schema: str) -> TableName | None:
    """The table a TRUNCATE statement empties (logged as a statement, even with ROW format)."""
    found = _TRUNCATE.match(text)
    if found is None:
        return None
    return TableName(found.group(1) or schema, found.group(2))


def _broken(exc: BaseException) -> Exception:
    text = str(exc)
    if "1236" in text or "purged" in text.lower() or "could not find" in text.lower():
        return TerminalConnectorError(
            f"the source's binary log no longer holds the saved position (purged: {text}), "
            "so the changes since cannot be read; set repulling_snapshot with "
            "update_multi_tasks to copy the tables again"
        )
    return TransientConnectorError(f"the binlog stream broke: {exc}")


# --- a position by date -------------------------------------------------------------------------


class LogTooShort(ConnectorError):
    """The server's oldest binlog file begins after the date asked for."""

    def __init__(self, oldest_file: str, begins_ms: int) -> None:
        super().__init__(f"the source's oldest binary log {oldest_file} begins at {begins_ms}")
        self.oldest_file = oldest_file
        self.begins_ms = begins_ms


def _scanner(content: Mapping[str, Any], server_id: int, log_file: str, events: list[Any]) -> Any:
    with mapped_errors("cannot read the source's binary log"):
        return BinLogStreamReader(
            connection_settings={**connection_params(content), "charset": "utf8mb4"},
            server_id=server_id,
            resume_stream=True,
            log_file=log_file,
            log_pos=4,
            blocking=False,
            only_events=events,
        )


def _file_begins_ms(content: Mapping[str, Any], server_id: int, log_file: str) -> int:
    """When the server began the file: the time of its format description event."""
    reader = _scanner(content, server_id, log_file, [FormatDescriptionEvent])
    try:
        with mapped_errors(f"cannot read the source's binary log {log_file}"):
            for event in reader:
                if isinstance(event, FormatDescriptionEvent) and event.timestamp:
                    return int(event.timestamp) * 1000
    finally:
        reader.close()
    raise TerminalConnectorError(f"the source's binary log {log_file} has no start event")


def position_at(content: Mapping[str, Any], task_id: str, when_ms: int) -> tuple[int, str]:
    """The position (and its text, with its file's name) just before the first transaction
    committed at or after `when_ms` (the binlog's times are whole seconds: a transaction of
    that second counts), or the end of the log when none was; LogTooShort when the server's
    oldest file begins after `when_ms`.

    Each file's start time (its first event) picks the file to read from: the last one begun
    before the date (a transaction cannot be committed after the server began the next file),
    then its commits are read, and the next files' if need be, until one is late enough."""
    server_id = server_id_of(f"{task_id}:reset")  # not the task's: never kicks its reader off
    conn = connect(content)
    try:
        logs = binary_logs(conn)
    finally:
        conn.close()
    if not logs:
        raise TerminalConnectorError("the source server writes no binary log (docs/cdc.md)")
    begins = {log: _file_begins_ms(content, server_id, log) for log in logs}
    if begins[logs[0]] > when_ms:
        raise LogTooShort(logs[0], begins[logs[0]])
    start = [log for log in logs if begins[log] < when_ms] or logs[:1]
    reader = _scanner(content, server_id, start[-1], [XidEvent, QueryEvent])
    previous, previous_file = encode_position(start[-1], 4), start[-1]
    try:
        with mapped_errors("cannot read the source's binary log"):
            for event in reader:
                if not isinstance(event, XidEvent) and _query_text(event) != "COMMIT":
                    continue
                if int(event.timestamp) * 1000 >= when_ms - when_ms % 1000:
                    break
                previous_file = str(reader.log_file)
                previous = encode_position(previous_file, int(event.packet.log_pos))
    finally:
        reader.close()
    return previous, f"{previous_file}:{previous & 0xFFFF_FFFF}"


def current_position(conn: Any) -> int:
    """Where the server's binlog ends now."""
    with mapped_errors("cannot read the source's binlog position"):
        rows = _query(conn, "SHOW MASTER STATUS")
    if not rows:
        raise TerminalConnectorError(
            "the source server writes no binary log: start it with --log-bin (docs/cdc.md)"
        )
    return encode_position(str(rows[0][0]), int(rows[0][1]))
