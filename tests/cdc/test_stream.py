"""Composite tasks from PostgreSQL's log into PostgreSQL, driven through the SDK: snapshot, then
every insert, update and delete of several tables, exact values, stop and start, DDL."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import psycopg
from huaweicloudsdkroma.v2 import (
    CreateMultiTaskMappingsRequest,
    ListMonitorLogRequest,
    MultiTaskMappingCreateBody,
    RunTaskRequest,
)

from tests.cdc.conftest import (
    Ends,
    composite_task,
    same_rows,
    start_stop,
    wait_for,
)
from tests.cdc.load import snapshotted

TABLES = ("a", "b", "c")
BIG = "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(300_000))
"""Incompressible enough to be stored out of line (TOASTed) by the source."""


def _schema(ends: Ends) -> None:
    ends.both(
        "CREATE TABLE a (id int PRIMARY KEY, v text);"
        "CREATE TABLE b (id bigint PRIMARY KEY, n numeric(30,10), ts timestamptz, j jsonb,"
        " bin bytea, big text, f double precision);"
        "CREATE TABLE c (k1 int, k2 text, v int, PRIMARY KEY (k1, k2));"
        "CREATE TABLE nopk (x int)"
    )


def _seed(src: psycopg.Connection) -> None:  # type: ignore[type-arg]
    src.execute("INSERT INTO a SELECT g, 'seed ' || g FROM generate_series(1, 50) g")
    src.execute(
        "INSERT INTO b VALUES (1, 12345678901234567890.0123456789, '2026-01-02 03:04:05.123456+07',"
        " '{\"k\": [1, 2.50, null]}', '\\x00ff10', %s, 0.1)",
        (BIG,),
    )
    src.execute("INSERT INTO c VALUES (1, 'x', 1), (1, 'y', 2)")


def _changes(src: psycopg.Connection) -> None:  # type: ignore[type-arg]
    src.execute("INSERT INTO a VALUES (51, 'new'), (52, NULL)")
    with src.transaction():  # a multi-table, multi-row transaction
        src.execute("UPDATE a SET v = 'changed ' || id WHERE id <= 10")
        src.execute("DELETE FROM a WHERE id BETWEEN 20 AND 25")
        src.execute("INSERT INTO c VALUES (2, 'z', 3)")
        src.execute("UPDATE c SET v = v + 100")
    src.execute("UPDATE a SET id = 1000 WHERE id = 30")  # the key itself changes
    src.execute("UPDATE b SET n = -0.0000000001, f = 1e-300 WHERE id = 1")  # big: not sent
    src.execute(
        "INSERT INTO b VALUES (2, NULL, NULL, NULL, NULL, NULL, NULL),"
        " (3, 99999999999999999999.9999999999, 'infinity', '[]', '', 'x', 'NaN')"
    )
    src.execute("DELETE FROM c WHERE k2 = 'x'")
    with src.transaction():  # TRUNCATE arrives in its place among the transaction's changes
        src.execute("INSERT INTO c VALUES (7, 'gone', 7)")
        src.execute("TRUNCATE c")
        src.execute("INSERT INTO c VALUES (5, 't', 5)")
    for i in range(5):
        src.execute("UPDATE a SET v = %s WHERE id = 1", (f"round {i}",))


def test_snapshot_then_stream_of_several_tables_is_exact(sdk, creds, ends: Ends, anon) -> None:
    _schema(ends)
    with ends.src_conn() as src:
        _seed(src)
    task_id, element = composite_task(sdk, creds, ends)
    mapped = sorted(m.source_table for m in element.mappings)
    assert mapped == ["public.a", "public.b", "public.c"]  # nopk has no key: not mapped
    assert element.mappings_total_count == 3
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: same_rows(ends, *TABLES))
    with ends.src_conn() as src:
        _changes(src)
    wait_for(lambda: same_rows(ends, *TABLES))
    with ends.dst_conn() as dst:
        assert dst.execute("SELECT big = %s, n, f FROM b WHERE id = 1", (BIG,)).fetchone() == (
            True,
            Decimal("-0.0000000001"),
            1e-300,
        )
        assert dst.execute("SELECT v FROM a WHERE id = 1").fetchone() == ("round 4",)
    metrics = anon.get("/metrics").text
    assert f'openfdi_cdc_lag_seconds{{task_id="{task_id}"}}' in metrics
    assert (
        f'openfdi_cdc_changes_applied_total{{kind="DELETE",table="public.a",task_id="{task_id}"}}'
        " 6.0" in metrics
    )
    # monitor-logs tell the running run's counts and lag too, not only when it ends
    running = wait_for(
        lambda: next(
            (log for log in _logs(sdk, creds, task_id)
             if log.execute_status == "RUNNING" and "public.a: delete 6" in (log.remarks or "")),
            None,
        )
    )  # fmt: skip
    assert running.remarks.startswith("running; changes read "), running.remarks
    assert " ms; by table: " in running.remarks, running.remarks

    # Stopped: changes wait in the slot; started again, they arrive exactly once.
    start_stop(sdk, creds, task_id, "stop")
    with ends.src_conn() as src:
        src.execute("INSERT INTO a SELECT g, 'while stopped' FROM generate_series(2000, 2100) g")
        src.execute("DELETE FROM a WHERE id < 5")
        src.execute("ALTER TABLE a ADD COLUMN w jsonb")  # the next run adds it to the target
        src.execute("""UPDATE a SET w = '{"x": [1, 2.0]}' WHERE id = 2000""")
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: same_rows(ends, *TABLES))
    start_stop(sdk, creds, task_id, "stop")
    ended = wait_for(
        lambda: (
            [log for log in _logs(sdk, creds, task_id) if log.execute_status == "CANCELLED"][1:]
            and [log for log in _logs(sdk, creds, task_id) if log.execute_status == "CANCELLED"]
        )
    )  # newest first: the second run, whose remarks count its own changes, per table
    assert "by table: public.a: delete 4, insert 101" in ended[0].remarks, ended[0].remarks


def _logs(sdk, creds, task_id: str) -> list[Any]:  # type: ignore[no-untyped-def]
    reply = sdk.list_monitor_log(
        ListMonitorLogRequest(instance_id=creds.instance_id, task_id=task_id)
    )
    return list(reply.entities)


def test_a_table_added_while_running_is_copied_then_followed_and_ddl_is_followed(
    sdk, creds, ends: Ends
) -> None:
    ends.both("CREATE TABLE t1 (id int PRIMARY KEY, v text)")
    task_id, _ = composite_task(sdk, creds, ends)
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: snapshotted(ends))
    with ends.src_conn() as src:
        src.execute("INSERT INTO t1 VALUES (1, 'one')")
    ends.both("CREATE TABLE t2 (id int PRIMARY KEY, v jsonb)")
    with ends.src_conn() as src:
        src.execute("""INSERT INTO t2 SELECT g, '{"n": 1}' FROM generate_series(1, 100) g""")
    sdk.create_multi_task_mappings(
        CreateMultiTaskMappingsRequest(
            instance_id=creds.instance_id,
            task_id=task_id,
            body=MultiTaskMappingCreateBody(source_table="t2"),
        )
    )
    with ends.src_conn() as src:
        src.execute("UPDATE t2 SET v = '{\"n\": 2}' WHERE id <= 50")
        src.execute("DELETE FROM t2 WHERE id > 90")
    wait_for(lambda: same_rows(ends, "t1", "t2"))

    with ends.src_conn() as src:  # DDL: pgoutput shows it as the table's new shape
        src.execute("ALTER TABLE t1 ADD COLUMN extra numeric(10,3)")
        src.execute("INSERT INTO t1 VALUES (2, 'two', 2.5)")
        src.execute("UPDATE t1 SET extra = -1 WHERE id = 1")
    wait_for(lambda: same_rows(ends, "t1", "t2"))  # the target gained the column by itself
    with ends.dst_conn() as dst:
        assert dst.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 't1'::regclass AND attname = 'extra'"
        ).fetchone() == ("numeric(10,3)",)

    with ends.src_conn() as src:  # a dropped column stops the run, named
        src.execute("ALTER TABLE t1 DROP COLUMN v")
        src.execute("INSERT INTO t1 VALUES (3, 3)")
    failed = wait_for(
        lambda: [log for log in _logs(sdk, creds, task_id) if log.execute_status == "ERROR"]
    )
    assert "source table public.t1 changed shape" in failed[0].remarks
    assert "columns dropped or renamed: v" in failed[0].remarks
    # The next run (the supervisor's, 5 s later) goes on; the target keeps its column v.
    same = "SELECT id, extra FROM t1 ORDER BY id"

    def caught_up() -> bool:
        with ends.src_conn() as src, ends.dst_conn() as dst:
            return bool(src.execute(same).fetchall() == dst.execute(same).fetchall())

    wait_for(caught_up, timeout=60)
    start_stop(sdk, creds, task_id, "stop")


def test_a_run_of_a_stopped_task_catches_up_and_ends(sdk, creds, ends: Ends) -> None:
    ends.both("CREATE TABLE t (id int PRIMARY KEY, v numeric)")
    with ends.src_conn() as src:
        src.execute("INSERT INTO t SELECT g, g / 3.0 FROM generate_series(1, 200) g")
    task_id, _ = composite_task(sdk, creds, ends, ("INSERT", "UPDATE"))
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task_id))
    wait_for(lambda: [log for log in _logs(sdk, creds, task_id) if log.execute_status == "SUCCESS"])
    assert same_rows(ends, "t")
    with ends.src_conn() as src:
        src.execute("UPDATE t SET v = -v WHERE id % 2 = 0")
        src.execute("DELETE FROM t WHERE id > 100")  # DELETE is not among the task's kinds
        src.execute("INSERT INTO t VALUES (1000, 1)")
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task_id))
    logs = wait_for(
        lambda: [log for log in _logs(sdk, creds, task_id) if log.execute_status == "SUCCESS"][1:]
    )
    newest = max(logs + [log for log in _logs(sdk, creds, task_id)], key=lambda log: log.start_time)
    assert "applied 101 (by kind: insert 1, update 100)" in newest.remarks
    kept = "SELECT t::text FROM t WHERE id <= 100 OR id = 1000 ORDER BY id"
    with ends.src_conn() as src, ends.dst_conn() as dst:
        assert dst.execute(kept).fetchall() == src.execute(kept).fetchall()
        assert dst.execute("SELECT count(*) FROM t").fetchone() == (201,)  # deletes not applied
