"""What a run commits to the metadata database, counted: the read's last batch is checkpointed
in the transaction that ends the run, so a one-batch scheduled run commits once after its claim.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import event

from openfdi.connectors.registry import default_registry
from openfdi.engine.runner import EngineSettings, Runner
from openfdi.services import datasources, tasks
from openfdi.services.runs import build_spec
from openfdi.services.runtime import Runtime
from openfdi.store import runs
from openfdi.store.tables import CheckpointRow, RunRow
from openfdi.wire.datasources import DatasourceInfoRequest
from openfdi.wire.tasks import CreateCommonTaskRequest, TaskBasicRequest
from tests.conftest import Credentials

both_databases = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def engine_enabled() -> bool:
    return False  # the test drives one Runner itself


def _task(runtime: Runtime, tmp_path: Path, rows: int, incremental: bool) -> str:
    from openfdi.domain.scope import Scope

    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(rows)])
    sqlite3.connect(dst).close()
    c = Credentials()
    scope = Scope(c.project_id, c.instance_id)
    ids = [
        datasources.create_datasource_info(
            runtime,
            scope,
            DatasourceInfoRequest(
                datasource_name=name, datasource_type="SQLITE", content={"database_name": str(p)}
            ),
        ).datasource_id
        for name, p in (("source", src), ("target", dst))
    ]
    source: dict[str, object] = {"table": "t"}
    if incremental:
        source["incremental"] = {"column": "id"}
    detail = {
        "sourceSelectedDatasource": source,
        "targetSelectedDatasource": {"table": "t2", "writeMode": "upsert", "keyColumns": ["id"]},
    }
    body = TaskBasicRequest(
        task_name="copy-t",
        task_type="TIMING",
        source_datasource_id=ids[0],
        target_datasource_id=ids[1],
    )
    reply = tasks.create_common_task(
        runtime, scope, CreateCommonTaskRequest(task=body, task_detail=json.dumps(detail))
    )
    return reply.task.task_id


@both_databases
@pytest.mark.parametrize(
    ("rows", "batch_rows", "commits"),
    [
        (1, 10_000, 1),  # the only batch is the last: checkpoint and end in one commit
        (0, 10_000, 1),  # nothing to copy: the totals are recorded with the end
        (5, 2, 3),  # batches of 2, 2 and 1: two checkpoints, then the last with the end
    ],
)
def test_the_last_batch_is_checkpointed_with_the_end_of_the_run(
    runtime: Runtime, tmp_path: Path, rows: int, batch_rows: int, commits: int
) -> None:
    task_id = _task(runtime, tmp_path, rows, incremental=True)
    run_id = runs.create_run(runtime.db, task_id, "manual", runtime.clock_ms())
    claim = runs.claim(runtime.db, run_id, "test", runtime.clock_ms(), 10_000)
    assert claim is not None
    runner = Runner(
        build_spec(runtime, run_id, task_id),
        claim,
        runtime.db,
        default_registry(),
        EngineSettings(batch_rows=batch_rows),
        runtime.clock_ms,
    )
    counted: list[int] = []
    listener = lambda _conn: counted.append(1)  # noqa: E731
    event.listen(runtime.db.engine, "commit", listener)
    try:
        assert runner.run().value == "succeeded"
    finally:
        event.remove(runtime.db.engine, "commit", listener)

    assert len(counted) == commits
    with runtime.db.read() as session:
        run = session.get(RunRow, run_id)
        checkpoint = session.get(CheckpointRow, task_id)
    assert run is not None
    assert (run.state, run.data_count) == ("succeeded", rows)
    assert checkpoint is not None
    assert (checkpoint.run_id, checkpoint.watermark) == (run_id, str(rows - 1) if rows else None)
    with sqlite3.connect(tmp_path / "dst.db") as conn:
        assert conn.execute("SELECT count(*) FROM t2").fetchone() == (rows,)
