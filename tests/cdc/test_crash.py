"""kill -9 under load, of the source server and of openfdi itself: after catch-up the target's
audit trail equals the source's change for change (nothing lost, nothing applied twice)."""

from __future__ import annotations

import tempfile
import time
from typing import Any

import pytest

from openfdi.client import signed_client
from tests.cdc.conftest import Ends, composite_task, start_stop, wait_for
from tests.cdc.load import Load, audited_table, snapshotted, trails
from tests.e2e.process import Served

PROJECT = "c4a5d4098fb4474fa22cd05f897d6b99"
INSTANCE = "5f2b6c1e-8a4d-4f6e-9b1a-2c3d4e5f6a7b"
AK, SK = "CDCCRASHAK0000000001", "cdcCrashSecretKey0000000000000000000001"
ENV = {
    "OPENFDI_BOOTSTRAP_PROJECT_ID": PROJECT,
    "OPENFDI_BOOTSTRAP_INSTANCE_ID": INSTANCE,
    "OPENFDI_BOOTSTRAP_AK": AK,
    "OPENFDI_BOOTSTRAP_SK": SK,
    "OPENFDI_LEASE_SECONDS": "2",  # a dead server's runs are given up after 2 s
    "OPENFDI_POLL_INTERVAL_SECONDS": "0.2",
    "OPENFDI_SQLITE_ROOTS": tempfile.gettempdir(),
}
BASE = f"/v2/{PROJECT}/fdi/instances/{INSTANCE}"


def start_composite_over_http(
    served: Served, ends: list[tuple[str, dict[str, Any]]], name: str
) -> str:
    """Data sources of the two (type, content) ends, init with auto-mapping, create and start,
    over raw signed HTTP (the server is another process): the task id."""
    with signed_client(served.url, AK, SK, PROJECT) as client:
        ids = []
        for kind, content in ends:
            reply = client.post(
                f"{BASE}/datasources",
                json={"datasource_name": f"{name}-{kind.lower()}-{len(ids)}",
                      "datasource_type": kind, "content": content},
            )  # fmt: skip
            assert reply.status_code == 201, reply.text
            ids.append(reply.json()["datasource_id"])
        init = client.post(
            f"{BASE}/multi-tasks/init",
            json={"source_datasource_id": ids[0], "target_datasource_id": ids[1],
                  "auto_mapping": True},
        )  # fmt: skip
        assert init.status_code == 200, init.text
        task_id = str(init.json()[0]["task_id"])
        created = client.post(
            f"{BASE}/multi-tasks",
            json={"task_name": name, "task_id": task_id, "task_type": "REALTIME",
                  "operation_types": ["INSERT", "UPDATE", "DELETE"]},
        )  # fmt: skip
        assert created.status_code == 200, created.text
        started = client.post(
            f"{BASE}/batch-operation/tasks",
            json={"action_id": "start", "list": [{"task_id": task_id}]},
        )
        assert started.json()["success_count"] == 1, started.text
    return task_id


def _caught_up(ends: Ends) -> bool:
    source, target = trails(ends)
    return len(source) == len(target)


@pytest.mark.slow
def test_kill_9_of_the_source_server_mid_stream_loses_and_duplicates_nothing(
    sdk, creds, ends: Ends
) -> None:
    audited_table(ends)
    task_id, element = composite_task(sdk, creds, ends)
    assert [m.source_table for m in element.mappings] == ["public.ev"]
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: snapshotted(ends))  # the trails start after the (empty) table's copy
    load = Load(ends)
    load.start()
    try:
        for _ in range(2):
            wait_for(lambda: load.committed > 200, timeout=30)
            time.sleep(0.5)
            ends.pg.kill9()
            load.committed = 0
        wait_for(lambda: load.committed > 100, timeout=30)
    finally:
        load.finish()
    wait_for(lambda: _caught_up(ends), timeout=60)
    source, target = trails(ends)
    assert len(source) > 300
    assert target == source
    start_stop(sdk, creds, task_id, "stop")


@pytest.mark.slow
def test_kill_9_of_openfdi_mid_stream_loses_and_duplicates_nothing(ends: Ends, tmp_path) -> None:
    """Three kill -9s of a real `openfdi serve` under load: each restart resumes the started
    task from the position committed with the rows."""
    audited_table(ends)
    served = Served(tmp_path, demo=False, env=ENV)
    served.start()
    load = Load(ends)
    try:
        ends_ = [("POSTGRESQL", ends.pg.content(db)) for db in (ends.src, ends.dst)]
        start_composite_over_http(served, ends_, "cdc-crash")
        wait_for(lambda: snapshotted(ends), timeout=60)
        load.start()
        for _ in range(3):
            applied = len(trails(ends)[1])
            wait_for(lambda: len(trails(ends)[1]) > applied + 100, timeout=90)  # noqa: B023
            served.kill()
            served.start()
        wait_for(lambda: load.committed > 300, timeout=30)
    finally:
        load.finish()
    try:
        wait_for(lambda: _caught_up(ends), timeout=90)
        source, target = trails(ends)
        assert target == source
    finally:
        served.stop()
