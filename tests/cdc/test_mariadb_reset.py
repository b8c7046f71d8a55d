"""reset_multi_task_offset of a composite task following a MariaDB binlog, through the SDK: the
next run replays exactly the transactions committed at or after `date_from` (found by walking
the server's binlog files), and a date the binlog no longer reaches, a running task and a task
that never ran are refused with the FDI error the API documents."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkroma.v2 import MultiTaskResetBody, ResetMultiTaskOffsetRequest

from tests.cdc.conftest import Ends, start_stop, wait_for
from tests.cdc.mariaserver import BinlogMariaDB
from tests.cdc.test_mariadb import _datasource, _logs, _my, _snapshotted, _task, _task_between
from tests.cdc.test_mariadb_types import _database


@pytest.fixture
def mdb(maria: BinlogMariaDB) -> Iterator[str]:
    yield from _database(maria, "src")


def _reset(sdk, creds, task_id: str, date_from: int) -> Any:  # type: ignore[no-untyped-def]
    return sdk.reset_multi_task_offset(
        ResetMultiTaskOffsetRequest(
            instance_id=creds.instance_id,
            task_id=task_id,
            body=MultiTaskResetBody(date_from=date_from),
        )
    )


def _refused(call: Any, status: int, code: str, *words: str) -> str:
    with pytest.raises(ClientRequestException) as refused:
        call()
    assert (refused.value.status_code, refused.value.error_code) == (status, code), (
        refused.value.error_msg
    )
    for word in words:
        assert word in refused.value.error_msg, refused.value.error_msg
    return str(refused.value.error_msg)


def _target(ends: Ends) -> list[tuple[Any, ...]]:
    with ends.dst_conn() as dst:
        return [tuple(r) for r in dst.execute("SELECT id, v FROM a ORDER BY id")]


def _next_second() -> int:
    """Epoch ms of the next whole second, once it has come: the binlog's times are whole
    seconds, so what commits before the call is in an earlier second than what commits after."""
    mark = (int(time.time()) + 1) * 1000
    time.sleep(max(0.0, mark / 1000 - time.time()) + 0.05)
    return mark


def _flush(maria: BinlogMariaDB) -> None:
    with maria.root() as conn, conn.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")


def _stopped(sdk, creds, task_id: str) -> None:  # type: ignore[no-untyped-def]
    start_stop(sdk, creds, task_id, "stop")
    wait_for(lambda: all(log.execute_status != "RUNNING" for log in _logs(sdk, creds, task_id)))


def test_a_reset_by_date_replays_exactly_the_transactions_from_that_second_on(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, mdb: str
) -> None:
    _my(maria, mdb, "CREATE TABLE a (id int PRIMARY KEY, v varchar(20))",
        "INSERT INTO a VALUES (1, 'one'), (2, 'two')")  # fmt: skip
    with ends.dst_conn() as dst:
        dst.execute("CREATE TABLE a (id int PRIMARY KEY, v text)")
    task_id, _ = _task(sdk, creds, maria, mdb, ends)
    # Never run: there is no position to move.
    _refused(lambda: _reset(sdk, creds, task_id, int(time.time() * 1000)), 400, "FDI.3033",
             "date_from", "start the task")  # fmt: skip
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: _snapshotted(ends))
    _my(maria, mdb, "INSERT INTO a VALUES (3, 'before')")
    wait_for(lambda: _target(ends) == [(1, "one"), (2, "two"), (3, "before")])
    # Running: refused, as an update is.
    _refused(lambda: _reset(sdk, creds, task_id, int(time.time() * 1000)), 400, "FDI.3023")

    _flush(maria)  # the file the date falls in begins before it
    mark = _next_second()
    with maria.connect(mdb) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO a VALUES (4, 'after'), (5, 'after')")
        _flush(maria)  # and the replay goes on into the next file
        conn.begin()
        cur.execute("UPDATE a SET v = 'changed' WHERE id = 1")
        cur.execute("DELETE FROM a WHERE id = 2")
        conn.commit()
    wait_for(lambda: _target(ends) == [(1, "changed"), (3, "before"), (4, "after"),
                                       (5, "after")])  # fmt: skip
    _stopped(sdk, creds, task_id)

    # The target loses its rows; a reset to the mark brings back exactly what the source
    # committed from then on (row 3 was committed before it: it stays gone).
    with ends.dst_conn() as dst:
        dst.execute("DELETE FROM a")
    answer = _reset(sdk, creds, task_id, mark)
    assert "binlog." in answer.message, answer.message
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: _target(ends) == [(1, "changed"), (4, "after"), (5, "after")])
    _my(maria, mdb, "INSERT INTO a VALUES (6, 'new')")  # and it goes on following
    wait_for(lambda: _target(ends) == [(1, "changed"), (4, "after"), (5, "after"), (6, "new")])
    _stopped(sdk, creds, task_id)

    # A date past the end of the log: nothing to replay, the task resumes at the end.
    _my(maria, mdb, "INSERT INTO a VALUES (7, 'skipped')")
    _reset(sdk, creds, task_id, int(time.time() * 1000) + 3_600_000)
    start_stop(sdk, creds, task_id, "start")
    _my(maria, mdb, "INSERT INTO a VALUES (8, 'later')")
    wait_for(lambda: (8, "later") in _target(ends))
    assert (7, "skipped") not in _target(ends)
    _stopped(sdk, creds, task_id)

    # Before the oldest binlog the server still has: the changes since are gone.
    message = _refused(lambda: _reset(sdk, creds, task_id, 978_307_200_000), 400, "FDI.3033",
                       "date_from", "repulling_snapshot")  # fmt: skip
    assert "2001-01-01" in message, message
    with pytest.raises(ClientRequestException):  # and an absent date is no date
        _reset(sdk, creds, task_id, None)  # type: ignore[arg-type]


@pytest.fixture
def mdst(maria: BinlogMariaDB) -> Iterator[str]:
    yield from _database(maria, "dst")


def test_a_reset_into_a_mariadb_target_moves_its_positions_and_drops_its_gtids(  # type: ignore[no-untyped-def]
    sdk, creds, maria: BinlogMariaDB, mdb: str, mdst: str
) -> None:
    for db in (mdb, mdst):
        _my(maria, db, "CREATE TABLE a (id int PRIMARY KEY, v varchar(20))")
    _my(maria, mdb, "INSERT INTO a VALUES (1, 'one')")
    task_id, _ = _task_between(
        sdk,
        creds,
        _datasource(sdk, creds, "MYSQL", maria.content(mdb)),
        _datasource(sdk, creds, "MYSQL", maria.content(mdst)),
    )

    def target() -> list[tuple[Any, ...]]:
        with maria.connect(mdst) as conn, conn.cursor() as cur:
            cur.execute("SELECT id, v FROM a ORDER BY id")
            return [tuple(r) for r in cur.fetchall()]

    def offsets() -> list[tuple[Any, ...]]:
        with maria.connect(mdst) as conn, conn.cursor() as cur:
            cur.execute("SELECT source_table, lsn FROM openfdi_cdc_offsets WHERE task_id = %s "
                        "ORDER BY 1", (task_id,))  # fmt: skip
            return [tuple(r) for r in cur.fetchall()]

    start_stop(sdk, creds, task_id, "start")
    _my(maria, mdb, "INSERT INTO a VALUES (2, 'before')")
    wait_for(lambda: target() == [(1, "one"), (2, "before")])
    mark = _next_second()
    _my(maria, mdb, "INSERT INTO a VALUES (3, 'after')", "UPDATE a SET v = 'changed' WHERE id = 1")
    wait_for(lambda: target() == [(1, "changed"), (2, "before"), (3, "after")])
    _stopped(sdk, creds, task_id)
    assert any(str(name).startswith("gtid ") for name, _ in offsets())

    _my(maria, mdst, "DELETE FROM a")
    _reset(sdk, creds, task_id, mark)
    saved = offsets()
    assert [name for name, _ in saved] == ["", f"{mdb}.a"], saved  # the GTIDs are gone
    assert len({lsn for _, lsn in saved}) == 1, saved  # stream and table at one position
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: target() == [(1, "changed"), (3, "after")])
    _stopped(sdk, creds, task_id)
