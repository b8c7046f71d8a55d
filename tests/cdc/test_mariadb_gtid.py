"""A MariaDB source's position is kept as its GTIDs too: a task stopped at the end of a binlog
file resumes after the server rotated and purged that file (file and offset alone would call
the position gone), and one whose next transactions were purged fails clearly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cdc.conftest import Ends, start_stop, wait_for
from tests.cdc.mariaserver import BinlogMariaDB
from tests.cdc.test_mariadb import _logs, _my, _snapshotted, _task
from tests.cdc.test_mariadb_types import _database


@pytest.fixture
def mdb(maria: BinlogMariaDB) -> Iterator[str]:
    yield from _database(maria, "src")


def _target(ends: Ends) -> list[tuple[Any, ...]]:
    with ends.dst_conn() as dst:
        return [tuple(r) for r in dst.execute("SELECT id, v FROM a ORDER BY id")]


def _rotate_and_purge(maria: BinlogMariaDB) -> str:
    """Begin a new binlog file and purge every older one; returns the new file's name."""
    with maria.root() as conn, conn.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW MASTER STATUS")
        current = str(cur.fetchone()[0])

        def purged() -> bool:  # the server keeps a file until its binlog checkpoint passed it
            cur.execute(f"PURGE BINARY LOGS TO '{current}'")
            cur.execute("SHOW BINARY LOGS")
            return [r[0] for r in cur.fetchall()] == [current]

        wait_for(purged)
    return current


def _stopped(sdk, creds, task_id: str) -> None:  # type: ignore[no-untyped-def]
    start_stop(sdk, creds, task_id, "stop")
    wait_for(lambda: all(log.execute_status != "RUNNING" for log in _logs(sdk, creds, task_id)))


def test_a_task_resumes_by_gtid_after_its_binlog_file_was_purged(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, mdb: str
) -> None:
    _my(maria, mdb, "CREATE TABLE a (id int PRIMARY KEY, v varchar(20))",
        "INSERT INTO a VALUES (1, 'snapshot')")  # fmt: skip
    with ends.dst_conn() as dst:
        dst.execute("CREATE TABLE a (id int PRIMARY KEY, v text)")
    task_id, _ = _task(sdk, creds, maria, mdb, ends)
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: _snapshotted(ends))
    _my(maria, mdb, "INSERT INTO a VALUES (2, 'streamed')")
    wait_for(lambda: _target(ends) == [(1, "snapshot"), (2, "streamed")])
    with ends.dst_conn() as dst:  # the GTID is saved with the rows
        saved = dst.execute(
            "SELECT source_table FROM openfdi_cdc_offsets WHERE task_id = %s "
            "AND source_table LIKE 'gtid %%'",
            (task_id,),
        ).fetchall()
    assert len(saved) == 1, saved
    _stopped(sdk, creds, task_id)

    # The file of the saved position goes; the transactions after it are in the new one.
    _rotate_and_purge(maria)
    _my(maria, mdb, "INSERT INTO a VALUES (3, 'after purge')", "UPDATE a SET v = 'moved' "
        "WHERE id = 1", "DELETE FROM a WHERE id = 2")  # fmt: skip
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: _target(ends) == [(1, "moved"), (3, "after purge")])
    _my(maria, mdb, "INSERT INTO a VALUES (4, 'goes on')")
    wait_for(lambda: _target(ends) == [(1, "moved"), (3, "after purge"), (4, "goes on")])
    _stopped(sdk, creds, task_id)
    runs = _logs(sdk, creds, task_id)
    assert runs[0].execute_status == "CANCELLED", runs[0].remarks  # stopped, not failed

    # A transaction after the saved GTID purged: the run fails saying so, never skips it.
    _my(maria, mdb, "INSERT INTO a VALUES (5, 'lost')")
    _rotate_and_purge(maria)
    start_stop(sdk, creds, task_id, "start")
    failed = wait_for(
        lambda: [
            log
            for log in _logs(sdk, creds, task_id)
            if log.execute_status not in ("RUNNING", "UNSTARTED", "CANCELLED")
        ]
    )
    assert failed[0].execute_status != "SUCCESS", failed[0].remarks
    assert "no longer holds the saved position" in failed[0].remarks, failed[0].remarks
    assert "repulling_snapshot" in failed[0].remarks, failed[0].remarks
    assert (5, "lost") not in _target(ends)
    start_stop(sdk, creds, task_id, "stop")
