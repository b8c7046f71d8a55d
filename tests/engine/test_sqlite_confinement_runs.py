"""A SQLite path is confined where the run opens it, not only when the data source is saved: a
link swapped into openfdi's data dir after create fails the run with a clear remark, as a source
and as a target, and the private file is neither read nor written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from huaweicloudsdkroma.v2 import RunTaskRequest

from openfdi.services.runtime import Runtime
from tests.engine.conftest import create_task, monitor_logs, wait_for

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)

DETAIL = {
    "sourceSelectedDatasource": {"table": "orders"},
    "targetSelectedDatasource": {"table": "orders"},
}


def _orders(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, note TEXT)")
        conn.execute("INSERT OR REPLACE INTO orders VALUES (1, 'x')")


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _datasource(signed, base_path: str, path: Path) -> str:  # type: ignore[no-untyped-def]
    body = {
        "datasource_name": path.name,
        "datasource_type": "SQLITE",
        "content": {"database_name": str(path)},
    }
    reply = signed.post(f"{base_path}/datasources", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["datasource_id"])


def _private(runtime: Runtime) -> Path:
    private = runtime.settings.data_dir.resolve() / "private.db"
    _orders(private)
    return private


@pytest.mark.parametrize("end", ["source", "target"])
def test_a_link_swapped_into_the_data_dir_fails_the_run(
    sdk, creds, signed, base_path, runtime: Runtime, tmp_path: Path, end: str
) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    _orders(src)
    sqlite3.connect(dst).close()
    link = tmp_path / "link.db"
    link.symlink_to(src if end == "source" else dst)
    source = _datasource(signed, base_path, link if end == "source" else src)
    target = _datasource(signed, base_path, link if end == "target" else dst)
    task = create_task(sdk, creds, source, target, DETAIL)

    private = _private(runtime)
    before = private.read_bytes()
    link.unlink()
    link.symlink_to(private)
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    log = wait_for(
        lambda: [g for g in monitor_logs(sdk, creds, task) if g.execute_status != "RUNNING"]
    )[0]
    assert log.execute_status == "ERROR"
    assert "data directory" in log.remarks
    assert private.read_bytes() == before
    if end == "target":
        assert _tables(private) == {"orders"}
