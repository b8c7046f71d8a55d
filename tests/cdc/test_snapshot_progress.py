"""A snapshot is one target transaction (committed with its position), so it shows its progress
while it copies (the run's remarks, live) and a stop ends it at the next chunk, rolled back and
made again, exactly, at the next start. Through the SDK, PostgreSQL to PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from huaweicloudsdkroma.v2 import ListMonitorLogRequest

from openfdi.engine import cdc as cdc_engine
from openfdi.store import runs
from tests.cdc.conftest import Ends, composite_task, same_rows, start_stop, wait_for

ROWS = 200_000  # about 9 MB of binary COPY: several 1 MB chunks


def _logs(sdk: Any, creds: Any, task_id: str) -> list[Any]:
    reply = sdk.list_monitor_log(
        ListMonitorLogRequest(instance_id=creds.instance_id, task_id=task_id, limit=10)
    )
    return list(reply.entities or [])


def test_a_snapshot_shows_its_progress_and_a_stop_rolls_it_back(
    sdk, creds, ends: Ends, monkeypatch: pytest.MonkeyPatch
) -> None:
    ends.both("CREATE TABLE big (id bigint PRIMARY KEY, v text)")
    with ends.src_conn() as src:
        src.execute(f"INSERT INTO big SELECT g, 'value ' || g FROM generate_series(1, {ROWS}) g")
    task_id, _ = composite_task(sdk, creds, ends)

    # Every chunk shows (not every second), and each remark written is kept. The first one
    # stops the task: the copy must end at its next chunk, rolled back.
    monkeypatch.setattr(cdc_engine, "SNAPSHOT_PROGRESS_S", 0.0)
    shown: list[str] = []
    real = runs.record_progress

    def record(conn: Any, claim: Any, progress: Any, position: str) -> None:
        shown.append(progress.remarks)
        if len(shown) == 1:
            threading.Thread(target=start_stop, args=(sdk, creds, task_id, "stop")).start()
        real(conn, claim, progress, position)

    monkeypatch.setattr(runs, "record_progress", record)
    start_stop(sdk, creds, task_id, "start")
    stopped = wait_for(
        lambda: [x for x in _logs(sdk, creds, task_id) if x.execute_status != "RUNNING"]
    )
    assert stopped[0].execute_status == "CANCELLED", stopped[0].remarks
    assert stopped[0].remarks.startswith("stopped while copying public.big"), stopped[0].remarks
    assert shown[0].startswith("running; copying the snapshot (table 1 of 1, public.big: ")
    assert " rows so far); changes read 0" in shown[0], shown[0]
    with ends.dst_conn() as dst:
        assert dst.execute("SELECT count(*) FROM big").fetchone() == (0,)  # rolled back

    monkeypatch.setattr(runs, "record_progress", real)
    shown.clear()
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: same_rows(ends, "big"), timeout=60)
    start_stop(sdk, creds, task_id, "stop")
    ended = wait_for(
        lambda: (
            [x for x in _logs(sdk, creds, task_id) if x.execute_status != "RUNNING"][1:]
            and _logs(sdk, creds, task_id)
        )
    )
    assert "copying" not in ended[0].remarks, ended[0].remarks
    assert f"snapshot {ROWS}" in ended[0].remarks, ended[0].remarks
