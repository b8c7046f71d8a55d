"""Hostile folders on FTP and SFTP servers and races on a local folder: a REALTIME task polling
an FTP folder sees the files dropped while it runs; a file name holding a line break (which
splits the FTP listing's line) costs that file only; a file removed between the listing and its
read fails the run naming it; a FIFO put in a file's place after the listing fails at once
instead of hanging the run for ever; a stop ends a run whose FTP server stalls a transfer within
the deadline."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from huaweicloudsdkroma.v2 import (
    BatchStartOrStopTasksRequest,
    OperateTasksBean,
    StopTaskRequest,
    TaskBean,
)
from pyftpdlib import handlers

from openfdi.connectors.errors import ConnectorError
from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import Batch, ReadPlan
from tests.engine.conftest import create_task, wait_for
from tests.files.servers import Server
from tests.files.test_file_tasks import _datasource, _pg, _run, _sql
from tests.messages.test_message_tasks import _finished
from tests.messages.test_message_tasks import _run as _start

FIELDS = [{"name": "id", "type": "bigint"}, {"name": "note", "type": "text"}]


def _ids(schema: str) -> list[int]:
    exists = _sql(f"SELECT to_regclass('\"{schema}\".t') IS NOT NULL")[0][0]
    return [r[0] for r in _sql(f'SELECT id FROM "{schema}".t ORDER BY id')] if exists else []


def _drop(folder: Path, name: str, text: str, age_s: float) -> None:
    (folder / name).write_text(text)
    when = time.time() - age_s
    os.utime(folder / name, (when, when))


@pytest.mark.parametrize("protocol", ["ftp", "sftp"])
def test_a_realtime_task_on_a_server_folder_reads_the_files_dropped_while_it_runs(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str,
    request: pytest.FixtureRequest, protocol: str,
) -> None:  # fmt: skip
    """FTP: fsspec kept the folder's first listing for the connector's life, and a REALTIME run
    keeps its connector: t_2 never arrived (SFTP lists afresh: it held)."""
    server: Server = request.getfixturevalue(protocol)
    _drop(server.root, "t_1.csv", "id,note\n1,a\n", 60)
    remote = _datasource(signed, base_path, "FTP", server.content)
    detail = {"sourceSelectedDatasource": {"table": "t", "incremental": {"column": "_file_mtime"},
                                           "message": {"fields": FIELDS, "min_age_seconds": 0}},
              "targetSelectedDatasource": {"table": "t"}}  # fmt: skip
    task = create_task(sdk, creds, remote, _pg(signed, base_path, pg_schema), detail, "REALTIME")
    batch = BatchStartOrStopTasksRequest(instance_id=creds.instance_id,
        body=OperateTasksBean(action_id="start", list=[TaskBean(task_id=task)]))  # fmt: skip
    sdk.batch_start_or_stop_tasks(batch)
    try:
        wait_for(lambda: _ids(pg_schema) == [1], timeout=30)
        time.sleep(1.5)  # at least one more poll of the folder as it was
        _drop(server.root, "t_2.csv", "id,note\n2,b\n", 30)
        wait_for(lambda: _ids(pg_schema) == [1, 2], timeout=15)
    finally:
        batch.body.action_id = "stop"
        sdk.batch_start_or_stop_tasks(batch)
        log = wait_for(lambda: _finished(sdk, creds, task), timeout=30)
    assert log.execute_status == "CANCELLED", log.remarks


@pytest.mark.parametrize("protocol", ["ftp", "sftp"])
def test_a_name_with_a_line_break_costs_that_file_only(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str,
    request: pytest.FixtureRequest, protocol: str,
) -> None:  # fmt: skip
    """FTP: the name split its MLSD line in two and fsspec's listing failed on the half without
    facts: every run on the folder ended "internal error: 'type'". Now FTP skips that entry
    (it cannot be named over FTP); SFTP reads it."""
    server: Server = request.getfixturevalue(protocol)
    for i, name in enumerate(["t with spaces ü.csv", "-t.csv", "t_empty.csv", "t\nbreak.csv"]):
        (server.root / name).write_text("" if "empty" in name else f"id,note\n{i},{name!r}\n")
    remote = _datasource(signed, base_path, "FTP", server.content)
    detail = {"sourceSelectedDatasource": {"table": "t", "message": {
                  "fields": FIELDS, "min_age_seconds": 0, "pattern": "*t*.csv"}},
              "targetSelectedDatasource": {"table": "t"}}  # fmt: skip
    log = _run(
        sdk, creds, create_task(sdk, creds, remote, _pg(signed, base_path, pg_schema), detail)
    )
    assert log.execute_status == "SUCCESS", log.remarks
    assert _ids(pg_schema) == ([0, 1] if protocol == "ftp" else [0, 1, 3])


def _source(kind: str, content: dict[str, Any]) -> Any:
    source = Registry.discover().open(kind, content)
    source.configure({"fields": FIELDS, "min_age_seconds": 0, "pattern": "t_*.csv"})
    return source


@pytest.mark.parametrize("where", ["local", "ftp", "sftp"])
def test_a_file_removed_after_the_listing_fails_the_run_naming_it(
    request: pytest.FixtureRequest, tmp_path: Path, where: str
) -> None:
    """Connector level, to remove the file exactly between the listing and its read. Before:
    "FTP: error_perm: 550 No such file or directory." (which file?)."""
    if where == "local":
        folder, kind, content = tmp_path, "FILE", {"address": str(tmp_path)}
    else:
        server: Server = request.getfixturevalue(where)
        folder, kind, content = server.root, "FTP", server.content
    (folder / "t_1.csv").write_text("id,note\n1,a\n")
    (folder / "t_2.csv").write_text("id,note\n2,b\n")
    with _source(kind, content) as source:
        batches = source.read(ReadPlan("t"))
        first: Batch = next(batches)  # listed, and t_1 read
        assert first.rows == [(1, "a")]
        (folder / "t_2.csv").unlink()
        with pytest.raises(ConnectorError) as caught:
            list(batches)
    assert "file 't_2.csv' (removed after the folder was listed?)" in caught.value.message


def test_a_fifo_put_in_a_files_place_after_the_listing_fails_instead_of_hanging(
    tmp_path: Path,
) -> None:
    """Opening a FIFO waits for a writer: the run's thread hung in open(), where no stop or
    deadline reaches it."""
    (tmp_path / "t_1.csv").write_text("id,note\n1,a\n")
    (tmp_path / "t_2.csv").write_text("id,note\n2,b\n")
    failed: list[BaseException] = []

    def read() -> None:
        with _source("FILE", {"address": str(tmp_path)}) as source:
            batches = source.read(ReadPlan("t"))
            next(batches)
            (tmp_path / "t_2.csv").unlink()
            os.mkfifo(tmp_path / "t_2.csv")
            try:
                list(batches)
            except ConnectorError as exc:
                failed.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    hung = reader.is_alive()
    if hung:  # release it: opening the FIFO for writing too lets its open() return
        os.close(os.open(tmp_path / "t_2.csv", os.O_RDWR))
        reader.join(5)
    assert not hung, "the read hung opening the FIFO"
    assert len(failed) == 1
    assert "file 't_2.csv': not a regular file any more" in str(failed[0])


@pytest.mark.parametrize("protocol", ["ftp", "ftps"])
def test_a_stop_ends_a_run_whose_ftp_server_stalls_within_the_deadline(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str,
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, protocol: str,
) -> None:  # fmt: skip
    """The server answers RETR only after 20 s. Before, the run's thread stayed blocked on the
    control connection: the stop took 3 s and ended "the executor abandoned a statement that
    ignored cancellation", the thread still waiting. Now `cancel()` shuts the connections."""
    asked, release = threading.Event(), threading.Event()
    retr = handlers.FTPHandler.ftp_RETR

    def stalled(handler: Any, file: str) -> Any:
        asked.set()
        release.wait(20)
        return retr(handler, file)

    monkeypatch.setattr(handlers.FTPHandler, "ftp_RETR", stalled)
    server: Server = request.getfixturevalue(protocol)
    _drop(server.root, "t.csv", "id,note\n1,a\n", 60)
    remote = _datasource(signed, base_path, "FTP", server.content)
    detail = {"sourceSelectedDatasource": {"table": "t", "message": {"min_age_seconds": 0}},
              "targetSelectedDatasource": {"table": "t"}}  # fmt: skip
    task = create_task(sdk, creds, remote, _pg(signed, base_path, pg_schema), detail)
    try:
        _start(sdk, creds, task)
        assert asked.wait(20)
        stopped = time.monotonic()
        sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=task))
        log = wait_for(lambda: _finished(sdk, creds, task), timeout=30, interval=0.05)
        took = time.monotonic() - stopped
    finally:
        release.set()
    assert log.execute_status == "CANCELLED", log.remarks
    assert "abandoned" not in log.remarks, log.remarks
    assert took < 2.0, took
