"""The MariaDB binlog read in a child process (connectors/cdc/my_reader.py, my_process.py),
against the session's MariaDB: the same items in the same order as `BinlogStream` read in
the test's own process, failures that keep their meaning across the process boundary, a child
that never outlives its parent (kill -9) and a stop that never waits past its budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from openfdi.connectors.cdc import my_binlog
from openfdi.connectors.cdc.my_binlog import RowChange, TxnCommit
from openfdi.connectors.cdc.my_reader import BinlogReader
from openfdi.connectors.cdc.my_source import BinlogStream
from openfdi.connectors.errors import TerminalConnectorError, TransientConnectorError
from tests.cdc.mariaserver import BinlogMariaDB

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(mdb: str) -> str:
    """The test's own database on the session's MariaDB (conftest's `mdb`)."""
    return mdb


def _run(maria: BinlogMariaDB, db: str, *statements: str) -> None:
    with maria.connect(db) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _now(maria: BinlogMariaDB) -> tuple[str, int]:
    """The binlog's end: (file, position)."""
    with maria.root() as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    return str(row[0]), my_binlog.encode_position(str(row[0]), int(row[1]))


def _started(maria: BinlogMariaDB, db: str, start: tuple[str, int], **content: str) -> BinlogReader:
    reader = BinlogReader({**maria.content(db), **content}, f"t-{db}", 0.1)
    reader.start()
    reader.follow(start[1], start[0], [db], [])
    return reader


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a reaped-later child of init counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


MIXED = (
    "INSERT INTO a VALUES (1, 'one', 'x,y'), (2, 'two', ''), (3, NULL, NULL)",
    "UPDATE a SET v = 'uno', s = 'z,x' WHERE id = 1",
    "DELETE FROM a WHERE id = 3",
    "BEGIN",
    "INSERT INTO a VALUES (4, 'four', 'y')",
    "UPDATE a SET v = CONCAT(v, '!') WHERE id <= 4",
    "INSERT INTO b VALUES (1, 10), (2, 20)",
    "DELETE FROM b WHERE k = 2",
    "COMMIT",
    "UPDATE a SET id = 40 WHERE id = 4",
    "TRUNCATE TABLE b",
    "INSERT INTO b VALUES (3, 30)",
    "BEGIN",
    "INSERT INTO a VALUES (9, 'rolled back', '')",
    "ROLLBACK",
)


def test_the_process_hands_over_the_items_of_the_stream_in_order(
    maria: BinlogMariaDB, db: str
) -> None:
    _run(maria, db, "CREATE TABLE a (id int PRIMARY KEY, v varchar(20), s set('x','y','z'))",
         "CREATE TABLE b (k int PRIMARY KEY, n bigint)")  # fmt: skip
    start = _now(maria)
    _run(maria, db, *MIXED)
    _run(maria, db, *(f"UPDATE b SET n = n + 1 WHERE k = 3 -- {i}" for i in range(3000)))
    end = _now(maria)[1]

    stream = BinlogStream(maria.content(db), f"t-{db}", start[1], start[0], [db])
    direct: list[RowChange | TxnCommit] = []
    try:
        while stream.position < end:
            direct.extend(stream.read() or ())
    finally:
        stream.close()

    reader = _started(maria, db, start)
    handed: list[RowChange | TxnCommit] = []
    messages = 0
    try:
        while reader.position < end:
            got = reader.next(5)
            assert got is not None, "nothing within 5 s"
            handed.extend(got)
            messages += 1
    finally:
        reader.stop()

    assert handed == direct
    kinds = {i.kind for i in direct if isinstance(i, RowChange)}
    assert kinds == {"INSERT", "UPDATE", "DELETE", "TRUNCATE"}
    sets = {i.new[2] for i in direct if isinstance(i, RowChange) and i.table.name == "a" and i.new}
    assert {"x,y", "", "x,z"} <= sets  # members in definition order
    commits = [i for i in direct if isinstance(i, TxnCommit)]
    assert len(commits) > 3000
    assert all(c.gtid is not None for c in commits)
    assert reader.position == commits[-1].position
    assert messages < len(commits) / 5, "many items a message"


def test_an_event_of_more_than_16_mib_arrives_whole(maria: BinlogMariaDB, db: str) -> None:
    """A row of 20 MiB is an event the server splits over two protocol packets (16 MiB at
    most each), which the stream joins again; the rows either side of it arrive too."""
    big = bytes(range(256)) * (20 * 4096)
    _run(maria, db, "CREATE TABLE g (id int PRIMARY KEY, data longblob)")
    start = _now(maria)
    with maria.connect(db) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO g VALUES (1, 'before')")
        cur.execute("INSERT INTO g VALUES (2, %s)", (big,))
        cur.execute("INSERT INTO g VALUES (3, 'after')")
    end = _now(maria)[1]
    stream = BinlogStream(maria.content(db), f"t-{db}", start[1], start[0], [db])
    rows: list[RowChange] = []
    try:
        while stream.position < end:
            rows.extend(i for i in stream.read() or () if isinstance(i, RowChange))
    finally:
        stream.close()
    assert [r.new[0] for r in rows if r.new] == [1, 2, 3]
    assert rows[1].new is not None
    assert rows[1].new[1] == big


def test_a_purged_position_fails_terminally_with_what_to_do(maria: BinlogMariaDB, db: str) -> None:
    reader = _started(maria, db, ("binlog.999999", my_binlog.encode_position("binlog.999999", 4)))
    try:
        with pytest.raises(TerminalConnectorError, match="no longer holds the saved position"):
            _drain(reader, 20)
    finally:
        reader.stop()


def test_an_unreachable_server_fails_transiently(maria: BinlogMariaDB, db: str) -> None:
    closed = _closed_port()
    reader = _started(maria, db, _now(maria), port=str(closed))
    try:
        refused = r"cannot open the binlog stream.*Connection refused"
        with pytest.raises(TransientConnectorError, match=refused):
            _drain(reader, 20)
    finally:
        reader.stop()


def test_a_child_that_dies_without_a_word_is_a_transient_error_naming_how(
    maria: BinlogMariaDB, db: str
) -> None:
    reader = _started(maria, db, _now(maria))
    try:
        assert reader.next(0.5) is None  # idle, alive
        assert reader.pid is not None
        os.kill(reader.pid, signal.SIGKILL)
        with pytest.raises(TransientConnectorError, match="ended without a word: signal 9"):
            _drain(reader, 10)
    finally:
        reader.stop()


def test_stop_ends_a_child_blocked_on_a_full_pipe_within_its_budget(
    maria: BinlogMariaDB, db: str
) -> None:
    _run(maria, db, "CREATE TABLE w (id int PRIMARY KEY, v varchar(2000))")
    start = _now(maria)
    _run(maria, db, "INSERT INTO w SELECT seq, REPEAT('w', 2000) FROM seq_1_to_40000")
    reader = _started(maria, db, start)
    assert reader.next(10)  # reading; the parent then takes nothing and the pipe fills
    time.sleep(1)
    pid = reader.pid
    assert pid is not None
    assert _alive(pid)
    # Bounded: one message (BATCH_ITEMS rows) and the pipe's buffer, not the 40 MB in the log.
    assert _rss_mb(pid) < 100, _rss_mb(pid)
    asked = time.monotonic()
    reader.stop()
    took = time.monotonic() - asked
    assert took < reader.join_s + 0.2, took
    assert not _alive(pid)


def test_stop_of_an_idle_reader_is_quick(maria: BinlogMariaDB, db: str) -> None:
    reader = _started(maria, db, _now(maria))
    assert reader.next(1) is None
    pid = reader.pid
    assert pid is not None
    asked = time.monotonic()
    reader.stop()
    assert time.monotonic() - asked < 0.5
    assert not _alive(pid)


PARENT = """
import subprocess
import time
from openfdi.connectors.cdc.my_reader import BinlogReader
reader = BinlogReader({content!r}, "t-kill", 0.1)
reader.start()
reader.follow({position}, {log_file!r}, [{db!r}], [])
# A process forked from the server (a prefork worker, say) keeps a copy of the parent's end
# of the pipe: the child then sees no EOF when the parent dies, and must learn it otherwise.
holder = subprocess.Popen(["sleep", "60"], pass_fds=[reader._pipe.fileno()])
print(reader.pid, holder.pid, flush=True)
time.sleep(60)  # takes nothing: a busy child fills the pipe and blocks sending
"""


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "blocked-sending"])
def test_the_child_does_not_outlive_a_parent_killed_with_sigkill(
    maria: BinlogMariaDB, db: str, busy: bool
) -> None:
    _run(maria, db, "CREATE TABLE w (id int PRIMARY KEY, v varchar(2000))")
    start = _now(maria)
    if busy:  # more than the pipe holds: the child is blocked sending when the parent goes
        _run(maria, db, "INSERT INTO w SELECT seq, REPEAT('w', 2000) FROM seq_1_to_20000")
    code = PARENT.format(content=maria.content(db), position=start[1], log_file=start[0], db=db)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT)
    holder = 0
    try:
        assert parent.stdout is not None
        child, holder = map(int, parent.stdout.readline().split())
        time.sleep(1)
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _gone_within(child, 3), f"the reader process {child} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if holder:
            os.kill(holder, signal.SIGKILL)


def _drain(reader: BinlogReader, seconds: float) -> list[Any]:
    """Every item until `seconds` pass (the reader's failure raises out of here)."""
    got: list[Any] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got.extend(reader.next(0.2) or ())
    return got


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_reader_process_imports_only_the_binlog_decoder() -> None:
    """Its interpreter starts with every run of a MySQL source, while the first changes wait:
    asyncmy and the MYSQL connector (pydantic, the settings) were 1.2 of its 1.3 s to start on
    a busy machine, and 17 of its 47 MB."""
    code = (
        "import sys, openfdi.connectors.cdc.my_process\n"
        "print(sorted(m for m in ('asyncmy', 'pydantic', 'openfdi.connectors.mysql', "
        "'sqlalchemy', 'openfdi.settings') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_a_second_stop_has_nothing_to_do(maria: BinlogMariaDB, db: str) -> None:
    reader = _started(maria, db, _now(maria))
    reader.stop()
    reader.stop()
    assert reader.pid is None


def test_any_other_failure_of_the_child_arrives_named(maria: BinlogMariaDB, db: str) -> None:
    """Not a connector error (a bug, a content the engine never checked): raised in the parent
    as a RuntimeError naming the child's exception and its message, not as a hang or EOF."""
    reader = _started(maria, db, _now(maria), port="not a port")
    try:
        with pytest.raises(RuntimeError, match="ValueError: invalid literal for int"):
            _drain(reader, 20)
    finally:
        reader.stop()
