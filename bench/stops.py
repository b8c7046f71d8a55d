"""Stop latency across processes: the local executor against the Celery executor.

    .venv/bin/python -m bench.stops                      # 20 stops on each executor
    .venv/bin/python -m bench.stops --stops 5 --rows 1000000

For each executor it starts a real `openfdi serve` on 127.0.0.1 with PostgreSQL metadata (a fresh
schema, dropped afterwards): `local` executes runs in 2 worker processes of the server; `celery`
publishes them to RabbitMQ for 2 `openfdi worker --executor celery` processes, as a second host
would run them (here on the same machine: the stop travels through the metadata database, as it
would between hosts). A PostgreSQL table of `--rows` rows is copied to another table by a TIMING
task; `--stops` times the task is run, left to copy for 0.5-1 s, and terminated through the API.

Stop latency is the run's `end_time` (written by whichever process executed it) minus the moment
the terminate call was sent; the goal is p99 < 1 s. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import json
import math
import random
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from bench.scheduler import AK, BASE, PG_ADMIN_URL, PROJECT_ID, SK, openfdi_server
from bench.served import log

from openfdi.client import signed_client

GOAL_P99_MS = 1000.0
SEED = 20261206
DATA_URL = "postgresql://postgres@127.0.0.1:5432/test"
"""The tables the tasks copy: not the metadata database, which no data source may reach."""


@dataclass
class Result:
    executor: str
    latencies_ms: list[float]
    outcomes: Counter[str]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(1, math.ceil(q / 100 * len(sorted_values))) - 1]


def _post(client: httpx.Client, path: str, body: object = None) -> dict[str, object]:
    reply = client.post(f"{BASE}{path}", json=body)
    if not reply.is_success:
        raise RuntimeError(f"POST {path}: {reply.status_code} {reply.text[:300]}")
    return dict(reply.json())


def _ended(client: httpx.Client, task_id: str, run_id: str, timeout_s: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply = client.get(f"{BASE}/tasks/{task_id}/monitor-logs", params={"limit": 5})
        reply.raise_for_status()
        for entry in reply.json()["entities"]:
            if entry["id"] == run_id and entry["execute_status"] != "RUNNING" and entry["end_time"]:
                return dict(entry)
        time.sleep(0.02)
    raise RuntimeError(f"run {run_id} did not end within {timeout_s:.0f} s")


def _running(client: httpx.Client, task_id: str, run_id: str, timeout_s: float) -> None:
    """Wait until the run has copied something (claimed by a worker and writing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply = client.get(f"{BASE}/tasks/{task_id}/monitor-logs", params={"limit": 5})
        reply.raise_for_status()
        for entry in reply.json()["entities"]:
            if entry["id"] == run_id and entry["execute_status"] == "RUNNING":
                return
        time.sleep(0.02)
    raise RuntimeError(f"run {run_id} was not running within {timeout_s:.0f} s")


def bench_executor(executor: str, workers: int, rows: int, stops: int) -> Result:
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
    metadata = (
        f"postgresql+psycopg://postgres@127.0.0.1:5432/postgres?options=-csearch_path%3D{schema}"
    )
    try:
        with (
            tempfile.TemporaryDirectory(prefix="openfdi-stops-") as tmp,
            openfdi_server(Path(tmp) / "data", metadata, workers, executor) as served,
            signed_client(served.url, AK, SK, PROJECT_ID, timeout=60) as client,
        ):
            content = {"host": "127.0.0.1", "port": 5432, "database_name": "test",
                       "user_name": "postgres", "password": "", "schema": schema}  # fmt: skip
            ds = _post(client, "/datasources", {"datasource_name": "pg", "datasource_type":
                       "POSTGRESQL", "content": content})["datasource_id"]  # fmt: skip
            detail = {"sourceSelectedDatasource": {"table": "src"},
                      "targetSelectedDatasource": {"table": "dst",
                                                   "writeMode": "truncate_insert"}}  # fmt: skip
            body = {"task": {"task_name": "stops", "task_type": "TIMING",
                             "source_datasource_id": ds, "target_datasource_id": ds},
                    "task_detail": json.dumps(detail)}  # fmt: skip
            task = _post(client, "/tasks", body)["task"]
            assert isinstance(task, dict)
            task_id = str(task["task_id"])
            rng = random.Random(SEED)
            latencies: list[float] = []
            outcomes: Counter[str] = Counter()
            for index in range(stops):
                run_id = str(_post(client, f"/tasks/{task_id}/run")["run_id"])
                _running(client, task_id, run_id, 60)
                time.sleep(rng.uniform(0.5, 1.0))
                sent_ms = time.time() * 1000
                _post(client, f"/tasks/{task_id}/terminate")
                entry = _ended(client, task_id, run_id, 60)
                outcomes[str(entry["execute_status"])] += 1
                if entry["execute_status"] == "CANCELLED":
                    latencies.append(float(str(entry["end_time"])) - sent_ms)
                log(f"{executor} stop {index + 1}/{stops}: {entry['execute_status']} after "
                    f"{entry['data_count']:,} rows, terminate -> end "
                    f"{float(str(entry['end_time'])) - sent_ms:.0f} ms")  # fmt: skip
            return Result(executor, sorted(latencies), outcomes)
    finally:
        for admin in (PG_ADMIN_URL, DATA_URL):
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def render(results: list[Result], rows: int, workers: int) -> str:
    lines = [
        f"Stop latency, {rows:,}-row PostgreSQL→PostgreSQL copies terminated after 0.5-1 s, "
        f"{workers} worker processes, PostgreSQL metadata; terminate call → run end_time.",
        "",
        "| executor | stops | outcomes | p50 ms | p99 ms | max ms | goal p99 < 1 s |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        p99 = percentile(r.latencies_ms, 99)
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))
        lines.append(
            f"| {r.executor} | {sum(r.outcomes.values())} | {outcomes} | "
            f"{percentile(r.latencies_ms, 50):.0f} | {p99:.0f} | "
            f"{max(r.latencies_ms, default=float('nan')):.0f} | "
            f"{'met' if p99 < GOAL_P99_MS else 'MISSED'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--stops", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--executor", action="append", choices=["local", "celery"], help="repeatable"
    )
    args = parser.parse_args()
    results = [
        bench_executor(executor, args.workers, args.rows, args.stops)
        for executor in args.executor or ["local", "celery"]
    ]
    print(render(results, args.rows, args.workers))
    return 0 if all(percentile(r.latencies_ms, 99) < GOAL_P99_MS for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
