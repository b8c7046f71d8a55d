"""monitor-logs fills `detail_logs` as a ROMA server does: the run's reader and writer steps with
their status codes, counts, times and plugin names, read through the official SDK (issue 10
item 13)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from huaweicloudsdkroma.v2 import (
    Content,
    CreateDatasourceInfoRequest,
    DatasourceInfo,
    RunTaskRequest,
    TaskMonitorDetailLog,
)

from tests.engine.conftest import create_task, monitor_logs, wait_for
from tests.factories import unique

COPY = {
    "sourceSelectedDatasource": {"table": "orders"},
    "targetSelectedDatasource": {"table": "orders_copy"},
}


def _datasource(sdk, creds, path: Path) -> str:  # type: ignore[no-untyped-def]
    return str(
        sdk.create_datasource_info(
            CreateDatasourceInfoRequest(
                instance_id=creds.instance_id,
                body=DatasourceInfo(
                    datasource_name=unique("ds"),
                    datasource_type="SQLITE",
                    content=Content(database_name=str(path)),
                ),
            )
        ).datasource_id
    )


def _run_once(sdk, creds, src: Path, dst: Path):  # type: ignore[no-untyped-def]
    task = create_task(
        sdk, creds, _datasource(sdk, creds, src), _datasource(sdk, creds, dst), COPY, "TIMING"
    )
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))

    def finished():  # type: ignore[no-untyped-def]
        logs = monitor_logs(sdk, creds, task)
        return logs[0] if logs and logs[0].execute_status != "RUNNING" else None

    return wait_for(finished)


def _steps(log):  # type: ignore[no-untyped-def]
    assert all(isinstance(s, TaskMonitorDetailLog) for s in log.detail_logs)
    reader, writer = log.detail_logs
    assert (reader.position, reader.stage, writer.position, writer.stage) == (
        "READER",
        "sqlitereader",
        "WRITER",
        "sqlitewriter",
    )
    assert len(reader.id) == len(writer.id) == 32
    assert reader.id != writer.id
    for step in (reader, writer):
        assert (step.step_begin_time, step.step_end_time) == (log.start_time, log.end_time)
        assert step.data_size_unit
    return reader, writer


def test_a_successful_run_shows_its_reader_and_writer(sdk, creds, sqlite_file) -> None:  # type: ignore[no-untyped-def]
    src, dst = sqlite_file("src"), sqlite_file("dst")
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(i, f"n{i}") for i in range(300)])
    log = _run_once(sdk, creds, src, dst)
    assert log.execute_status == "SUCCESS"
    reader, writer = _steps(log)
    assert (reader.status, reader.position_status, reader.data_count) == (104, "NODE_END", 300)
    assert (writer.status, writer.position_status, writer.data_count) == (504, "TASK_END", 300)
    assert (writer.dirty_data_count, reader.spend_time, writer.spend_time) == (
        0,
        log.read_spend_time,
        log.write_spend_time,
    )


def test_a_run_that_read_nothing_says_so(sdk, creds, sqlite_file) -> None:  # type: ignore[no-untyped-def]
    src, dst = sqlite_file("src"), sqlite_file("dst")
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT)")
    log = _run_once(sdk, creds, src, dst)
    reader, writer = _steps(log)
    assert (reader.status, reader.data_count, writer.status) == (105, 0, 504)


def test_a_failed_run_shows_both_steps_interrupted_with_the_reason(sdk, creds, sqlite_file) -> None:  # type: ignore[no-untyped-def]
    log = _run_once(sdk, creds, sqlite_file("src"), sqlite_file("dst"))  # no table "orders"
    assert log.execute_status == "ERROR"
    reader, writer = _steps(log)
    assert (reader.status, writer.status) == (107, 506)
    assert reader.position_status == writer.position_status == log.position_status
    assert "orders" in reader.remarks
    assert reader.remarks == writer.remarks == log.remarks
