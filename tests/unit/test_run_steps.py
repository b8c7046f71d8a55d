"""The steps of runs in states the engine tests do not wait for: not started, in progress,
stopped by a user, a skipped fire (services/run_steps.py)."""

from __future__ import annotations

from openfdi.services.run_steps import detail_logs
from openfdi.store.tables import RunRow


def run(state: str, **fields: object) -> RunRow:
    base: dict[str, object] = {
        "id": "a" * 32,
        "task_id": "b" * 32,
        "trigger": "manual",
        "state": state,
        "created_at": 1_000,
        "started_at": 1_010,
        "ended_at": None,
        "data_count": 10,
        "dirty_data_count": 2,
        "data_size_bytes": 4096,
        "read_ms": 5,
        "write_ms": 7,
        "position": None,
        "position_status": None,
        "remarks": None,
    }
    return RunRow(**{**base, **fields})


def codes(row: RunRow) -> list[tuple[str, int, str | None]]:
    return [(s.position, s.status, s.position_status) for s in detail_logs(row, "MYSQL", "DWS")]


def test_steps_by_state() -> None:
    assert codes(run("starting", started_at=None)) == [("ADAPTER", 99, "NORMAL")]
    assert codes(run("running")) == [("READER", 102, "NORMAL"), ("WRITER", 500, "NORMAL")]
    assert codes(run("running", position="WRITER")) == [
        ("READER", 102, "NORMAL"),
        ("WRITER", 502, "NORMAL"),
    ]
    stopped = run("cancelled", ended_at=2_000, position_status="RUNTIME_CANCEL")
    assert codes(stopped) == [
        ("READER", 106, "RUNTIME_CANCEL"),
        ("WRITER", 505, "RUNTIME_CANCEL"),
    ]
    skipped = run("skipped", started_at=None, ended_at=1_000, remarks="previous run going")
    assert codes(skipped) == [("ADAPTER", 914, "RUNTIME_CANCEL")]
    assert detail_logs(skipped, "MYSQL", "DWS")[0].remarks == "previous run going"


def test_counts_and_plugins() -> None:
    reader, writer = detail_logs(run("succeeded", ended_at=2_000), "MYSQL", "DWS")
    assert (reader.stage, writer.stage) == ("mysqlreader", "dwswriter")
    assert (reader.data_count, writer.data_count, writer.dirty_data_count) == (12, 10, 2)
    assert (reader.data_size, reader.data_size_unit) == (4.0, "KB")
    assert (reader.spend_time, writer.spend_time) == (5, 7)
