"""The MySQL/MariaDB log reader of a composite task: the server check, the consistent snapshot a
table is copied under, and the binary log's replication stream (decoded by my_binlog.py).

A position is a binlog file and the offset after a transaction's commit event. It is kept as one
integer, `(file number << 32) | offset` (a binlog file holds at most 4 GiB), so that positions
compare in log order and fit the offsets table's bigint like PostgreSQL's LSNs.

Values are converted per column type to one form whichever path they took (my_values.py):
decimals, times and JSON as their exact text, binary columns as bytes, bits as digits, geometry
as WKB.
"""

from __future__ import annotations

import contextlib
import select
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pymysql  # type: ignore[import-untyped]
import pymysql.cursors  # type: ignore[import-untyped]

from openfdi.connectors.cdc import my_values
from openfdi.connectors.cdc.my_binlog import (
    BinlogDecoder,
    Gtid,
    RowChange,
    TxnCommit,
    encode_position,
)
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


COM_BINLOG_DUMP = 0x12
DUMP_NON_BLOCK = 0x01
"""A dump flag: the server ends the stream (an EOF packet) at the log's end, not waits."""
STREAM_READ_TIMEOUT_S = 30
"""A stream that sends nothing, not even its heartbeat (every HEARTBEAT_S), this long is dead."""
_PYMYSQL_PRIVATE = ("_execute_command", "_sock")
"""pymysql has no public call to send a replication command or to reach the socket under it;
these are what the stream uses (python-mysql-replication uses the same). Checked when a
stream opens, so that a pymysql that renamed them fails with this module's name, not an
AttributeError mid-stream."""
_MAX_PACKET = 0xFF_FFFF
"""A packet of this size continues in the next one (a payload of 16 MiB or more)."""
_RECV_BYTES = 256 * 1024


class _Received:
    """The replication socket's bytes, received in large pieces: after the dump command the
    connection carries nothing but the log's packets, which the stream frames itself. (pymysql
    builds an object a packet, a third of the stream's time (4 of 10 s profiled over 100,000
    transactions); its buffered reader holds 8 KiB, so telling whether more of the log has
    arrived took a `select` a transaction.)"""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._at = 0

    def take(self, size: int) -> bytes:
        buffer = self._buffer
        while len(buffer) - self._at < size:
            if self._at:
                del buffer[: self._at]
                self._at = 0
            piece = self._sock.recv(max(_RECV_BYTES, size - len(buffer)))
            if not piece:
                raise OSError("the server closed the replication connection")
            buffer += piece
        start = self._at
        self._at += size
        return bytes(buffer[start : self._at])

    def arriving(self) -> bool:
        """Bytes are here or waiting on the socket."""
        if len(self._buffer) > self._at:
            return True
        try:
            return bool(select.select([self._sock], [], [], 0)[0])
        except (OSError, ValueError):  # closed under us: the next read says why
            return False


class BinlogStream:
    """One replication connection reading the binlog from a position, decoded by openfdi's
    own decoder (my_binlog.py). pymysql makes the connection (its handshake, authentication
    and the replica's settings); the stream then frames the log's packets itself."""

    def __init__(
        self,
        content: Mapping[str, Any],
        task_id: str,
        position: int,
        log_file: str | None,
        schemas: Sequence[str],
        gtids: Sequence[Gtid] = (),
        *,
        server_id: int | None = None,
        blocking: bool = True,
    ) -> None:
        """From `position` in `log_file`, or, without a file (the one of the position is
        gone), from just after the MariaDB GTIDs `gtids` wherever the server holds them.
        Blocking, it waits for new events at the log's end; else `read` gives None there."""
        self.position = position
        with mapped_errors("cannot open the binlog stream"):
            self._conn = pymysql.connect(
                **connection_params(content),
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=STREAM_READ_TIMEOUT_S,
            )
            try:
                missing = [a for a in _PYMYSQL_PRIVATE if not hasattr(self._conn, a)]
                if missing:
                    raise TerminalConnectorError(
                        f"pymysql changed ({', '.join(missing)}): review my_source.BinlogStream"
                    )
                checksum = self._prepare(gtids if log_file is None else ())
                offset = position & 0xFFFF_FFFF if log_file is not None else 4
                self._conn._execute_command(
                    COM_BINLOG_DUMP,
                    struct.pack(
                        "<IHI",
                        offset,
                        0 if blocking else DUMP_NON_BLOCK,
                        server_id if server_id is not None else server_id_of(task_id),
                    )
                    + (log_file or "").encode(),
                )
            except BaseException:
                self.close()
                raise
        self._conn._sock.settimeout(STREAM_READ_TIMEOUT_S)
        # pymysql read the answers to the settings whole; the server sends the log only after
        # the dump command: nothing of it waits in pymysql's own buffer.
        self._received = _Received(self._conn._sock)
        self._decoder = BinlogDecoder(schemas, log_file or "", checksum)

    def _prepare(self, gtids: Sequence[Gtid]) -> bool:
        """The session settings of a replica: checksums as the server writes them, the
        heartbeat, MariaDB's GTID events, where to begin by GTID. Whether events carry a
        checksum."""
        with self._conn.cursor() as cur:
            cur.execute("SELECT @@global.binlog_checksum")
            row = cur.fetchone()
            checksum = row is not None and str(row[0]).upper() != "NONE"
            cur.execute("SET @master_binlog_checksum = @@global.binlog_checksum")
            cur.execute("SET @master_heartbeat_period = %s", (int(HEARTBEAT_S * 1e9),))
            # 4: this replica understands MariaDB's GTID events (MySQL ignores it).
            cur.execute("SET @mariadb_slave_capability = 4")
            if gtids:
                cur.execute("SET @slave_connect_state = %s", (",".join(map(str, gtids)),))
                cur.execute("SET @slave_gtid_strict_mode = 0, @slave_gtid_ignore_duplicates = 0")
        return checksum

    @property
    def log_file(self) -> str:
        """The file the stream reads now."""
        return self._decoder.log_file

    @property
    def began_ms(self) -> int | None:
        """When the server began the file the stream reads (its format description's time)."""
        return self._decoder.first_timestamp_ms

    def read(self) -> list[RowChange | TxnCommit] | None:
        """The next event's changes or commit ([] for one of no interest); None at the log's
        end when not blocking."""
        try:
            data = self._packet()
        except (pymysql.err.MySQLError, OSError, EOFError) as exc:
            raise _broken(exc) from exc
        if data[0] == 0xFE and len(data) < 9:  # the end of a non-blocking dump
            return None
        items = self._decoder.feed(data)
        if items and isinstance(items[-1], TxnCommit):
            self.position = items[-1].position
        return items

    def _packet(self) -> bytes:
        """The next packet's payload. (pymysql also checks each packet's sequence number; over
        one TCP stream they cannot skip, so this does not.)"""
        take = self._received.take
        parts: list[bytes] = []
        while True:
            size = int.from_bytes(take(4)[:3], "little")
            data = take(size)
            if size < _MAX_PACKET:
                break
            parts.append(data)
        if parts:
            data = b"".join([*parts, data])
        if not data:
            raise OSError("the server sent an empty packet on the replication connection")
        if data[0] == 0xFF:
            pymysql.err.raise_mysql_exception(data)
        return data

    def arriving(self) -> bool:
        """True when more of the log is on its way now: received and not read yet, or waiting
        on the socket."""
        return self._received.arriving()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


def _broken(exc: BaseException) -> Exception:
    text = str(exc)
    if "1236" in text or "purged" in text.lower() or "could not find" in text.lower():
        return TerminalConnectorError(
            f"the source's binary log no longer holds the saved position (purged: {text}), "
            "so the changes since cannot be read; set repulling_snapshot with "
            "update_multi_tasks to copy the tables again"
        )
    return TransientConnectorError(f"the binlog stream broke: {exc}")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


# --- a position by date -------------------------------------------------------------------------


class LogTooShort(ConnectorError):
    """The server's oldest binlog file begins after the date asked for."""

    def __init__(self, oldest_file: str, begins_ms: int) -> None:
        super().__init__(f"the source's oldest binary log {oldest_file} begins at {begins_ms}")
        self.oldest_file = oldest_file
        self.begins_ms = begins_ms


def _scan(content: Mapping[str, Any], server_id: int, log_file: str) -> BinlogStream:
    """A non-blocking stream of `log_file` and the files after it, no table's rows decoded."""
    return BinlogStream(content, "", 4, log_file, (), server_id=server_id, blocking=False)


def _file_begins_ms(content: Mapping[str, Any], server_id: int, log_file: str) -> int:
    """When the server began the file: the time of its format description event."""
    stream = _scan(content, server_id, log_file)
    try:
        while stream.began_ms is None:
            if stream.read() is None:
                break
        if stream.began_ms is not None:
            return stream.began_ms
    finally:
        stream.close()
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
    stream = _scan(content, server_id, start[-1])
    previous, previous_file = encode_position(start[-1], 4), start[-1]
    try:
        while (items := stream.read()) is not None:
            for item in items:
                if not isinstance(item, TxnCommit):
                    continue
                if item.commit_time_us // 1000 >= when_ms - when_ms % 1000:
                    return previous, f"{previous_file}:{previous & 0xFFFF_FFFF}"
                previous, previous_file = item.position, stream.log_file
    finally:
        stream.close()
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
