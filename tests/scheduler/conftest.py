"""The scheduler's tests: tasks with plans in a real metadata database, a clock the test moves.

Tasks are started and stopped, and plans created and changed, through the services (so the
`updated_at` bumps are the real ones); the planner is called the way the supervisor calls it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from openfdi.domain.scope import Scope
from openfdi.domain.states import RunState
from openfdi.scheduler.planner import Planner
from openfdi.services import batch, dispatches
from openfdi.services.runtime import Runtime
from openfdi.store import runs
from openfdi.store.tables import DatasourceRow, RunRow, TaskRow
from openfdi.wire.batch import OperateTasksRequest
from openfdi.wire.dispatches import TaskDispatchRequest

T0 = int(datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000


def ms(*args: int, tz: Any = UTC) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)  # type: ignore[misc]


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Fire:
    task_id: str
    fire_time: int
    state: str
    remarks: str | None


class Sched:
    """A runtime with a movable clock, and the verbs the tests need."""

    def __init__(self, runtime: Runtime, scope: Scope, clock: Clock) -> None:
        self.rt = runtime
        self.scope = scope
        self.clock = clock
        self._source: str | None = None

    def planner(self, **kwargs: Any) -> Planner:
        return Planner(self.rt.db, **kwargs)

    def at(self, now: int) -> int:
        self.clock.now = now
        return now

    def task(self, **plan: Any) -> str:
        """A stopped TIMING task with this plan (defaults: every minute from 2026-01-01)."""
        now = self.clock.now
        task_id = uuid.uuid4().hex
        with self.rt.db.write() as session:
            if self._source is None:
                self._source = uuid.uuid4().hex
                session.add(
                    DatasourceRow(
                        id=self._source,
                        project_id=self.scope.project_id,
                        instance_id=self.scope.instance_id,
                        name=f"ds-{self._source[:8]}",
                        type="SQLITE",
                        content=json.dumps({"database_name": "/tmp/unused.db"}),
                        created_at=now,
                        updated_at=now,
                    )
                )
                session.flush()
            session.add(
                TaskRow(
                    id=task_id,
                    project_id=self.scope.project_id,
                    instance_id=self.scope.instance_id,
                    name=f"task-{task_id[:12]}",
                    task_type="TIMING",
                    source_datasource_id=self._source,
                    target_datasource_id=self._source,
                    task_detail="{}",
                    status=0,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        body = {"start_datetime": ms(2026, 1, 1), "period": "MIN", "dispatch_interval": 1, **plan}
        dispatches.create_dispatches(self.rt, self.scope, task_id, TaskDispatchRequest(**body))
        return task_id

    def change_plan(self, task_id: str, **plan: Any) -> None:
        shown = dispatches.show_dispatches(self.rt, self.scope, task_id)
        body = {"start_datetime": ms(2026, 1, 1), **plan}
        dispatches.update_dispatches(
            self.rt, self.scope, task_id, shown.dispatch_id, TaskDispatchRequest(**body)
        )

    def batch(self, action: str, *task_ids: str) -> None:
        request = OperateTasksRequest.model_validate(
            {"action_id": action, "list": [{"task_id": t} for t in task_ids]}
        )
        reply = batch.batch_start_or_stop_tasks(self.rt, self.scope, request)
        assert reply.failure_count == 0, reply

    def fires(self, task_id: str | None = None) -> list[Fire]:
        """Every recorded fire (runs and skipped entries), oldest fire first."""
        query = select(RunRow.task_id, RunRow.fire_time, RunRow.state, RunRow.remarks).where(
            RunRow.fire_time.is_not(None)
        )
        if task_id is not None:
            query = query.where(RunRow.task_id == task_id)
        with self.rt.db.read() as session:
            rows = session.execute(query.order_by(RunRow.fire_time, RunRow.task_id)).all()
        return [Fire(t, f, s, r) for t, f, s, r in rows]

    def finish_runs(self) -> None:
        """End every active run (as an executor would): the tasks are free to run again."""
        with self.rt.db.read() as session:
            active = session.scalars(
                select(RunRow.id).where(RunRow.state.in_(("starting", "running")))
            ).all()
        for run_id in active:
            claim = runs.claim(self.rt.db, run_id, "test", self.clock.now, 60_000)
            assert claim is not None
            runs.finish(self.rt.db, claim, RunState.SUCCEEDED, self.clock.now)


@pytest.fixture
def sched(runtime: Runtime, creds: Any, monkeypatch: pytest.MonkeyPatch) -> Sched:
    clock = Clock(T0)
    monkeypatch.setattr(runtime, "clock_ms", clock)
    return Sched(runtime, Scope(creds.project_id, creds.instance_id), clock)
