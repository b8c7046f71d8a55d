"""Tasks really move rows: run, terminate, REALTIME follow and stop, single flight, monitor logs.

Driven through the official SDK against a live server with the engine on.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkroma.v2 import (
    BatchStartOrStopTasksRequest,
    Content,
    CreateDatasourceInfoRequest,
    DatasourceInfo,
    OperateTasksBean,
    RunTaskRequest,
    StopTaskRequest,
    TaskBean,
)
from sqlalchemy import select

from openfdi.store.tables import RunRow
from tests.engine.conftest import create_task, monitor_logs, wait_for
from tests.factories import unique


def _orders(path: Path, ids: range) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer TEXT,"
            " amount NUMERIC(12,2), paid BOOLEAN)"
        )
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            [(i, f"c-{i}", f"{i}.25", i % 2) for i in ids],
        )


def _rows(path: Path, table: str) -> list[tuple[object, ...]]:
    """The table's rows by key; none while the run has not created the table yet."""
    with sqlite3.connect(path) as conn:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        if exists is None:
            return []
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def _datasource(sdk, creds, path: Path) -> str:  # type: ignore[no-untyped-def]
    reply = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(
            instance_id=creds.instance_id,
            body=DatasourceInfo(
                datasource_name=unique("ds"),
                datasource_type="SQLITE",
                content=Content(database_name=str(path)),
            ),
        )
    )
    return str(reply.datasource_id)


def _task(sdk, creds, source: str, target: str, task_type: str, detail: dict) -> str:  # type: ignore[no-untyped-def, type-arg]
    return create_task(sdk, creds, source, target, detail, task_type)


def _logs(sdk, creds, task_id: str) -> list:  # type: ignore[no-untyped-def, type-arg]
    return monitor_logs(sdk, creds, task_id)


def _finished(sdk, creds, task_id: str):  # type: ignore[no-untyped-def]
    logs = _logs(sdk, creds, task_id)
    return logs[0] if logs and logs[0].execute_status != "RUNNING" else None


UPSERT = {
    "sourceSelectedDatasource": {"table": "orders"},
    "targetSelectedDatasource": {
        "table": "orders_copy",
        "writeMode": "upsert",
        "keyColumns": ["id"],
    },
}


def test_run_copies_every_row_and_reports_it(sdk, creds, sqlite_file) -> None:
    src, dst = sqlite_file("src"), sqlite_file("dst")
    _orders(src, range(1, 2501))
    task = _task(
        sdk, creds, _datasource(sdk, creds, src), _datasource(sdk, creds, dst), "TIMING", UPSERT
    )

    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    log = wait_for(lambda: _finished(sdk, creds, task))
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 2500, 0)
    assert log.position_status == "TASK_END"
    assert _rows(dst, "orders_copy") == _rows(src, "orders")
    assert Decimal(str(_rows(dst, "orders_copy")[0][2])) == Decimal("1.25")

    # Upsert: a second run leaves exactly the source's rows.
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    wait_for(lambda: len(_logs(sdk, creds, task)) == 2 and _finished(sdk, creds, task))
    assert _rows(dst, "orders_copy") == _rows(src, "orders")


def test_a_second_run_while_one_is_in_progress_is_refused(sdk, creds, sqlite_file, runtime) -> None:
    src, dst = sqlite_file("src"), sqlite_file("dst")
    _orders(src, range(1, 200_001))
    task = _task(
        sdk, creds, _datasource(sdk, creds, src), _datasource(sdk, creds, dst), "TIMING", UPSERT
    )
    codes: list[object] = []
    barrier = threading.Barrier(6)

    def run() -> None:
        barrier.wait()
        try:
            sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
            codes.append(200)
        except exceptions.ClientRequestException as exc:
            codes.append(exc.error_code)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, codes)) == ["200"] + ["FDI.3023"] * 5
    with runtime.db.read() as session:
        states = session.scalars(select(RunRow.state).where(RunRow.task_id == task)).all()
    assert len(states) == 1
    sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=task))
    wait_for(lambda: _finished(sdk, creds, task))


def test_terminate_mid_copy_cancels_promptly_and_loses_nothing(sdk, creds, sqlite_file) -> None:
    src, dst = sqlite_file("src"), sqlite_file("dst")
    _orders(src, range(1, 300_001))
    task = _task(
        sdk, creds, _datasource(sdk, creds, src), _datasource(sdk, creds, dst), "TIMING", UPSERT
    )

    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    wait_for(
        lambda: (_logs(sdk, creds, task) or [None])[0] and _logs(sdk, creds, task)[0].data_count > 0
    )
    reply = sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=task))
    assert reply.message == "success"
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=5)
    assert log.execute_status == "CANCELLED"
    assert 0 < log.data_count < 300_000
    assert len(_rows(dst, "orders_copy")) == log.data_count  # what was counted was committed

    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    wait_for(lambda: len(_logs(sdk, creds, task)) == 2 and _finished(sdk, creds, task), timeout=60)
    assert _rows(dst, "orders_copy") == _rows(src, "orders")


def test_realtime_task_follows_new_rows_and_stops_on_batch_stop(sdk, creds, sqlite_file) -> None:
    src, dst = sqlite_file("src"), sqlite_file("dst")
    _orders(src, range(1, 101))
    detail = {
        "sourceSelectedDatasource": {"table": "orders", "incremental": {"column": "id"}},
        "targetSelectedDatasource": {"table": "orders_live"},
        "mappingTable": [{"sourceField": "customer", "targetField": "buyer"}],
    }
    task = _task(
        sdk, creds, _datasource(sdk, creds, src), _datasource(sdk, creds, dst), "REALTIME", detail
    )

    def batch(action: str) -> None:
        sdk.batch_start_or_stop_tasks(
            BatchStartOrStopTasksRequest(
                instance_id=creds.instance_id,
                body=OperateTasksBean(action_id=action, list=[TaskBean(task_id=task)]),
            )
        )

    batch("start")
    wait_for(lambda: len(_rows(dst, "orders_live")) == 100)
    _orders(src, range(101, 151))
    wait_for(lambda: len(_rows(dst, "orders_live")) == 150)
    with sqlite3.connect(dst) as conn:
        assert conn.execute("SELECT buyer FROM orders_live WHERE id = 150").fetchone() == ("c-150",)

    batch("stop")
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=5)
    assert (log.execute_status, log.data_count) == ("CANCELLED", 150)

    # Started again, it resumes from its checkpoint: nothing copied twice (plain insert).
    _orders(src, range(151, 161))
    batch("start")
    wait_for(lambda: len(_rows(dst, "orders_live")) == 160)
    assert [r[0] for r in _rows(dst, "orders_live")] == list(range(1, 161))
    batch("stop")
    wait_for(lambda: _finished(sdk, creds, task), timeout=5)


def test_a_run_against_a_missing_table_fails_with_a_clear_remark(sdk, creds, sqlite_file) -> None:
    src, dst = sqlite_file("src"), sqlite_file("dst")
    task = _task(
        sdk, creds, _datasource(sdk, creds, src), _datasource(sdk, creds, dst), "TIMING", UPSERT
    )
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    log = wait_for(lambda: _finished(sdk, creds, task))
    assert log.execute_status == "ERROR"
    assert "orders" in log.remarks


PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres?options=-csearch_path%3D{schema}"
CREATE = "CREATE TABLE orders (id bigint primary key, name varchar(40), amount {num}, flag boolean)"


@pytest.mark.parametrize(
    ("source_kind", "target_kind"), [("postgres", "mysql"), ("mysql", "postgres")]
)
def test_copy_between_postgresql_and_mariadb(
    sdk, creds, signed, base_path, pg_schema, mysql_database, source_kind: str, target_kind: str
) -> None:
    import psycopg
    import pymysql

    rows = [(i, f"name-{i} ü", Decimal(f"{i}.10"), i % 3 == 0) for i in range(1, 1001)]
    if source_kind == "postgres":
        with psycopg.connect(PG_URL.format(schema=pg_schema), autocommit=True) as conn:
            conn.execute(CREATE.format(num="numeric(12,2)"))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO orders VALUES (%s, %s, %s, %s)", rows)
    else:
        conn = pymysql.connect(host="127.0.0.1", user="root", database=mysql_database)
        with conn.cursor() as cur:
            cur.execute(CREATE.format(num="decimal(12,2)"))
            cur.executemany("INSERT INTO orders VALUES (%s, %s, %s, %s)", rows)
        conn.commit()
        conn.close()

    # Raw HTTP for the data sources: `schema` is openfdi's own content key (not in the SDK).
    contents = {
        "postgres": {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
                     "user_name": "postgres", "password": "unused", "schema": pg_schema},
        "mysql": {"host": "127.0.0.1", "port": "3306", "database_name": mysql_database,
                  "user_name": "root", "password": ""},
    }  # fmt: skip
    kinds = {"postgres": "POSTGRESQL", "mysql": "MYSQL"}
    ids = {}
    for kind in (source_kind, target_kind):
        body = {"datasource_name": unique("ds"), "datasource_type": kinds[kind]}
        reply = signed.post(f"{base_path}/datasources", json={**body, "content": contents[kind]})
        assert reply.status_code == 201, reply.text
        ids[kind] = reply.json()["datasource_id"]

    task = _task(sdk, creds, ids[source_kind], ids[target_kind], "TIMING", UPSERT)
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 1000), log.remarks

    query = "SELECT id, name, amount, flag FROM orders_copy ORDER BY id"
    if target_kind == "postgres":
        with psycopg.connect(PG_URL.format(schema=pg_schema)) as conn:
            copied = [tuple(r) for r in conn.execute(query).fetchall()]
    else:
        conn = pymysql.connect(host="127.0.0.1", user="root", database=mysql_database)
        with conn.cursor() as cur:
            cur.execute(query)
            copied = [(i, n, a, bool(f)) for i, n, a, f in cur.fetchall()]
        conn.close()
    assert copied == rows


def test_a_statement_that_ignores_stop_is_cancelled_at_the_deadline(
    sdk, creds, signed, base_path, pg_schema, sqlite_file
) -> None:
    import time

    import psycopg

    with psycopg.connect(PG_URL.format(schema=pg_schema), autocommit=True) as conn:
        conn.execute("CREATE TABLE slow (id bigint primary key)")
        conn.execute("INSERT INTO slow SELECT generate_series(1, 3)")
    content = {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
               "user_name": "postgres", "password": "unused", "schema": pg_schema}  # fmt: skip
    body = {"datasource_name": unique("pg"), "datasource_type": "POSTGRESQL", "content": content}
    source = signed.post(f"{base_path}/datasources", json=body).json()["datasource_id"]
    detail = {
        # Each row takes 5 s to read: no batch boundary comes before the deadline.
        "sourceSelectedDatasource": {"table": "slow", "where": "pg_sleep(5) IS NOT NULL"},
        "targetSelectedDatasource": {"table": "slow_copy"},
    }
    target = _datasource(sdk, creds, sqlite_file("dst"))
    task = _task(sdk, creds, source, target, "TIMING", detail)
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    time.sleep(0.5)
    asked = time.time()
    sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=task))
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=10)
    assert log.execute_status == "CANCELLED"
    assert "deadline" in log.remarks
    assert log.end_time / 1000 - asked < 3  # 1 s deadline, plus the cancel's round trip


def test_rows_the_target_refuses_are_counted_and_kept_with_the_reason(
    sdk, creds, signed, base_path, sqlite_file
) -> None:
    src, dst = sqlite_file("src"), sqlite_file("dst")
    _orders(src, range(1, 101))
    with sqlite3.connect(dst) as conn:
        conn.execute(
            "CREATE TABLE orders_copy (id INTEGER PRIMARY KEY, customer TEXT,"
            " amount NUMERIC(12,2) CHECK (amount < 90), paid BOOLEAN)"
        )
    task = _task(
        sdk, creds, _datasource(sdk, creds, src), _datasource(sdk, creds, dst), "TIMING", UPSERT
    )
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    log = wait_for(lambda: _finished(sdk, creds, task))
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 89, 11)
    assert [r[0] for r in _rows(dst, "orders_copy")] == list(range(1, 90))

    dirty = signed.get(f"{base_path}/tasks/{task}/runs/{log.id}/dirty-data", params={"limit": 50})
    assert dirty.status_code == 200
    body = dirty.json()
    assert body["total"] == 11
    assert json.loads(body["entities"][0]["row"])[0] == 90
    assert "CHECK" in body["entities"][0]["reason"]


MILLIONS = 2_000_000


def test_terminating_a_multi_million_row_copy_cancels_promptly_and_the_next_run_completes_it(
    sdk, creds, signed, base_path, pg_schema
) -> None:
    """Issue 3: terminate mid-copy of a multi-million-row table; the upsert run after it
    leaves the target with exactly the source's rows (compared in the database, both ways)."""
    import time

    import psycopg

    url = PG_URL.format(schema=pg_schema)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE big (id bigint primary key, name varchar(32), amount numeric(12,2),"
            " at timestamptz, flag boolean)"
        )
        conn.execute(
            "INSERT INTO big SELECT i, 'row ' || i, i / 100.0,"
            " timestamptz '2026-01-01' + i * interval '1.000001 second', i % 2 = 0"
            f" FROM generate_series(1, {MILLIONS}) AS i"
        )
    content = {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
               "user_name": "postgres", "password": "unused", "schema": pg_schema}  # fmt: skip
    body = {"datasource_name": unique("pg"), "datasource_type": "POSTGRESQL", "content": content}
    datasource = signed.post(f"{base_path}/datasources", json=body).json()["datasource_id"]
    upsert = {"table": "big_copy", "writeMode": "upsert", "keyColumns": ["id"]}
    detail = {"sourceSelectedDatasource": {"table": "big"}, "targetSelectedDatasource": upsert}
    task = _task(sdk, creds, datasource, datasource, "TIMING", detail)

    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    wait_for(
        lambda: (_logs(sdk, creds, task) or [None])[0] and _logs(sdk, creds, task)[0].data_count > 0
    )
    asked = time.time()
    sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=task))
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=10)
    assert log.execute_status == "CANCELLED", log.remarks
    assert log.end_time / 1000 - asked < 2.5  # the 1 s stop deadline, plus a round trip
    assert 0 < log.data_count < MILLIONS
    with psycopg.connect(url) as conn:
        copied = conn.execute("SELECT count(*) FROM big_copy").fetchone()
    assert copied == (log.data_count,)  # what was counted was committed, and nothing more

    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    last = wait_for(
        lambda: len(_logs(sdk, creds, task)) == 2 and _finished(sdk, creds, task), timeout=120
    )
    assert (last.execute_status, last.data_count) == ("SUCCESS", MILLIONS), last.remarks
    with psycopg.connect(url) as conn:
        differ = conn.execute(
            "SELECT (SELECT count(*) FROM (TABLE big EXCEPT ALL TABLE big_copy) AS missing),"
            " (SELECT count(*) FROM (TABLE big_copy EXCEPT ALL TABLE big) AS extra)"
        ).fetchone()
    assert differ == (0, 0)


def test_a_realtime_pass_through_follows_new_rows_and_resumes_without_duplicates(
    sdk, creds, signed, base_path, sqlite_file, mysql_database, monkeypatch
) -> None:
    """SQLite to MariaDB in the text form (the engine's pass-through), polled past the watermark."""
    import pymysql

    from openfdi.connectors.sqlite.connector import SqliteConnector

    slices = []
    read_raw = SqliteConnector.read_raw

    def spy(self, plan, form):  # type: ignore[no-untyped-def]
        for raw in read_raw(self, plan, form):
            slices.append(raw)
            yield raw

    monkeypatch.setattr(SqliteConnector, "read_raw", spy)
    src = sqlite_file("src")
    _orders(src, range(1, 101))
    content = {"host": "127.0.0.1", "port": "3306", "database_name": mysql_database,
               "user_name": "root", "password": ""}  # fmt: skip
    body = {"datasource_name": unique("ds"), "datasource_type": "MYSQL", "content": content}
    reply = signed.post(f"{base_path}/datasources", json=body)
    assert reply.status_code == 201, reply.text
    detail = {
        "sourceSelectedDatasource": {"table": "orders", "incremental": {"column": "id"}},
        "targetSelectedDatasource": {"table": "orders_live"},
    }
    task = _task(
        sdk, creds, _datasource(sdk, creds, src), reply.json()["datasource_id"], "REALTIME", detail
    )

    def copied() -> list[tuple[object, ...]]:
        conn = pymysql.connect(host="127.0.0.1", user="root", database=mysql_database)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW TABLES LIKE 'orders_live'")
                if not cur.fetchall():
                    return []
                cur.execute("SELECT id, customer, amount, paid FROM orders_live ORDER BY id")
                return [(i, c, a, bool(p)) for i, c, a, p in cur.fetchall()]
        finally:
            conn.close()

    def batch(action: str) -> None:
        sdk.batch_start_or_stop_tasks(
            BatchStartOrStopTasksRequest(
                instance_id=creds.instance_id,
                body=OperateTasksBean(action_id=action, list=[TaskBean(task_id=task)]),
            )
        )

    batch("start")
    wait_for(lambda: len(copied()) == 100)
    _orders(src, range(101, 151))
    wait_for(lambda: len(copied()) == 150)
    batch("stop")
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=5)
    assert (log.execute_status, log.data_count) == ("CANCELLED", 150)

    _orders(src, range(151, 161))
    batch("start")
    wait_for(lambda: len(copied()) == 160)
    batch("stop")
    wait_for(lambda: _finished(sdk, creds, task), timeout=5)
    # Plain inserts: a row read twice would show twice. The amounts kept their scale.
    assert copied() == [(i, f"c-{i}", Decimal(f"{i}.25"), i % 2 == 1) for i in range(1, 161)]
    assert slices  # the rows moved as text, not through the row path
