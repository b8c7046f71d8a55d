"""The desired-state transition table and the execute_status derivation, walked whole."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from openfdi.domain.states import (
    TRANSITIONS,
    Action,
    DesiredState,
    ExecuteStatus,
    RunState,
    TaskType,
    apply,
    execute_status,
)
from openfdi.services.task_views import execute_status_expr, latest_run_state
from openfdi.store.tables import RunRow, TaskRow


def test_table_covers_every_state_and_action() -> None:
    assert set(TRANSITIONS) == set(itertools.product(DesiredState, Action))


@pytest.mark.parametrize(("state", "action"), list(itertools.product(DesiredState, Action)))
def test_actions_are_idempotent(state: DesiredState, action: Action) -> None:
    once = apply(state, action)
    twice = apply(once.new_state, action)
    assert twice.new_state == once.new_state
    assert not twice.changed
    assert once.changed == (state != once.new_state)


def test_execute_status_examples() -> None:
    assert execute_status(TaskType.TIMING, DesiredState.RUNNING, None) is ExecuteStatus.WAITING
    assert execute_status(TaskType.REALTIME, DesiredState.RUNNING, None) is ExecuteStatus.UNSTARTED
    running = execute_status(TaskType.TIMING, DesiredState.RUNNING, RunState.RUNNING)
    assert running is ExecuteStatus.RUNNING
    failed = execute_status(TaskType.REALTIME, DesiredState.STOPPED, RunState.FAILED)
    assert failed is ExecuteStatus.ERROR


COMBINATIONS = list(itertools.product(TaskType, DesiredState, [None, *RunState]))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_sql_derivation_agrees_with_the_domain(runtime) -> None:
    """Every (type, desired, latest run) combination, computed in SQL and in Python."""
    from tests.conftest import Credentials
    from tests.factories import unique

    creds = Credentials()
    now = runtime.clock_ms()
    with runtime.db.write() as session:
        from openfdi.store.tables import DatasourceRow

        session.add(
            DatasourceRow(
                id="d" * 32,
                project_id=creds.project_id,
                instance_id=creds.instance_id,
                name="ds",
                type="SQLITE",
                content="{}",
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        expected: dict[str, ExecuteStatus] = {}
        runs: list[RunRow] = []
        for i, (task_type, desired, run_state) in enumerate(COMBINATIONS):
            task_id = f"{i:032x}"
            session.add(
                TaskRow(
                    id=task_id,
                    project_id=creds.project_id,
                    instance_id=creds.instance_id,
                    name=unique("t"),
                    task_type=task_type.value,
                    source_datasource_id="d" * 32,
                    target_datasource_id="d" * 32,
                    task_detail="{}",
                    status=desired.value,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            latest = run_state
            if run_state is not None:
                # An older finished run first, so "latest" really has to pick the newest; and a
                # newer skipped fire, which is a log entry, not a run, so it must not count.
                runs.append(_run(f"{i:031x}a", task_id, RunState.SUCCEEDED, now - 1000))
                runs.append(_run(f"{i:031x}b", task_id, run_state, now))
                runs.append(_run(f"{i:031x}c", task_id, RunState.SKIPPED, now + 1000))
                if run_state is RunState.SKIPPED:
                    latest = RunState.SUCCEEDED
            expected[task_id] = execute_status(task_type, desired, latest)
        session.flush()  # tasks before runs: the rows have no relationship() to order them by
        session.add_all(runs)
        session.flush()
        rows = session.execute(select(TaskRow.id, execute_status_expr(latest_run_state())))
        computed = dict(rows.tuples().all())
    assert computed == {k: v.value for k, v in expected.items()}


def _run(run_id: str, task_id: str, state: RunState, created: int) -> RunRow:
    return RunRow(
        id=run_id, task_id=task_id, trigger="manual", state=state.value, epoch=1, created_at=created
    )
