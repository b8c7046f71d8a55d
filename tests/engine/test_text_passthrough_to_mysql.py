"""Fast paths: PostgreSQL to MariaDB by text pass-through (COPY's text bytes into LOAD DATA).

Driven through a live server with the engine on; `MysqlConnector.write_raw` is spied on (the
server runs in this process) to tell which path a run took. The row path (the pass-through
turned off) is the reference for what must arrive.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC
from typing import Any

import pymysql
import pytest
from huaweicloudsdkroma.v2 import (
    RunTaskRequest,
    StopTaskRequest,
)

from openfdi.connectors.errors import SliceRefusedError
from openfdi.connectors.mysql.connector import MysqlConnector
from openfdi.connectors.mysql.tsv_write import has_unreadable_escape
from openfdi.connectors.postgres.connector import PostgresConnector
from openfdi.connectors.spi import ReadPlan, WriteMode, WritePlan
from tests.engine import test_fast_paths as fast
from tests.engine.conftest import create_task, monitor_logs, wait_for
from tests.factories import unique

PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres?options=-csearch_path%3D{schema}"
UTC_SESSION = "SET time_zone = '+00:00'"  # TIMESTAMP values read back as UTC wall time

# Every type of the text form, with the values that are hard to carry as text.
ALL_TYPES = """
CREATE TABLE src (
  id bigint PRIMARY KEY, i integer, s smallint, n numeric(12,2), d double precision,
  v varchar(20), t text, b boolean, dt date, ts timestamp(6), tz timestamptz(6)
)
"""
ALL_VALUES = r"""
INSERT INTO src VALUES
  (1, 2147483647, -32768, 9999999999.99, 0.1::float8 + 0.2::float8, 'ünïcødé 😀',
   E'tab\there\nnew line\rcr\\back\\\\two', true, '1000-01-01', '2026-01-02 03:04:05.123456',
   '2026-01-02 03:04:05.654321+05:30'),
  (2, -2147483648, 32767, -0.01, 1e-300, 'NULL', E'\\N', false, '9999-12-31',
   '1000-01-01 00:00:00', '1970-01-01 00:00:01+00'),
  (3, 0, 0, 0, -1.7976931348623157e308, '', '', true, '2024-02-29',
   '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999+00'),
  (4, 1, 1, 0.5, 5e-324, E'C:\\files\\new', 'NULL', false, '2026-06-30',
   '2026-06-30 12:00:00.000001', '2026-06-30 12:00:00.000001+00'),
  (5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (6, 7, 7, 7.07, 2.5, 'x', repeat('large ünïcødé 😀 ', 5000) || E'\t\n\\', true,
   '2000-01-01', '2000-01-01 00:00:00', '2000-01-01 00:00:00+00')
"""


pg = fast.pg  # the same fixture: SQL in the test's PostgreSQL schema


@pytest.fixture
def my(mysql_database: str) -> Callable[[str], list[tuple[Any, ...]]]:
    """Run SQL in the test's MariaDB database (committed); returns a query's rows."""

    def run(sql: str) -> list[tuple[Any, ...]]:
        conn = pymysql.connect(
            host="127.0.0.1", user="root", database=mysql_database, init_command=UTC_SESSION
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                rows = [tuple(r) for r in cursor.fetchall()]
            conn.commit()
            return rows
        finally:
            conn.close()

    return run


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of slices written by pass-through, refused (then written row-wise), and stopped."""
    counts = {"raw": 0, "refused": 0, "stopped": 0}
    write_raw = MysqlConnector.write_raw

    def spy(self: MysqlConnector, *args: Any, **kwargs: Any) -> int | None:
        counts["raw"] += 1
        try:
            written = write_raw(self, *args, **kwargs)
        except SliceRefusedError:
            counts["refused"] += 1
            raise
        counts["stopped"] += written is None
        return written

    monkeypatch.setattr(MysqlConnector, "write_raw", spy)
    return counts


def _no_passthrough(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on MariaDB accepts no pass-through form: runs take the row path."""
    monkeypatch.setattr(MysqlConnector, "passthrough_forms", lambda *_a, **_k: ())


def _pg_content(schema: str) -> dict[str, str]:
    return {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
            "user_name": "postgres", "password": "unused", "schema": schema}  # fmt: skip


def _my_content(database: str) -> dict[str, str]:
    return {"host": "127.0.0.1", "port": "3306", "database_name": database,
            "user_name": "root", "password": ""}  # fmt: skip


@pytest.fixture
def endpoints(signed, base_path: str, pg_schema: str, mysql_database: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Data source ids: the PostgreSQL schema (source) and the MariaDB database (target)."""
    ids = []
    for kind, content in (
        ("POSTGRESQL", _pg_content(pg_schema)),
        ("MYSQL", _my_content(mysql_database)),
    ):
        body = {"datasource_name": unique("ds"), "datasource_type": kind, "content": content}
        reply = signed.post(f"{base_path}/datasources", json=body)
        assert reply.status_code == 201, reply.text
        ids.append(str(reply.json()["datasource_id"]))
    return ids[0], ids[1]


@pytest.fixture
def task(sdk, creds, endpoints: tuple[str, str]) -> Callable[[dict[str, Any]], str]:  # type: ignore[no-untyped-def]
    """Create a PostgreSQL -> MariaDB TIMING task with this task detail; returns its id."""

    def create(detail: dict[str, Any]) -> str:
        return create_task(sdk, creds, *endpoints, detail)

    return create


def _detail(source: str, target: str, **target_options: Any) -> dict[str, Any]:
    return {
        "sourceSelectedDatasource": {"table": source},
        "targetSelectedDatasource": {"table": target, **target_options},
    }


def _logs(sdk, creds, task_id: str) -> list[Any]:  # type: ignore[no-untyped-def]
    return monitor_logs(sdk, creds, task_id)


def _finished(sdk, creds, task_id: str, nth: int) -> Any:  # type: ignore[no-untyped-def]
    logs = _logs(sdk, creds, task_id)
    if len(logs) == nth and logs[0].execute_status != "RUNNING":
        return logs[0]
    return None


def _run(sdk, creds, task_id: str, *, nth: int = 1, timeout: float = 60) -> Any:  # type: ignore[no-untyped-def]
    """Run the task and wait for its `nth` run to finish; returns that run's monitor log."""
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task_id))
    return wait_for(lambda: _finished(sdk, creds, task_id, nth), timeout=timeout)


def _columns(my: Callable[[str], list[tuple[Any, ...]]], table: str) -> list[tuple[Any, ...]]:
    return my(
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
        f"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION"
    )


def test_every_text_value_arrives_as_the_row_path_writes_it(
    sdk, creds, task, pg, my, paths, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    pg(ALL_TYPES)
    pg(ALL_VALUES)

    log = _run(sdk, creds, task(_detail("src", "dst_raw")))
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 6, 0)
    assert paths == {"raw": 1, "refused": 0, "stopped": 0}

    _no_passthrough(monkeypatch)
    log = _run(sdk, creds, task(_detail("src", "dst_rows")))
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 6, 0)
    assert paths["raw"] == 1  # the reference run took the row path

    assert _columns(my, "dst_raw") == _columns(my, "dst_rows")
    raw = my("SELECT * FROM dst_raw ORDER BY id")
    assert raw == my("SELECT * FROM dst_rows ORDER BY id")
    # The same values as in the source, not merely the same mistakes on both paths.
    source = pg("SELECT * FROM src ORDER BY id")
    for got, want in zip(raw, source, strict=True):
        tz = want[10].astimezone(UTC).replace(tzinfo=None) if want[10] else None
        assert got[:7] == want[:7]
        assert (got[7] is None and want[7] is None) or bool(got[7]) == want[7]
        assert (*got[8:10], got[10]) == (*want[8:10], tz)
    assert my("SELECT t FROM dst_raw WHERE id = 2") == [("\\N",)]
    assert my("SELECT count(*) FROM dst_raw WHERE d = 0.30000000000000004e0") == [(1,)]


def test_form_feed_and_vertical_tab_refuse_the_slice_and_still_arrive_exactly(
    sdk, creds, task, pg, my, paths
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id bigint PRIMARY KEY, t text)")
    pg("INSERT INTO src SELECT g, 'row ' || g FROM generate_series(1, 500) g")
    pg(r"UPDATE src SET t = E'form\ffeed' WHERE id = 100")
    pg(r"UPDATE src SET t = E'vertical\vtab \\f not an escape' WHERE id = 400")

    log = _run(sdk, creds, task(_detail("src", "dst")))
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 500, 0)
    assert paths["raw"] >= 1
    assert paths["refused"] >= 1
    assert my("SELECT id, t FROM dst ORDER BY id") == pg("SELECT id, t FROM src ORDER BY id")
    assert my("SELECT t FROM dst WHERE id = 100") == [("form\ffeed",)]


def test_rows_the_target_refuses_are_dirty_and_the_others_written_once(
    sdk, creds, signed, base_path, task, pg, my, paths
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id bigint PRIMARY KEY, v varchar(20), tz timestamptz(6))")
    pg(
        "INSERT INTO src SELECT g, 'v' || g, timestamptz '2026-01-01 00:00:00+00' + g * "
        "interval '1 s' FROM generate_series(1, 2000) g"
    )
    pg("UPDATE src SET tz = '2040-01-01 00:00:00+00' WHERE id IN (7, 1500)")  # past 2038
    pg("UPDATE src SET v = NULL WHERE id = 1999")
    # No key, so a row written twice would show; NOT NULL refuses the NULL.
    my("CREATE TABLE dst (id BIGINT, v VARCHAR(20) NOT NULL, tz TIMESTAMP(6) NULL)")

    task_id = task(_detail("src", "dst"))

    log = _run(sdk, creds, task_id)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 1997, 3)
    assert paths["raw"] >= 1
    assert paths["refused"] >= 1
    assert my("SELECT count(*), count(DISTINCT id) FROM dst") == [(1997, 1997)]
    assert my("SELECT id FROM dst WHERE id IN (7, 1500, 1999)") == []
    dirty = signed.get(f"{base_path}/tasks/{task_id}/runs/{log.id}/dirty-data")
    assert sorted(json.loads(e["row"])[0] for e in dirty.json()["entities"]) == [7, 1500, 1999]


def test_upsert_into_existing_keys_ends_equal_to_the_source(
    sdk, creds, task, pg, my, paths
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id bigint PRIMARY KEY, v varchar(20), amount numeric(12,2))")
    pg("INSERT INTO src SELECT g, 'v' || g, g / 100.0 FROM generate_series(1, 5000) g")
    my("CREATE TABLE dst (id BIGINT PRIMARY KEY, v VARCHAR(20), amount DECIMAL(12,2))")
    my("INSERT INTO dst SELECT seq, 'old', 0 FROM seq_2500_to_9000")

    log = _run(sdk, creds, task(_detail("src", "dst", writeMode="upsert", keyColumns=["id"])))
    assert (log.execute_status, log.data_count) == ("SUCCESS", 5000), log.remarks
    assert paths["raw"] >= 1
    assert paths["refused"] == 0
    assert my("SELECT * FROM dst WHERE id <= 5000 ORDER BY id") == pg(
        "SELECT * FROM src ORDER BY id"
    )
    assert my("SELECT count(*) FROM dst WHERE id > 5000 AND v = 'old'") == [(4000,)]


def test_upsert_keeps_the_last_of_equal_keys_in_a_slice_as_the_row_path_does(
    sdk, creds, task, pg, my, paths, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (seq bigint, k int, v text)")
    pg("INSERT INTO src SELECT g, g % 100, 'v' || g FROM generate_series(1, 3000) g")
    pg("CREATE TABLE keys (k int PRIMARY KEY)")
    pg("INSERT INTO keys SELECT generate_series(1, 50)")
    my("CREATE TABLE dst_keys (k INT PRIMARY KEY)")
    my("INSERT INTO dst_keys SELECT seq FROM seq_40_to_60")

    def by_seq(target: str) -> dict[str, Any]:
        upsert = _detail("src", target, writeMode="upsert", keyColumns=["k"])
        upsert["sourceSelectedDatasource"]["incremental"] = {"column": "seq"}  # read in order
        return upsert

    log = _run(sdk, creds, task(by_seq("dst_raw")))
    assert (log.execute_status, log.data_count) == ("SUCCESS", 3000), log.remarks
    # Every column a key: the update is a no-op naming the target's column.
    log = _run(sdk, creds, task(_detail("keys", "dst_keys", writeMode="upsert", keyColumns=["k"])))
    assert (log.execute_status, log.data_count) == ("SUCCESS", 50), log.remarks
    assert paths["raw"] >= 2
    assert paths["refused"] == 0
    assert my("SELECT k FROM dst_keys ORDER BY k") == [(k,) for k in range(1, 61)]

    _no_passthrough(monkeypatch)
    log = _run(sdk, creds, task(by_seq("dst_rows")))
    assert (log.execute_status, log.data_count) == ("SUCCESS", 3000), log.remarks
    last = my("SELECT k, v FROM dst_raw ORDER BY k")
    assert last == my("SELECT k, v FROM dst_rows ORDER BY k")
    assert last == pg("SELECT DISTINCT ON (k) k, v FROM src ORDER BY k, seq DESC")


def test_incremental_second_run_moves_only_the_new_rows(sdk, creds, task, pg, my, paths) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id bigint, at timestamptz, note text)")
    # Many rows share each instant: slices must never split them.
    pg(
        "INSERT INTO src SELECT g, timestamptz '2026-01-01' + (g / 7) * interval '1 ms', 'n' || g "
        "FROM generate_series(1, 30000) g"
    )
    detail = _detail("src", "dst")
    detail["sourceSelectedDatasource"]["incremental"] = {"column": "at"}
    task_id = task(detail)

    log = _run(sdk, creds, task_id)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 30000), log.remarks
    assert paths["raw"] >= 2
    pg(
        "INSERT INTO src SELECT g, timestamptz '2026-02-01' + g * interval '1 us', 'm' || g "
        "FROM generate_series(30001, 31000) g"
    )
    log = _run(sdk, creds, task_id, nth=2)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 1000), log.remarks
    log = _run(sdk, creds, task_id, nth=3)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 0)
    assert paths["refused"] == 0
    assert my("SELECT id, note FROM dst ORDER BY id") == pg("SELECT id, note FROM src ORDER BY id")


def test_terminate_mid_copy_leaves_no_partial_slice_and_the_next_upsert_is_exact(
    sdk, creds, task, pg, my, paths, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    total = 400_000
    pg("CREATE TABLE src (id bigint PRIMARY KEY, v text, amount numeric(12,2), at timestamp)")
    pg(
        "INSERT INTO src SELECT g, repeat('x', 20) || g, g / 100.0, "
        f"timestamp '2026-01-01' + g * interval '1 us' FROM generate_series(1, {total}) g"
    )
    task_id = task(_detail("src", "dst", writeMode="upsert", keyColumns=["id"]))
    terminate = StopTaskRequest(instance_id=creds.instance_id, task_id=task_id)
    _stop_inside_a_slice(monkeypatch, lambda: sdk.stop_task(terminate))

    log = _run(sdk, creds, task_id)
    assert log.execute_status == "CANCELLED"
    assert paths["stopped"] == 1
    assert 0 < log.data_count < total
    assert my("SELECT count(*) FROM dst") == [(log.data_count,)]  # counted means committed

    log = _run(sdk, creds, task_id, nth=2, timeout=120)
    assert (log.execute_status, log.data_count) == ("SUCCESS", total), log.remarks
    assert paths["refused"] == 0
    assert my("SELECT * FROM dst ORDER BY id") == pg("SELECT * FROM src ORDER BY id")


def _stop_inside_a_slice(monkeypatch: pytest.MonkeyPatch, terminate: Callable[[], Any]) -> None:
    """Terminate the run (once) from inside its third or a later slice, after one chunk of it
    went into LOAD DATA: so the stop surely lands mid-file, not between two slices."""
    write_raw = MysqlConnector.write_raw
    slices = itertools.count(1)
    fired = False

    def stopping(self: MysqlConnector, raw: Any, plan: Any, stop: Callable[[], bool]) -> Any:
        checks = itertools.count()

        def stop_after_a_chunk() -> bool:
            nonlocal fired
            if not fired and next(checks) == 1:
                fired = True
                terminate()  # returns once the run's stop flag is set
            return stop()

        late = next(slices) >= 3
        return write_raw(self, raw, plan, stop_after_a_chunk if late else stop)

    monkeypatch.setattr(MysqlConnector, "write_raw", stopping)


# --- the connector alone ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", [WriteMode.INSERT, WriteMode.UPSERT])
def test_a_stop_mid_slice_leaves_nothing_and_the_connection_goes_on(
    pg, my, pg_schema: str, mysql_database: str, mode: WriteMode
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id bigint PRIMARY KEY, v text)")
    # Several chunks' worth (a chunk is about 1 MB), so the stop lands inside the file.
    pg("INSERT INTO src SELECT g, repeat('y', 60) FROM generate_series(1, 60000) g")
    my("CREATE TABLE dst (id BIGINT PRIMARY KEY, v LONGTEXT)")
    my("INSERT INTO dst VALUES (1, 'before')")
    source = PostgresConnector(_pg_content(pg_schema))
    target = MysqlConnector(_my_content(mysql_database))
    with source, target:
        plan = WritePlan("dst", ("id", "v"), mode, key_columns=("id",), create_table=False)
        target.prepare_target(plan)
        (form,) = target.passthrough_forms("dst", ("id", "v"), as_target=True)
        read = ReadPlan("src", ("id", "v"), batch_rows=100_000)
        if mode is WriteMode.INSERT:
            read = ReadPlan("src", ("id", "v"), where="id > 1", batch_rows=100_000)
        slices = source.read_raw(read, form)
        raw = next(slices)  # the only one: batch_rows covers the table
        asked = iter([False, True])
        assert target.write_raw(raw, plan, lambda: next(asked, True)) is None
        target.commit()
        assert my("SELECT count(*) FROM dst") == [(1,)]

        written = target.write_raw(raw, plan, lambda: False)
        target.commit()
        slices.close()
    upsert = mode is WriteMode.UPSERT
    assert written == (60000 if upsert else 59999)
    assert my("SELECT count(*), count(DISTINCT v) FROM dst WHERE id > 1") == [(59999, 1)]
    assert my("SELECT v FROM dst WHERE id = 1") == [("y" * 60 if upsert else "before",)]


def test_only_a_form_feed_or_vertical_tab_escape_is_unreadable() -> None:
    assert has_unreadable_escape(b"1\ta\\fb\n")
    assert has_unreadable_escape(b"1\tz\\v\n")
    assert has_unreadable_escape(b"1\t\\\\\\f\n")  # an escaped backslash, then \f
    assert not has_unreadable_escape(b"1\tC:\\\\files\n")  # a backslash, then a plain f
    assert not has_unreadable_escape(b"1\t\\\\\\\\v\\N\tf\n")
    assert not has_unreadable_escape(b"1\tform\\tfeed\\nvv\n")
