"""Retries that mean something: the outcome table, transient errors tried again inside a run
(a real PostgreSQL connection killed under a REALTIME run), and REALTIME restarts backed off."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import update

from openfdi.connectors.errors import (
    QueryCancelledError,
    TableNotFoundError,
    TransientConnectorError,
)
from openfdi.domain.states import RunState, RunTrigger
from openfdi.engine.backoff import restart_delay_ms
from openfdi.engine.outcomes import DirtyLimitExceeded, outcome_of
from openfdi.engine.runner import EngineSettings
from openfdi.services import control_loops
from openfdi.services.control_loops import Supervisor
from openfdi.services.runtime import Runtime
from openfdi.store import runs
from openfdi.store.tables import RunRow, TaskRow
from tests.engine import direct
from tests.engine.conftest import wait_for
from tests.services import PG_ADMIN_URL

both_databases = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def engine_enabled() -> bool:
    return False  # the tests drive runs (or the supervisor) themselves


def test_the_outcome_table() -> None:
    transient = outcome_of(TransientConnectorError("connection lost"))
    assert (transient.state, transient.status, transient.retry) == (
        RunState.FAILED,
        "RUNTIME_ERR",
        True,
    )
    assert not outcome_of(TableNotFoundError("no table")).retry
    assert outcome_of(QueryCancelledError("cancelled")).state is RunState.CANCELLED
    assert not outcome_of(DirtyLimitExceeded("too many")).retry
    bug = outcome_of(KeyError("x"))
    assert (bug.status, bug.internal, bug.retry) == ("INTERNAL_ERR", True, False)


def test_restart_delays_double_from_5_s_to_at_most_5_minutes() -> None:
    delays = [restart_delay_ms(n) // 1000 for n in range(1, 10)]
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert restart_delay_ms(10_000) == 300_000


def _events(path: Path, ids: range) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO events VALUES (?, ?)", ((i, f"e{i}") for i in ids))


@pytest.fixture
def pg_role(pg_schema: str) -> Iterator[str]:
    """A login role of its own, so the test can kill exactly its connections."""
    role = f"r_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT USAGE, CREATE ON SCHEMA "{pg_schema}" TO "{role}"')
    yield role
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        )
        conn.execute(f'DROP OWNED BY "{role}" CASCADE')
        conn.execute(f'DROP ROLE "{role}"')


def _pg_count(schema: str, table: str) -> int:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()
        if found is None or found[0] is None:
            return 0
        row = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
        return int(row[0]) if row else 0


def test_a_realtime_run_survives_its_target_connection_being_killed(
    runtime: Runtime, tmp_path: Path, pg_schema: str, pg_role: str
) -> None:
    src = tmp_path / "src.db"
    _events(src, range(1, 1001))
    source = direct.datasource(runtime, "SQLITE", {"database_name": str(src)})
    target = direct.datasource(runtime, "POSTGRESQL", direct.pg_content(pg_schema, pg_role))
    detail = {
        "sourceSelectedDatasource": {"table": "events", "incremental": {"column": "id"}},
        "targetSelectedDatasource": {"table": "copy"},
    }
    task_id = direct.task(runtime, source, target, detail, "REALTIME")
    settings = EngineSettings(poll_interval_s=0.05, retry_initial_s=0.05, retry_max_s=0.2)
    runner = direct.runner(runtime, task_id, settings)
    ended: list[RunState] = []
    thread = threading.Thread(target=lambda: ended.append(runner.run()))
    thread.start()
    try:
        wait_for(lambda: _pg_count(pg_schema, "copy") == 1000)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (pg_role,),
            ).fetchall()
        assert killed, "the run's target connection was not found"
        _events(src, range(1001, 2001))
        # The next write meets the dead connection: the run reconnects and carries on.
        wait_for(lambda: _pg_count(pg_schema, "copy") == 2000 or ended)
        assert not ended, "the run ended instead of trying again"
    finally:
        runner.stop()
        thread.join(20)
    assert ended == [RunState.CANCELLED]
    assert _pg_count(pg_schema, "copy") == 2000


@both_databases
def test_a_failing_realtime_task_is_restarted_later_each_time(
    runtime: Runtime, tmp_path: Path
) -> None:
    src = tmp_path / "src.db"
    _events(src, range(1, 3))
    source = direct.datasource(runtime, "SQLITE", {"database_name": str(src)})
    target = direct.datasource(runtime, "SQLITE", {"database_name": str(tmp_path / "dst.db")})
    detail = {
        "sourceSelectedDatasource": {"table": "events", "incremental": {"column": "id"}},
        "targetSelectedDatasource": {"table": "copy"},
    }
    task_id = direct.task(runtime, source, target, detail, "REALTIME")
    with runtime.db.write() as session:  # started long ago (a start also starts a run)
        session.execute(update(TaskRow).where(TaskRow.id == task_id).values(status=1, updated_at=0))
    # Runs wait for worker processes: the supervisor only creates them.
    runtime.settings.engine_enabled, runtime.settings.worker_processes = True, 1
    clock = [1_000_000]
    runtime.clock_ms = lambda: clock[0]
    supervisor = Supervisor(runtime)

    def fail_one() -> int:
        run_id = runs.create_run(runtime.db, task_id, RunTrigger.SUPERVISOR, clock[0])
        claim = runs.claim(runtime.db, run_id, "test", clock[0], 10_000)
        assert claim is not None
        runs.finish(runtime.db, claim, RunState.FAILED, clock[0], "source down", "RUNTIME_ERR")
        return clock[0]

    def started() -> bool:
        with runtime.db.read() as session:
            active = session.query(RunRow).filter(
                RunRow.task_id == task_id, RunRow.state == RunState.STARTING.value
            )
            return active.count() == 1

    for failures, delay_s in ((1, 5), (3, 20), (8, 300)):
        while runs.failed_in_a_row(runtime.db, task_id) < failures:
            clock[0] += 1
            ended = fail_one()
        clock[0] = ended + delay_s * 1000 - 1_000
        supervisor.reconcile()
        assert not started(), f"restarted before {delay_s} s after {failures} failures"
        clock[0] = ended + delay_s * 1000
        supervisor.reconcile()
        assert started(), f"not restarted {delay_s} s after {failures} failures"
        with runtime.db.write() as session:  # the started run fails too
            session.execute(
                update(RunRow)
                .where(RunRow.task_id == task_id, RunRow.state == RunState.STARTING.value)
                .values(state=RunState.FAILED.value, ended_at=clock[0])
            )


@both_databases
def test_a_start_judged_before_another_pass_started_a_run_that_failed_waits_for_the_backoff(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two passes of the supervisor (the batch start's and the loop's) judge a task at once:
    both read "no run yet". One starts a run, which fails at once; the other then starts
    another at once, not after the failed run's backoff. Here the other pass's run is made
    to start and fail between this pass's read and its start."""
    source = direct.datasource(runtime, "SQLITE", {"database_name": str(tmp_path / "s.db")})
    target = direct.datasource(runtime, "SQLITE", {"database_name": str(tmp_path / "d.db")})
    detail = {
        "sourceSelectedDatasource": {"table": "events", "incremental": {"column": "id"}},
        "targetSelectedDatasource": {"table": "copy"},
    }
    task_id = direct.task(runtime, source, target, detail, "REALTIME")
    with runtime.db.write() as session:
        session.execute(update(TaskRow).where(TaskRow.id == task_id).values(status=1, updated_at=0))
    runtime.settings.engine_enabled, runtime.settings.worker_processes = True, 1
    now = 1_000_000
    runtime.clock_ms = lambda: now
    real_start = control_loops.runs_service.start_run

    def other_pass_first(*args: Any, **kwargs: Any) -> str:
        run_id = runs.create_run(runtime.db, task_id, RunTrigger.SUPERVISOR, now)
        claim = runs.claim(runtime.db, run_id, "other", now, 10_000)
        assert claim is not None
        runs.finish(runtime.db, claim, RunState.FAILED, now, "source down", "RUNTIME_ERR")
        monkeypatch.setattr(control_loops.runs_service, "start_run", real_start)
        return real_start(*args, **kwargs)

    monkeypatch.setattr(control_loops.runs_service, "start_run", other_pass_first)
    control_loops.start_realtime_runs(runtime, now, [task_id])
    with runtime.db.read() as session:
        states = session.query(RunRow.state).filter(RunRow.task_id == task_id).all()
    assert [s for (s,) in states] == [RunState.FAILED.value], "started again at once"


def test_a_failed_realtime_run_says_when_it_is_tried_again_and_logs_why(
    runtime: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src.db"
    _events(src, range(1, 3))
    source = direct.datasource(runtime, "SQLITE", {"database_name": str(src)})
    target = direct.datasource(runtime, "SQLITE", {"database_name": str(tmp_path / "dst.db")})
    detail = {
        "sourceSelectedDatasource": {"table": "events", "incremental": {"column": "id"}},
        "targetSelectedDatasource": {"table": "copy"},
    }
    task_id = direct.task(runtime, source, target, detail, "REALTIME")
    with runtime.db.write() as session:
        session.execute(update(TaskRow).where(TaskRow.id == task_id).values(status=1, updated_at=0))
    with sqlite3.connect(src) as conn:
        conn.execute("DROP TABLE events")  # a terminal error: not tried again inside the run
    clock = [1_767_225_600_000]  # 2026-01-01T00:00:00Z
    runtime.clock_ms = lambda: clock[0]
    runner = direct.runner(runtime, task_id, EngineSettings(retry_initial_s=0.01))
    with caplog.at_level("WARNING", logger="openfdi.engine.runner"):
        assert runner.run() is RunState.FAILED
    with runtime.db.read() as session:
        run = session.get(RunRow, runner.claim.run_id)
    assert run is not None
    assert run.remarks is not None
    assert "events" in run.remarks
    assert run.remarks.endswith(
        "next attempt at 2026-01-01T00:00:05Z (in 5 s; 1 failed run in a row)"
    ), run.remarks
    [record] = [r for r in caplog.records if "failed" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert (record.run_id, record.task_id) == (runner.claim.run_id, task_id)  # type: ignore[attr-defined]
    assert runner.claim.run_id in record.getMessage()
    assert task_id in record.getMessage()
