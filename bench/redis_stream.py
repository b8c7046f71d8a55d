"""Redis stream -> PostgreSQL: openfdi next to a minimal hand-written loop with the same
guarantees (issue 11's benchmark, Redis pair).

    .venv/bin/python bench/redis_stream.py                 # 200,000 messages of ~300 bytes
    .venv/bin/python bench/redis_stream.py --messages 50000 --rounds 1

Both read the same stream (127.0.0.1:6379), each through its own consumer group, and write the
same six typed columns into PostgreSQL (127.0.0.1:5432) with insert:

- the loop: XREADGROUP COUNT 5000, json.loads (decimals exact), COPY into the table, commit,
  then XACK the batch; until the group has read everything;
- openfdi: a real `openfdi serve` (free port, own data dir), a TIMING task created through the
  signed API, `POST .../run`, polled until it ends; messages/s from the run's start and end.

Rounds alternate (loop, openfdi, ...; 3 by default) and the best rate of each side counts;
every table is counted after its round. The table is printed and written to
bench/results/redis_stream.md; the stream, the schema and the server are removed at the end.
"""

from __future__ import annotations

# bench/copy.py would shadow the standard library's `copy` (the script's directory comes first
# on sys.path): drop that directory before anything imports it. Hence E402 below.
# ruff: noqa: E402
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # the repository's root: `bench.served`

import argparse
import json
import platform
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import redis
from bench.served import AK, BASE, PROJECT_ID, SK, log, openfdi_server

from openfdi.client import signed_client

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
RESULTS = Path(__file__).resolve().parent / "results" / "redis_stream.md"
GOAL_RATIO = 0.8
GOAL_P99_MS = 500
GOAL_RSS_MB = 200
RATE = 2_000
LATENCY_SECONDS = 15

FIELDS = [
    {"name": "id", "path": "$.order.id", "type": "bigint"},
    {"name": "name", "path": "$.customer.name", "type": "text"},
    {"name": "city", "path": "$.customer.city", "type": "text"},
    {"name": "amount", "path": "$.amount", "type": "decimal"},
    {"name": "note", "path": "$.note", "type": "text"},
    {"name": "body", "path": "$.body", "type": "text"},
]
DDL = "(id bigint, name text, city text, amount numeric, note text, body text)"


def publish(client: redis.Redis, stream: str, n: int) -> int:
    """n JSON messages of about 300 bytes; returns their mean size."""
    size = 0
    pipe = client.pipeline(transaction=False)
    for i in range(1, n + 1):
        doc = {
            "order": {"id": i},
            "customer": {"name": f"Kunde Nr. {i} ü", "city": "Zürich"},
            "amount": f"{i % 100000}.{i % 100:02d}",
            "note": None if i % 7 == 0 else "express",
            "body": "lorem ipsum dolor sit amet " * 7,
        }
        payload = json.dumps(doc, ensure_ascii=False).encode()
        size += len(payload)
        pipe.xadd(stream, {"payload": payload})
        if i % 5000 == 0:
            pipe.execute()
    pipe.execute()
    return size // max(n, 1)


def hand_loop(client: redis.Redis, stream: str, schema: str, table: str) -> float:
    """The minimal job: read a batch, COPY it, commit, acknowledge. Returns seconds."""
    client.xgroup_create(stream, table, id="0")
    started = time.perf_counter()
    with psycopg.connect(**PG) as conn:
        conn.execute(f'CREATE TABLE "{schema}"."{table}" {DDL}')
        conn.commit()
        while True:
            answer = client.xreadgroup(table, "hand", {stream: ">"}, count=5000)
            entries = answer[0][1] if answer else []
            if not entries:
                break
            with conn.cursor() as cur, cur.copy(f'COPY "{schema}"."{table}" FROM STDIN') as copy:
                for _id, fields in entries:
                    doc = json.loads(fields[b"payload"], parse_float=Decimal)
                    customer = doc["customer"]
                    copy.write_row(
                        (
                            doc["order"]["id"],
                            customer["name"],
                            customer["city"],
                            Decimal(doc["amount"]),
                            doc["note"],
                            doc["body"],
                        )
                    )
            conn.commit()
            client.xack(stream, table, *(entry_id for entry_id, _ in entries))
    return time.perf_counter() - started


class OpenFdi:
    """The same job as TIMING tasks of a running `openfdi serve`."""

    def __init__(self, url: str, schema: str) -> None:
        self.client = signed_client(url, AK, SK, PROJECT_ID, timeout=60)
        self.ids = []
        for kind, content in (
            ("REDIS", {"host": "127.0.0.1", "port": "6379"}),
            ("POSTGRESQL", {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
                            "user_name": "postgres", "password": "unused", "schema": schema}),
        ):  # fmt: skip
            body = {"datasource_name": f"bench-{kind}", "datasource_type": kind, "content": content}
            reply = self.client.post(f"{BASE}/datasources", json=body)
            reply.raise_for_status()
            self.ids.append(reply.json()["datasource_id"])

    def task(self, name: str, detail: dict[str, Any], task_type: str = "TIMING") -> str:
        body = {
            "task": {"task_name": f"bench-{name}", "task_type": task_type,
                     "source_datasource_id": self.ids[0], "target_datasource_id": self.ids[1]},
            "task_detail": json.dumps(detail),
        }  # fmt: skip
        reply = self.client.post(f"{BASE}/tasks", json=body)
        reply.raise_for_status()
        return str(reply.json()["task"]["task_id"])

    def batch(self, task: str, action: str) -> None:
        body = {"action_id": action, "list": [{"task_id": task}]}
        self.client.post(f"{BASE}/batch-operation/tasks", json=body).raise_for_status()

    def run(self, stream: str, table: str) -> tuple[float, dict[str, Any]]:
        """One run into `table` (its own group); (seconds from its start to its end, its log)."""
        detail = {
            "sourceSelectedDatasource": {"table": stream,
                                         "message": {"group": table, "fields": FIELDS}},
            "targetSelectedDatasource": {"table": table},
        }  # fmt: skip
        task = self.task(table, detail)
        run = self.client.post(f"{BASE}/tasks/{task}/run").json()["run_id"]
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            logs = self.client.get(f"{BASE}/tasks/{task}/monitor-logs").json()["entities"]
            entry = next((e for e in logs if e["id"] == run), None)
            if entry and entry["execute_status"] != "RUNNING" and entry["end_time"]:
                if entry["execute_status"] != "SUCCESS":
                    raise RuntimeError(f"the openfdi run ended {entry['execute_status']}: {entry}")
                return (entry["end_time"] - entry["start_time"]) / 1000, entry
            time.sleep(0.2)
        raise RuntimeError("the openfdi run did not end in 30 minutes")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def latency(openfdi: OpenFdi, client: redis.Redis, schema: str, stream: str) -> list[float]:
    """Publish to committed, in ms, of every message published at a steady rate into a
    REALTIME task's stream. A poller sees the highest committed id every 10 ms: one reader
    commits the stream in order, so every id up to it is committed."""
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".live (id bigint, sent double precision)')
    fields = [{"name": "id", "path": "$.id", "type": "bigint"},
              {"name": "sent", "path": "$.sent", "type": "double"}]  # fmt: skip
    detail = {
        "sourceSelectedDatasource": {"table": "live", "message": {"key": stream, "fields": fields}},
        "targetSelectedDatasource": {"table": "live"},
    }
    task = openfdi.task("live", detail, "REALTIME")
    openfdi.batch(task, "start")
    seen: dict[int, float] = {}  # committed id -> when it was first seen
    done = threading.Event()
    total = RATE * LATENCY_SECONDS

    def poll() -> None:
        with psycopg.connect(**PG, autocommit=True) as conn:
            while not done.is_set():
                row = conn.execute(f'SELECT max(id) FROM "{schema}".live').fetchone()
                now = time.time()
                if row and row[0] is not None:
                    top = int(row[0])
                    for i in range(len(seen) + 1, top + 1):
                        seen.setdefault(i, now)
                    if top >= total:
                        return
                time.sleep(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    sent: dict[int, float] = {}
    started = time.monotonic()
    chunk = RATE // 100  # every 10 ms
    for tick in range(LATENCY_SECONDS * 100):
        time.sleep(max(0.0, started + tick / 100 - time.monotonic()))
        pipe = client.pipeline(transaction=False)
        now = time.time()
        for i in range(tick * chunk + 1, (tick + 1) * chunk + 1):
            sent[i] = now
            pipe.xadd(stream, {"payload": json.dumps({"id": i, "sent": now})})
        pipe.execute()
    poller.join(60)
    done.set()
    openfdi.batch(task, "stop")
    if len(seen) < total:
        raise RuntimeError(f"only {len(seen)} of {total} messages were committed in time")
    return sorted((seen[i] - sent[i]) * 1000 for i in range(1, total + 1))


def pct(values: list[float], p: float) -> float:
    """The p-th percentile of sorted values (nearest rank)."""
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


def count(schema: str, table: str) -> int:
    with psycopg.connect(**PG) as conn:
        row = conn.execute(f'SELECT count(DISTINCT id) FROM "{schema}"."{table}"').fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.messages
    name = f"bench_{uuid.uuid4().hex[:8]}"
    client = redis.Redis()
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        log(f"publishing {n:,} messages to stream {name}")
        size = publish(client, name, n)
        hand_rates: list[float] = []
        openfdi_rates: list[float] = []
        with tempfile.TemporaryDirectory() as tmp, openfdi_server(Path(tmp)) as (url, pid):
            openfdi = OpenFdi(url, name)
            # Alternating rounds, best of each: this machine is shared, and a neighbour's burst
            # should not decide the ratio.
            for r in range(1, args.rounds + 1):
                log(f"round {r}: hand-written loop")
                hand_rates.append(n / hand_loop(client, name, name, f"hand{r}"))
                log(f"round {r}: openfdi")
                seconds, entry = openfdi.run(name, f"openfdi{r}")
                openfdi_rates.append(n / seconds)
                for table in (f"hand{r}", f"openfdi{r}"):
                    if count(name, table) != n:
                        raise RuntimeError(f"{table} holds {count(name, table)} rows, not {n}")
            log(f"latency: {RATE:,} messages/s for {LATENCY_SECONDS} s into a REALTIME task")
            delays = latency(openfdi, client, name, f"{name}:live")
            rss = peak_rss_mb(pid)
        hand_rate, openfdi_rate = max(hand_rates), max(openfdi_rates)
        ratio = openfdi_rate / hand_rate
        rounds = ", ".join(
            f"{h:,.0f}/{o:,.0f}" for h, o in zip(hand_rates, openfdi_rates, strict=True)
        )
        table = "\n".join(
            [
                f"Redis stream -> PostgreSQL, {n:,} JSON messages of ~{size} bytes "
                f"({platform.node()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')})",
                "",
                "| pair | loop msg/s | openfdi msg/s | ratio | goal |",
                "|---|---:|---:|---:|---:|",
                f"| Redis stream -> PostgreSQL | {hand_rate:,.0f} | {openfdi_rate:,.0f} | "
                f"{ratio:.2f} | >= {GOAL_RATIO} {'met' if ratio >= GOAL_RATIO else 'NOT met'} |",
                "",
                "Loop: XREADGROUP COUNT 5000, json.loads, COPY, commit, XACK (redis-py, psycopg). "
                "openfdi: a TIMING task through `openfdi serve`, rate from the run's start and end "
                f"(last run: read {entry['read_spend_time']} ms, write "
                f"{entry['write_spend_time']} ms). Best of {args.rounds} alternating rounds "
                f"(loop/openfdi msg/s: {rounds}).",
                "",
                f"Latency, publish to committed in PostgreSQL, {RATE:,} messages/s for "
                f"{LATENCY_SECONDS} s into a REALTIME task (seen by a 10 ms poller): "
                f"p50 {pct(delays, 50):.0f} ms, p99 {pct(delays, 99):.0f} ms, "
                f"max {delays[-1]:.0f} ms (goal p99 < {GOAL_P99_MS} ms: "
                f"{'met' if pct(delays, 99) < GOAL_P99_MS else 'NOT met'}). "
                f"Peak RSS of the server over the whole bench: {rss:.0f} MB "
                f"(goal < {GOAL_RSS_MB} MB: {'met' if rss < GOAL_RSS_MB else 'NOT met'}).",
            ]
        )
        print(table)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(table + "\n")
    finally:
        client.delete(name, f"{name}:live")
        with psycopg.connect(**PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


if __name__ == "__main__":
    main()
