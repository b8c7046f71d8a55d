"""Parallel key-range slices of a TIMING copy (task detail `parallelism`): exact results on
PostgreSQL and SQLite whatever the keys look like, a stop that ends every slice and a rerun that
resumes each from its own position, and one failing slice failing the run.

Runs are driven directly (tests/engine/direct.py) so a stop lands at a chosen point.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openfdi.connectors.errors import TerminalConnectorError
from openfdi.connectors.postgres.connector import PostgresConnector
from openfdi.domain.states import RunState
from openfdi.engine import slices
from openfdi.engine.runner import EngineSettings, Runner
from openfdi.errors import FdiError
from openfdi.services.runtime import Runtime
from openfdi.store.runs import Progress
from openfdi.store.tables import RunRow
from tests.engine import direct
from tests.engine.conftest import wait_for
from tests.services import PG_ADMIN_URL

SMALL_BATCHES = EngineSettings(batch_rows=500, batch_seconds=0.05, retry_attempts=1)


@pytest.fixture
def engine_enabled() -> bool:
    return False  # the tests drive their runs themselves


def _detail(parallelism: int, write_mode: str = "insert", **target: Any) -> dict[str, Any]:
    return {
        "sourceSelectedDatasource": {"table": "events"},
        "targetSelectedDatasource": {"table": "copy", "writeMode": write_mode, **target},
        "parallelism": parallelism,
    }


def _pg_fill(schema: str, keys: Iterable[int], table: str = "events") -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".{table} '
            "(id bigint PRIMARY KEY, body text, amount numeric(12,2))"
        )
        with conn.cursor().copy(f'COPY "{schema}".{table} (id, body, amount) FROM STDIN') as copy:
            for key in keys:
                copy.write_row((key, f"row {key}, 'quoted'", key % 100_000 / 100))


def _pg_rows(schema: str, table: str = "copy") -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return conn.execute(
            f'SELECT id, body, amount FROM "{schema}".{table} ORDER BY id'
        ).fetchall()


def _pg_count(schema: str, table: str = "copy") -> int:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f'"{schema}".{table}',)).fetchone() == (None,):
            return 0
        row = conn.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone()
        return int(row[0]) if row else 0


def _pg_positions(schema: str) -> dict[str, Any]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            f'SELECT task_id, position FROM "{schema}".openfdi_positions'
        ).fetchall()
    return {key: json.loads(text) for key, text in rows}


def _sqlite_fill(path: Path, keys: Iterable[int]) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, body TEXT, amount REAL)"
        )
        conn.executemany(
            "INSERT INTO events VALUES (?, ?, ?)", ((k, f"row {k}", k / 8) for k in keys)
        )


def _sqlite_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT id, body, amount FROM {table} ORDER BY id").fetchall()


def _progress(runtime: Runtime, runner: Runner) -> Progress:
    with runtime.db.read() as session:
        run = session.get_one(RunRow, runner.claim.run_id)
        return Progress(run.data_count, run.dirty_data_count, 0, 0, 0)


# Gaps, negative keys, the extremes of bigint, and a dense stretch: the slices' ranges are cut
# by key value, so most slices of this table are nearly empty and one is full.
HOSTILE_KEYS = sorted(
    {
        -(2**63),
        2**63 - 1,
        *range(-20_000, 0, 7),
        0,
        *range(1, 30_001, 3),
        *range(1_000_000, 1_000_050),
    }
)


@given(
    low=st.integers(-(2**63), 2**63 - 1),
    span=st.integers(0, 2**64),
    parts=st.integers(1, 16),
    probes=st.lists(st.integers(-20, 20), max_size=20),
)
@settings(max_examples=300, deadline=None)
def test_the_ranges_hold_every_key_exactly_once(
    low: int, span: int, parts: int, probes: list[int]
) -> None:
    high = min(low + span, 2**63 - 1)
    ranges = slices.cut(low, high, parts)
    assert 1 <= len(ranges) <= min(parts, high - low + 1)
    assert ranges[0].after is None
    assert ranges[-1].upto is None
    # Each range ends where the next begins, and none is empty.
    for before, after in itertools.pairwise(ranges):
        assert before.upto is not None
        assert before.upto == after.after
        assert before.after is None or before.after < before.upto
    # Keys at the bounds, at every edge and around them, and outside [low, high].
    edges = [r.upto for r in ranges if r.upto is not None]
    keys = {low, high, low - 1, high + 1, *edges, *(e + 1 for e in edges)}
    keys |= {low + (high - low) * i // 20 + d for i in range(21) for d in probes[:3]}
    for key in keys:
        holding = [
            r
            for r in ranges
            if (r.after is None or key > r.after) and (r.upto is None or key <= r.upto)
        ]
        assert len(holding) == 1, (key, ranges)


@pytest.mark.parametrize("parallelism", [4, 16])
def test_a_parallel_pg_copy_with_gaps_negative_and_extreme_keys_is_exact(
    runtime: Runtime, pg_schema: str, parallelism: int
) -> None:
    _pg_fill(pg_schema, HOSTILE_KEYS)
    ds = direct.datasource(runtime, "POSTGRESQL", direct.pg_content(pg_schema))
    task_id = direct.task(runtime, ds, ds, _detail(parallelism))
    runner = direct.runner(runtime, task_id, SMALL_BATCHES)
    assert runner.run() is RunState.SUCCEEDED
    assert _pg_rows(pg_schema) == _pg_rows(pg_schema, "events")
    assert _progress(runtime, runner).data_count == len(HOSTILE_KEYS)
    positions = _pg_positions(pg_schema)
    # It really ran as slices, each of which reached its end; the plan is closed.
    assert positions[slices.plan_key(task_id)] == {"done": True}
    states = [positions[slices.slice_key(task_id, i)] for i in range(parallelism)]
    assert all(state["done"] for state in states), states


def test_a_parallel_mysql_to_pg_copy_goes_the_row_path_and_is_exact(
    runtime: Runtime, pg_schema: str, mysql_database: str
) -> None:
    """MySQL to PostgreSQL moves rows through Python (no shared binary form): the slices' row
    path, with the key quoted in MySQL's dialect in every slice's bound."""
    keys = [k for k in HOSTILE_KEYS if abs(k) < 2**62][::3]
    conn = pymysql.connect(
        host="127.0.0.1", port=3306, user="root", password="", database=mysql_database
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE events (`id` BIGINT PRIMARY KEY, body TEXT, amount DECIMAL(12,2))"
            )
            cursor.executemany(
                "INSERT INTO events VALUES (%s, %s, %s)",
                [(k, f"row {k}, 'quoted'", Decimal(k % 100_000) / 100) for k in keys],
            )
        conn.commit()
    finally:
        conn.close()
    source = direct.datasource(runtime, "MYSQL", direct.mysql_content(mysql_database))
    target = direct.datasource(runtime, "POSTGRESQL", direct.pg_content(pg_schema))
    task_id = direct.task(runtime, source, target, _detail(4, "truncate_insert"))
    runner = direct.runner(runtime, task_id, SMALL_BATCHES)
    assert runner.run() is RunState.SUCCEEDED
    expected = [(k, f"row {k}, 'quoted'", Decimal(k % 100_000) / 100) for k in keys]
    assert _pg_rows(pg_schema) == expected
    positions = _pg_positions(pg_schema)
    assert all(positions[slices.slice_key(task_id, i)]["done"] for i in range(4))


def test_a_second_run_copies_everything_again(runtime: Runtime, pg_schema: str) -> None:
    """A finished plan is not resumed: the next run of a truncate_insert task copies anew."""
    _pg_fill(pg_schema, range(1, 5001))
    ds = direct.datasource(runtime, "POSTGRESQL", direct.pg_content(pg_schema))
    task_id = direct.task(runtime, ds, ds, _detail(3, "truncate_insert"))
    assert direct.runner(runtime, task_id, SMALL_BATCHES).run() is RunState.SUCCEEDED
    _pg_fill(pg_schema, range(-100, 0))  # below every key of the first run's plan
    again = direct.runner(runtime, task_id, SMALL_BATCHES)
    assert again.run() is RunState.SUCCEEDED
    assert _pg_rows(pg_schema) == _pg_rows(pg_schema, "events")
    assert _progress(runtime, again).data_count == 5100


def test_a_parallel_sqlite_copy_is_exact_and_truncates_once(
    runtime: Runtime, tmp_path: Path
) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    _sqlite_fill(src, [k for k in range(-3000, 9000) if k % 5 != 0])
    with sqlite3.connect(dst) as conn:  # rows a truncate_insert must remove, once
        conn.execute("CREATE TABLE copy (id INTEGER PRIMARY KEY, body TEXT, amount REAL)")
        conn.executemany(
            "INSERT INTO copy VALUES (?, 'old', 0)", ((k,) for k in range(10**6, 10**6 + 50))
        )
    source = direct.datasource(runtime, "SQLITE", {"database_name": str(src)})
    target = direct.datasource(runtime, "SQLITE", {"database_name": str(dst)})
    task_id = direct.task(runtime, source, target, _detail(4, "truncate_insert"))
    runner = direct.runner(runtime, task_id, SMALL_BATCHES)
    assert runner.run() is RunState.SUCCEEDED
    assert _sqlite_rows(dst, "copy") == _sqlite_rows(src, "events")
    with sqlite3.connect(dst) as conn:
        kept = dict(conn.execute("SELECT task_id, position FROM openfdi_positions").fetchall())
    assert sum(1 for key in kept if key.startswith(f"{task_id}/slice/")) == 4


@pytest.mark.parametrize("keys", [[], [7], [-5, 0, 5]], ids=["empty", "one-row", "three-rows"])
def test_fewer_rows_than_slices(runtime: Runtime, pg_schema: str, keys: list[int]) -> None:
    _pg_fill(pg_schema, keys)
    ds = direct.datasource(runtime, "POSTGRESQL", direct.pg_content(pg_schema))
    task_id = direct.task(runtime, ds, ds, _detail(8))
    runner = direct.runner(runtime, task_id, SMALL_BATCHES)
    assert runner.run() is RunState.SUCCEEDED
    assert [r[0] for r in _pg_rows(pg_schema)] == keys
    assert _progress(runtime, runner).data_count == len(keys)


def test_a_where_filter_applies_to_every_slice(runtime: Runtime, pg_schema: str) -> None:
    _pg_fill(pg_schema, range(-5000, 5000))
    ds = direct.datasource(runtime, "POSTGRESQL", direct.pg_content(pg_schema))
    detail = _detail(4)
    detail["sourceSelectedDatasource"]["where"] = "id % 3 = 0 AND id < 4000"
    task_id = direct.task(runtime, ds, ds, detail)
    assert direct.runner(runtime, task_id, SMALL_BATCHES).run() is RunState.SUCCEEDED
    assert [r[0] for r in _pg_rows(pg_schema)] == [k for k in range(-5000, 4000) if k % 3 == 0]


def test_a_table_without_an_integer_key_is_copied_as_one_slice(
    runtime: Runtime, pg_schema: str
) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".events (id text PRIMARY KEY, body text)')
        conn.execute(
            f"INSERT INTO \"{pg_schema}\".events SELECT g::text, 'b' FROM generate_series(1, 999) g"
        )
    ds = direct.datasource(runtime, "POSTGRESQL", direct.pg_content(pg_schema))
    task_id = direct.task(runtime, ds, ds, _detail(4))
    assert direct.runner(runtime, task_id, SMALL_BATCHES).run() is RunState.SUCCEEDED
    assert _pg_count(pg_schema) == 999
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass(%s)", (f'"{pg_schema}".openfdi_positions',))
        assert found.fetchone() == (None,), "a one-slice full copy keeps no positions"


def test_an_incremental_task_is_copied_as_one_slice(runtime: Runtime, pg_schema: str) -> None:
    _pg_fill(pg_schema, range(1, 3001))
    ds = direct.datasource(runtime, "POSTGRESQL", direct.pg_content(pg_schema))
    detail = _detail(4)
    detail["sourceSelectedDatasource"]["incremental"] = {"column": "id"}
    task_id = direct.task(runtime, ds, ds, detail)
    assert direct.runner(runtime, task_id, SMALL_BATCHES).run() is RunState.SUCCEEDED
    _pg_fill(pg_schema, range(3001, 3101))
    assert direct.runner(runtime, task_id, SMALL_BATCHES).run() is RunState.SUCCEEDED
    assert _pg_rows(pg_schema) == _pg_rows(pg_schema, "events")
    # Only the task's own incremental position: no plan, no slice.
    assert list(_pg_positions(pg_schema)) == [task_id]


def test_a_stop_ends_every_slice_and_the_next_run_resumes_each(
    runtime: Runtime, pg_schema: str
) -> None:
    rows = 300_000
    _pg_fill(pg_schema, range(1, rows + 1))
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:  # no key: a duplicate shows
        conn.execute(
            f'CREATE TABLE "{pg_schema}".copy (id bigint, body text, amount numeric(12,2))'
        )
    ds = direct.datasource(runtime, "POSTGRESQL", direct.pg_content(pg_schema))
    task_id = direct.task(runtime, ds, ds, _detail(4))
    slow = EngineSettings(batch_rows=200, batch_seconds=0.02, retry_attempts=1)
    runner = direct.runner(runtime, task_id, slow)
    ended: list[RunState] = []
    thread = threading.Thread(target=lambda: ended.append(runner.run()))
    thread.start()
    wait_for(lambda: _pg_count(pg_schema) > 20_000 or ended, timeout=60)
    asked = time.monotonic()
    runner.stop()
    thread.join(10)
    took = time.monotonic() - asked
    assert ended == [RunState.CANCELLED], ended
    assert took < 1.0, f"the slices took {took:.2f} s to stop"
    copied = _pg_count(pg_schema)
    assert 0 < copied < rows
    # Each slice stopped somewhere inside its own range, none at its end.
    positions = _pg_positions(pg_schema)
    states = [positions[slices.slice_key(task_id, i)] for i in range(4)]
    assert sum(1 for s in states if s["at"] is not None) >= 2, states

    again = direct.runner(runtime, task_id, SMALL_BATCHES)
    assert again.run() is RunState.SUCCEEDED
    ids = [r[0] for r in _pg_rows(pg_schema)]
    assert ids == list(range(1, rows + 1)), "rows lost or copied twice"
    assert _progress(runtime, again).data_count == rows - copied


def test_one_failing_slice_fails_the_run_and_stops_the_others(
    runtime: Runtime, pg_schema: str
) -> None:
    rows = 600_000
    _pg_fill(pg_schema, range(1, rows + 1))
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        # A row of the first slice's range makes the target fail (not refuse a row: an error
        # that is no row's fault), while the other slices have most of their rows to copy.
        conn.execute(
            f'CREATE TABLE "{pg_schema}".copy (id bigint PRIMARY KEY, body text, '
            "amount numeric(12,2))"
        )
        conn.execute(
            f'CREATE FUNCTION "{pg_schema}".fail() RETURNS trigger LANGUAGE plpgsql AS $$ '
            "BEGIN IF NEW.id = 100 THEN RAISE EXCEPTION 'the target broke' "
            "USING ERRCODE = 'XX000'; END IF; RETURN NEW; END $$"
        )
        conn.execute(
            f'CREATE TRIGGER fail BEFORE INSERT ON "{pg_schema}".copy '
            f'FOR EACH ROW EXECUTE FUNCTION "{pg_schema}".fail()'
        )
    ds = direct.datasource(runtime, "POSTGRESQL", direct.pg_content(pg_schema))
    task_id = direct.task(runtime, ds, ds, _detail(4))
    settings = EngineSettings(batch_rows=200, batch_seconds=0.02, retry_attempts=1)
    runner = direct.runner(runtime, task_id, settings)
    started = time.monotonic()
    assert runner.run() is RunState.FAILED
    assert time.monotonic() - started < 30
    with runtime.db.read() as session:
        remarks = session.get_one(RunRow, runner.claim.run_id).remarks or ""
    assert "the target broke" in remarks, remarks
    positions = _pg_positions(pg_schema)
    others = [positions[slices.slice_key(task_id, i)] for i in (1, 2, 3)]
    assert not any(s["done"] for s in others), f"the other slices did not stop: {others}"
    assert _pg_count(pg_schema) < rows * 3 // 4


def test_a_slice_dying_at_its_commit_leaves_rows_and_position_together(
    runtime: Runtime, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit that carries a slice's rows carries its position: a slice dying just before
    a commit leaves neither, so the rerun neither skips nor repeats a row."""
    rows = 100_000
    _pg_fill(pg_schema, range(1, rows + 1))
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:  # no key: a duplicate shows
        conn.execute(
            f'CREATE TABLE "{pg_schema}".copy (id bigint, body text, amount numeric(12,2))'
        )
    ds = direct.datasource(runtime, "POSTGRESQL", direct.pg_content(pg_schema))
    task_id = direct.task(runtime, ds, ds, _detail(4))
    commit = PostgresConnector.commit
    calls = {"n": 0}

    def dies_at_the_tenth_commit(self: PostgresConnector) -> None:
        calls["n"] += 1
        if calls["n"] == 10:
            raise TerminalConnectorError("the worker died here")
        commit(self)

    monkeypatch.setattr(PostgresConnector, "commit", dies_at_the_tenth_commit)
    assert direct.runner(runtime, task_id, SMALL_BATCHES).run() is RunState.FAILED
    monkeypatch.setattr(PostgresConnector, "commit", commit)
    copied = _pg_count(pg_schema)
    positions = _pg_positions(pg_schema)
    plan = slices.decode_plan(json.dumps(positions[slices.plan_key(task_id)]))
    assert plan is not None
    covered = 0
    for index, key_range in enumerate(plan.ranges):
        at = positions[slices.slice_key(task_id, index)]["at"]
        if at is not None:
            covered += at - (0 if key_range.after is None else key_range.after)
    assert 0 < copied < rows
    assert copied == covered, "rows were committed apart from their slice's position"

    again = direct.runner(runtime, task_id, SMALL_BATCHES)
    assert again.run() is RunState.SUCCEEDED
    assert [r[0] for r in _pg_rows(pg_schema)] == list(range(1, rows + 1))


@pytest.mark.parametrize("value", [0, 17, -1, "4", 2.5, True, [2]])
def test_a_bad_parallelism_is_refused_naming_the_field(
    runtime: Runtime, tmp_path: Path, value: Any
) -> None:
    source = direct.datasource(runtime, "SQLITE", {"database_name": str(tmp_path / "s.db")})
    detail = _detail(1)
    detail["parallelism"] = value
    with pytest.raises(FdiError) as refused:
        direct.task(runtime, source, source, detail)
    assert refused.value.code == "FDI.3033"
    assert "parallelism" in str(refused.value)
