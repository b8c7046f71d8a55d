"""Tasks built and runs driven without an HTTP server: services called directly, one `Runner`
executed by the test (tests that place a fault at an exact point of a run)."""

from __future__ import annotations

import json
from typing import Any

from openfdi.connectors.registry import default_registry
from openfdi.domain.scope import Scope
from openfdi.domain.states import RunTrigger, TaskType
from openfdi.engine.runner import EngineSettings, Runner
from openfdi.services import datasources, tasks
from openfdi.services.runs import build_spec
from openfdi.services.runtime import Runtime
from openfdi.store import runs
from openfdi.store.tables import TaskRow
from openfdi.wire.datasources import DatasourceInfoRequest
from openfdi.wire.tasks import CreateCommonTaskRequest, TaskBasicRequest
from tests.conftest import Credentials
from tests.factories import unique

SCOPE = Scope(Credentials().project_id, Credentials().instance_id)


def datasource(runtime: Runtime, kind: str, content: dict[str, Any]) -> str:
    request = DatasourceInfoRequest(
        datasource_name=unique("ds"), datasource_type=kind, content=content
    )
    return datasources.create_datasource_info(runtime, SCOPE, request).datasource_id


def task(
    runtime: Runtime, source: str, target: str, detail: dict[str, Any], task_type: str = "TIMING"
) -> str:
    body = TaskBasicRequest(
        task_name=unique("task"),
        task_type=task_type,
        source_datasource_id=source,
        target_datasource_id=target,
    )
    request = CreateCommonTaskRequest(task=body, task_detail=json.dumps(detail))
    return tasks.create_common_task(runtime, SCOPE, request).task.task_id


def runner(runtime: Runtime, task_id: str, settings: EngineSettings) -> Runner:
    """A claimed run of the task, ready to `run()`: of a REALTIME task, the supervisor's run
    (which follows the source), else a manual one."""
    with runtime.db.read() as session:
        realtime = session.get_one(TaskRow, task_id).task_type == TaskType.REALTIME
    trigger = RunTrigger.SUPERVISOR if realtime else RunTrigger.MANUAL
    run_id = runs.create_run(runtime.db, task_id, trigger, runtime.clock_ms())
    claim = runs.claim(runtime.db, run_id, "test", runtime.clock_ms(), 60_000)
    assert claim is not None
    spec = build_spec(runtime, run_id, task_id)
    return Runner(spec, claim, runtime.db, default_registry(), settings, runtime.clock_ms)


def pg_content(schema: str, user: str = "postgres") -> dict[str, str]:
    return {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
            "user_name": user, "password": "unused", "schema": schema}  # fmt: skip


def mysql_content(database: str) -> dict[str, str]:
    return {"host": "127.0.0.1", "port": "3306", "database_name": database,
            "user_name": "root", "password": ""}  # fmt: skip
