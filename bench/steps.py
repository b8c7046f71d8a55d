"""REALTIME runs under the Celery executor as bounded steps: hand-off latency and catch-up rate.

    .venv/bin/python -m bench.steps                            # steps of 0 (whole), 5 and 0.5 s
    .venv/bin/python -m bench.steps --rows 300000 --step 0 --step 1

For each step budget (OPENFDI_CELERY_STEP_SECONDS) it starts a real `openfdi serve` on 127.0.0.1
with PostgreSQL metadata (a fresh schema, dropped afterwards) publishing to RabbitMQ, and 2
`openfdi worker --executor celery` processes. A REALTIME task follows a PostgreSQL table
(incremental on its integer key) into another; `--rows` rows are in the source when it starts.

- catch-up: rows per second from the run's first claim to the checkpoint that holds every row,
  next to a minimal loop in the same run (binary `COPY src TO STDOUT` piped into `COPY FROM
  STDIN` of an empty table through psycopg, the native path between the same tables);
- hand-off: every step's end (the run handed off) to the next step's claim, from a trigger on
  the metadata's `runs` table (clock_timestamp() of each update, so exact, not polled); measured
  during the catch-up and then while the run follows an idle source for `--idle` seconds.

Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import json
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from bench.scheduler import AK, BASE, PG_ADMIN_URL, PROJECT_ID, SK, openfdi_server
from bench.served import log
from bench.stops import DATA_URL, percentile

from openfdi.client import signed_client

HANDOFF_OWNER = "celery:step:handoff"
TRACE = """
CREATE TABLE step_trace (at timestamptz, epoch int, owner text, state text, data_count bigint);
CREATE FUNCTION step_trace() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO step_trace VALUES (clock_timestamp(), NEW.epoch, NEW.lease_owner, NEW.state,
                                 NEW.data_count);
  RETURN NULL;
END $$;
CREATE TRIGGER step_trace AFTER INSERT OR UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION step_trace();
"""


@dataclass
class Result:
    step_s: float
    rows: int
    catch_up_s: float
    native_s: float
    steps_catching_up: int
    steps_idle: int
    handoff_ms: list[float]
    load: str


def _post(client: httpx.Client, path: str, body: object = None) -> dict[str, object]:
    reply = client.post(f"{BASE}{path}", json=body)
    if not reply.is_success:
        raise RuntimeError(f"POST {path}: {reply.status_code} {reply.text[:300]}")
    return dict(reply.json())


def _trace(meta: psycopg.Connection[tuple[object, ...]]) -> list[tuple[float, int, str, int]]:
    rows = meta.execute(
        "SELECT extract(epoch FROM at)::float8, epoch, coalesce(owner, ''), data_count"
        " FROM step_trace ORDER BY at"
    ).fetchall()
    return [(float(a), int(e), str(o), int(d or 0)) for a, e, o, d in rows]  # type: ignore[call-overload]


def _handoffs(trace: list[tuple[float, int, str, int]], since: float) -> list[float]:
    """Milliseconds from each hand-off (after `since`) to the claim of the next epoch."""
    latencies = []
    for index, (at, epoch, owner, _) in enumerate(trace):
        if owner != HANDOFF_OWNER or at < since:
            continue
        claim = next((a for a, e, _, _ in trace[index + 1 :] if e == epoch + 1), None)
        if claim is not None:
            latencies.append((claim - at) * 1000)
    return latencies


def _native_copy(schema: str) -> float:
    """Seconds to pipe the source into an empty table with binary COPY (psycopg)."""
    with psycopg.connect(DATA_URL, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".native (LIKE "{schema}".src INCLUDING ALL)')
    with psycopg.connect(DATA_URL) as src, psycopg.connect(DATA_URL) as dst:
        began = time.monotonic()
        with (
            src.cursor().copy(f'COPY "{schema}".src TO STDOUT (FORMAT binary)') as out,
            dst.cursor().copy(f'COPY "{schema}".native FROM STDIN (FORMAT binary)') as into,
        ):
            for chunk in out:
                into.write(chunk)
        dst.commit()
        return time.monotonic() - began


def bench_step(step_s: float, rows: int, idle_s: float, workers: int) -> Result:
    schema = f"bench_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')  # the metadata
    with psycopg.connect(DATA_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')  # the task's tables
        conn.execute(f'CREATE TABLE "{schema}".src (id bigint PRIMARY KEY, txt text, n numeric)')
        conn.execute(
            f'INSERT INTO "{schema}".src SELECT g, md5(g::text), g / 7.0 '
            f"FROM generate_series(1, {rows}) g"
        )
        conn.execute(f'ANALYZE "{schema}".src')
    metadata = (
        f"postgresql+psycopg://postgres@127.0.0.1:5432/postgres?options=-csearch_path%3D{schema}"
    )
    os.environ["OPENFDI_CELERY_STEP_SECONDS"] = str(step_s)  # the workers' environment
    try:
        with (
            tempfile.TemporaryDirectory(prefix="openfdi-steps-") as tmp,
            openfdi_server(Path(tmp) / "data", metadata, workers, "celery") as served,
            signed_client(served.url, AK, SK, PROJECT_ID, timeout=60) as client,
            psycopg.connect(f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}") as meta,
        ):
            meta.autocommit = True
            meta.execute(TRACE)
            content = {"host": "127.0.0.1", "port": 5432, "database_name": "test",
                       "user_name": "postgres", "password": "", "schema": schema}  # fmt: skip
            ds = _post(client, "/datasources", {"datasource_name": "pg", "datasource_type":
                       "POSTGRESQL", "content": content})["datasource_id"]  # fmt: skip
            source = {"table": "src", "incremental": {"column": "id"}}
            target = {"table": "dst", "writeMode": "insert"}
            detail = {"sourceSelectedDatasource": source, "targetSelectedDatasource": target}
            body = {"task": {"task_name": "steps", "task_type": "REALTIME",
                             "source_datasource_id": ds, "target_datasource_id": ds},
                    "task_detail": json.dumps(detail)}  # fmt: skip
            task = _post(client, "/tasks", body)["task"]
            assert isinstance(task, dict)
            task_id = str(task["task_id"])
            load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
            _post(client, "/batch-operation/tasks",
                  {"action_id": "start", "list": [{"task_id": task_id}]})  # fmt: skip
            deadline = time.monotonic() + 600
            while True:
                trace = _trace(meta)
                done = next((a for a, _, _, d in trace if d >= rows), None)
                if done is not None:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the REALTIME run did not catch up within 600 s")
                time.sleep(0.2)
            first_claim = next(a for a, e, _, _ in trace if e >= 1)
            catch_up = done - first_claim
            log(f"step {step_s} s: caught up with {rows:,} rows in {catch_up:.2f} s")
            time.sleep(idle_s)  # following an idle source: steps keep handing off
            trace = _trace(meta)
            _post(client, "/batch-operation/tasks",
                  {"action_id": "stop", "list": [{"task_id": task_id}]})  # fmt: skip
            handoffs = _handoffs(trace, first_claim)
            steps_busy = sum(1 for a, _, o, _ in trace if o == HANDOFF_OWNER and a <= done)
            steps_idle = sum(1 for a, _, o, _ in trace if o == HANDOFF_OWNER and a > done)
            native = _native_copy(schema)
            return Result(step_s, rows, catch_up, native, steps_busy, steps_idle,
                          sorted(handoffs), load)  # fmt: skip
    finally:
        os.environ.pop("OPENFDI_CELERY_STEP_SECONDS", None)
        for admin in (PG_ADMIN_URL, DATA_URL):
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def render(results: list[Result], idle_s: float) -> str:
    lines = [
        "REALTIME PostgreSQL→PostgreSQL run under the Celery executor (2 worker processes, "
        f"RabbitMQ, PostgreSQL metadata), {results[0].rows:,} rows waiting at its start, then "
        f"{idle_s:.0f} s following an idle source. Hand-off: a step's end to the next claim.",
        "",
        "| step budget | catch-up rows/s | native COPY pipe rows/s | ratio | steps catching up "
        "| steps idle | hand-off p50 / p99 / max ms | load (uptime) |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        budget = "0 (whole run)" if r.step_s == 0 else f"{r.step_s:g} s"
        latencies = r.handoff_ms
        handoff = (
            f"{percentile(latencies, 50):.1f} / {percentile(latencies, 99):.1f} / "
            f"{max(latencies):.1f}"
            if latencies
            else "none"
        )
        rate, native = r.rows / r.catch_up_s, r.rows / r.native_s
        load = r.load.split("load average:")[-1].strip()
        lines.append(
            f"| {budget} | {rate:,.0f} | {native:,.0f} | {rate / native:.2f}x | "
            f"{r.steps_catching_up} | {r.steps_idle} | {handoff} | {load} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--step", type=float, action="append", help="repeatable (seconds)")
    args = parser.parse_args()
    results = [
        bench_step(step, args.rows, args.idle, args.workers) for step in args.step or [0, 5, 0.5]
    ]
    print(render(results, args.idle))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
