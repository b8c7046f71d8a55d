"""Scheduler benchmark: thousands of started TIMING tasks firing every minute, on SQLite and
PostgreSQL metadata.

    .venv/bin/python bench/scheduler.py            # 10,000 tasks, 5 minutes measured
    .venv/bin/python bench/scheduler.py --quick    # 1,000 tasks, 1 minute measured
    .venv/bin/python bench/scheduler.py --workers 0 --workers 2   # runs in the server, then in
                                                                  # 2 worker processes
    .venv/bin/python bench/scheduler.py --executor celery --workers 2   # RabbitMQ, 2 celery
                                                                        # worker processes

For each metadata backend it starts a real `openfdi serve` on 127.0.0.1 (a free port, its own
data dir; on PostgreSQL a fresh schema on 127.0.0.1:5432, dropped afterwards; the engine on, as
by default) and creates through the API:

- a SQLite source database with a one-row table and ten SQLite target databases;
- N TIMING tasks (source -> one of the targets, upsert on the key), each with a plan firing every
  minute (`period` MIN, `dispatch_interval` 1) whose `start_datetime` offsets spread the fires
  evenly across the minute; then it starts them all (batch start, 10 per call).

After a warm-up it measures, over the window, for every fire that fell due in it:

- fire lateness: run `start_time` (`runs.started_at`, set when the executor claims the run)
  minus the fire time; and the planner's part of it: run creation minus fire time;
- fires recorded (runs and skipped entries) against the fires the plans make in the window;
- the server process's CPU share (/proc/<pid>/stat utime+stime over the window, one core =
  100 %): the engine executing the runs is included; the planner's own share comes from the
  cumulative `scheduler stats:` log line the planner writes every minute (its tick's thread
  CPU time), over the stats lines around the window.

Then it creates 10 more tasks with a plan firing every second, starts them in one batch call,
and reports the time from the call to each task's first run start (with the engine already
under the load above).

The markdown table is printed and written to bench/results/scheduler.md. Traffic goes to
127.0.0.1 only.
"""

from __future__ import annotations

# bench/copy.py (the name issue 3 gives it) shadows the standard library's `copy` module for any
# script run from this directory, since Python puts the script's directory first on sys.path:
# drop it before anything imports `copy` (dataclasses does). Hence E402 below.
# ruff: noqa: E402
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # the repository's root: `bench.served`

import argparse
import contextlib
import json
import math
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import httpx
import psycopg
from bench.served import AK, BASE, INSTANCE_ID, PROJECT_ID, SK  # one home for the bench's keys

from openfdi.client import signed_client

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).resolve().parent / "results" / "scheduler.md"
TARGETS = 10
PLAN_ORIGIN_MS = 1767225600000  # 2026-01-01T00:00:00Z
GOAL_P99_MS = 1000.0
GOAL_CPU = 25.0
STATS = re.compile(r"^(\S+ \S+) INFO openfdi\.scheduler\.planner scheduler stats: (.*)$")


@dataclass(frozen=True)
class Result:
    backend: str
    workers: int
    tasks: int
    window_s: float
    expected_fires: int
    recorded: int
    ran: int
    skipped: int
    not_started: int
    late_p50_ms: float
    late_p99_ms: float
    late_max_ms: float
    create_p99_ms: float
    server_cpu: float
    planner_cpu: float | None
    first_fire_p50_s: float
    first_fire_max_s: float


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU of the server and its worker processes (children alive for the whole window)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return cpu_seconds(pid) + sum(cpu_seconds(int(c)) for c in children)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_schema() -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def no_schema() -> Iterator[None]:
    yield None


def _openfdi_command() -> list[str]:
    script = Path(sys.executable).with_name("openfdi")
    if script.exists():
        return [str(script)]
    found = shutil.which("openfdi")
    return [found] if found else [sys.executable, "-m", "openfdi"]


BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _celery_env(queue: str) -> dict[str, str]:
    """--executor celery: the server publishes each run to RabbitMQ on 127.0.0.1 (a queue of
    this run's own), for `openfdi worker --executor celery` processes."""
    return {"OPENFDI_EXECUTOR": "celery", "OPENFDI_CELERY_BROKER_URL": BROKER_URL,
            "OPENFDI_CELERY_QUEUE": queue}  # fmt: skip


@contextmanager
def celery_workers(env: dict[str, str], count: int, log_dir: Path) -> Iterator[list[int]]:
    """`count` celery worker processes (same environment and data dir as the server, as on a
    second host sharing its SQLite files would not be: here they share this machine's)."""
    procs = []
    try:
        for i in range(count):
            with (log_dir / f"worker-{i}.log").open("wb") as out:
                command = [*_openfdi_command(), "worker", "--executor", "celery", "--no-migrate"]
                procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=out))
        deadline = time.monotonic() + 90
        for i in range(count):
            while b" ready." not in (log_dir / f"worker-{i}.log").read_bytes():
                if time.monotonic() > deadline or procs[i].poll() is not None:
                    raise RuntimeError(f"celery worker {i} did not start")
                time.sleep(0.2)
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        import pika

        params = pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F")
        with contextlib.closing(pika.BlockingConnection(params)) as conn:
            conn.channel().queue_delete(env["OPENFDI_CELERY_QUEUE"])
            conn.channel().exchange_delete(env["OPENFDI_CELERY_QUEUE"])


class Served(NamedTuple):
    url: str
    pid: int
    log: Path
    worker_pids: list[int]
    """The Celery workers' processes (none with the local executor)."""


@contextmanager
def openfdi_server(
    data_dir: Path, database_url: str | None, workers: int, executor: str = "local"
) -> Iterator[Served]:
    """`openfdi serve` (INFO logs, for the planner's stats) on a free port.
    With the celery executor, `workers` celery worker processes run beside it."""
    port = free_port()
    celery = _celery_env(f"openfdi-bench-{os.getpid()}") if executor == "celery" else {}
    env = {
        **os.environ,
        **celery,
        "OPENFDI_WORKER_PROCESSES": str(0 if celery else workers),
        "OPENFDI_DATA_DIR": str(data_dir),
        # The bench's SQLite files sit beside the data dir (SQLite data sources are confined).
        "OPENFDI_SQLITE_ROOTS": str(data_dir.parent),
        "OPENFDI_BOOTSTRAP_PROJECT_ID": PROJECT_ID,
        "OPENFDI_BOOTSTRAP_INSTANCE_ID": INSTANCE_ID,
        "OPENFDI_BOOTSTRAP_AK": AK,
        "OPENFDI_BOOTSTRAP_SK": SK,
        "OPENFDI_BOOTSTRAP_USER": "bench",
        "OPENFDI_BOOTSTRAP_PASSWORD": "bench-password",
    }
    env.pop("OPENFDI_DATABASE_URL", None)
    if database_url:
        env["OPENFDI_DATABASE_URL"] = database_url
    command = [*_openfdi_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--no-access-log", "--log-level", "info"]
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"openfdi serve exited: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("openfdi serve did not answer /healthz within 60 s")
                time.sleep(0.1)
            if celery:
                with celery_workers(env, workers, data_dir) as worker_pids:
                    yield Served(url, process.pid, log_path, worker_pids)
            else:
                yield Served(url, process.pid, log_path, [])
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _datasource(client: httpx.Client, name: str, path: Path) -> str:
    body = {
        "datasource_name": name,
        "datasource_type": "SQLITE",
        "content": {"database_name": str(path)},
    }
    reply = client.post(f"{BASE}/datasources", json=body)
    reply.raise_for_status()
    return str(reply.json()["datasource_id"])


DETAIL = json.dumps(
    {
        "sourceSelectedDatasource": {"table": "orders"},
        "targetSelectedDatasource": {"table": "orders_copy", "writeMode": "upsert",
                                     "keyColumns": ["id"]},
    }
)  # fmt: skip


def create_tasks(
    url: str, source: str, targets: list[str], count: int, plan: Callable[[int], dict[str, object]]
) -> list[str]:
    local = threading.local()

    def one(index: int) -> str:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = signed_client(url, AK, SK, PROJECT_ID, timeout=120)
        body = {
            "task": {
                "task_name": f"sched-{uuid.uuid4().hex[:12]}",
                "task_type": "TIMING",
                "source_datasource_id": source,
                "target_datasource_id": targets[index % len(targets)],
            },
            "task_detail": DETAIL,
        }
        reply = client.post(f"{BASE}/tasks", json=body)
        if reply.status_code != 200:
            raise RuntimeError(f"create task: {reply.status_code} {reply.text}")
        task_id = str(reply.json()["task"]["task_id"])
        reply = client.post(f"{BASE}/tasks/{task_id}/dispatches", json=plan(index))
        if reply.status_code != 200:
            raise RuntimeError(f"create plan: {reply.status_code} {reply.text}")
        return task_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))


def start_tasks(url: str, ids: list[str]) -> None:
    batches = [ids[i : i + 10] for i in range(0, len(ids), 10)]
    local = threading.local()

    def one(batch: list[str]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = signed_client(url, AK, SK, PROJECT_ID, timeout=120)
        body = {"action_id": "start", "list": [{"task_id": t} for t in batch]}
        reply = client.post(f"{BASE}/batch-operation/tasks", json=body)
        if reply.status_code != 200 or reply.json()["success_count"] != len(batch):
            raise RuntimeError(f"batch start: {reply.status_code} {reply.text}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, batches))


class Metadata:
    """Read-only queries on the server's metadata database."""

    def __init__(self, data_dir: Path, schema: str | None) -> None:
        self.data_dir = data_dir
        self.schema = schema

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        if self.schema is None:
            conn = sqlite3.connect(self.data_dir / "openfdi.db", timeout=60)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        pg_sql = sql.replace("?", "%s")
        dsn = f"{PG_ADMIN_URL}?options=-csearch_path%3D{self.schema}"
        with psycopg.connect(dsn) as conn:
            return [tuple(r) for r in conn.execute(pg_sql, params).fetchall()]  # type: ignore[arg-type]


def expected_fires(offsets: list[int], start_ms: int, end_ms: int) -> int:
    """Fires of every-minute plans (fire = offset + k minutes) in [start_ms, end_ms)."""
    total = 0
    for offset in offsets:
        first = offset + math.ceil((start_ms - offset) / 60_000) * 60_000
        if first < end_ms:
            total += (end_ms - 1 - first) // 60_000 + 1
    return total


def planner_cpu(log_path: Path, start_ms: int, end_ms: int) -> float | None:
    """The planner's CPU share between the stats lines around [start_ms, end_ms]."""
    lines: list[tuple[float, float]] = []
    for line in log_path.read_text(errors="replace").splitlines():
        match = STATS.match(line)
        if not match:
            continue
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone(UTC)
        fields = dict(f.split("=", 1) for f in match.group(2).split())
        lines.append((stamp.timestamp() * 1000, float(fields["cpu_s"])))
    # The line at or before the window's start (else the first inside it), and the first line
    # at or after its end: the planner's CPU rate over about the window (lines come each minute).
    before = [entry for entry in lines if entry[0] <= start_ms] or lines[:1]
    after = [entry for entry in lines if entry[0] >= end_ms]
    if not before or not after or after[0][0] <= before[-1][0]:
        return None
    (t0, c0), (t1, c1) = before[-1], after[0]
    return (c1 - c0) / ((t1 - t0) / 1000) * 100


def wait_stats_after(log_path: Path, end_ms: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in reversed(log_path.read_text(errors="replace").splitlines()):
            match = STATS.match(line)
            if match:
                stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone(UTC)
                if stamp.timestamp() * 1000 >= end_ms:
                    return
                break
        time.sleep(1)


def bench_backend(
    backend: str,
    workers: int,
    tasks: int,
    warmup_s: float,
    window_s: float,
    log: Callable[[str], None],
) -> Result:
    with tempfile.TemporaryDirectory(prefix="openfdi-sched-") as tmp:
        root = Path(tmp)
        with postgres_schema() if backend == "postgres" else no_schema() as schema:
            url = None
            if schema is not None:
                url = (
                    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
                    f"?options=-csearch_path%3D{schema}"
                )
            with openfdi_server(root / "data", url, workers, EXECUTOR) as (
                base_url,
                pid,
                log_path,
                _worker_pids,
            ):
                label = f"{backend}, celery" if EXECUTOR == "celery" else backend
                return _measure(label, workers, root, schema, base_url, pid, log_path, tasks,
                                warmup_s, window_s, log)  # fmt: skip


def _measure(
    backend: str,
    workers: int,
    root: Path,
    schema: str | None,
    url: str,
    pid: int,
    log_path: Path,
    tasks: int,
    warmup_s: float,
    window_s: float,
    log: Callable[[str], None],
) -> Result:
    source_path = root / "source.db"
    with sqlite3.connect(source_path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
        conn.execute("INSERT INTO orders VALUES (1, 'one row')")
    with signed_client(url, AK, SK, PROJECT_ID, timeout=60) as client:
        source = _datasource(client, "bench-source", source_path)
        targets = []
        for i in range(TARGETS):
            path = root / f"target-{i}.db"
            sqlite3.connect(path).close()
            targets.append(_datasource(client, f"bench-target-{i}", path))

    offsets = [PLAN_ORIGIN_MS + index * 60_000 // tasks for index in range(tasks)]

    def every_minute(index: int) -> dict[str, object]:
        return {"start_datetime": offsets[index], "period": "MIN", "dispatch_interval": 1}

    began = time.monotonic()
    ids = create_tasks(url, source, targets, tasks, every_minute)
    log(f"{backend}: {tasks} tasks with plans created in {time.monotonic() - began:.0f} s")
    began = time.monotonic()
    start_tasks(url, ids)
    log(f"{backend}: started in {time.monotonic() - began:.0f} s; warming up {warmup_s:.0f} s")
    time.sleep(warmup_s)

    start_ms = int(time.time() * 1000)
    cpu_before = tree_cpu_seconds(pid)
    time.sleep(window_s)
    end_ms = int(time.time() * 1000)
    server_cpu = (tree_cpu_seconds(pid) - cpu_before) / ((end_ms - start_ms) / 1000) * 100
    log(f"{backend}: window done; server CPU {server_cpu:.0f} %")

    # First fire after a batch start, with the load above still running.
    every_second = {"start_datetime": PLAN_ORIGIN_MS, "use_quartz_cron": True,
                    "cron": "* * * * * ?"}  # fmt: skip
    fresh = create_tasks(url, source, targets, 10, lambda _i: every_second)
    asked = time.time()
    start_tasks(url, fresh)
    db = Metadata(root / "data", schema)
    marks = ",".join("?" for _ in fresh)
    first: list[float] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = db.query(
            f"SELECT task_id, MIN(started_at) FROM runs WHERE task_id IN ({marks})"
            " AND started_at IS NOT NULL GROUP BY task_id",
            tuple(fresh),
        )
        if len(rows) == len(fresh):
            first = sorted(float(started) / 1000 - asked for _, started in rows)  # type: ignore[arg-type]
            break
        time.sleep(0.05)
    log(f"{backend}: batch start to first fire: {first}")

    time.sleep(10)  # let runs of fires at the end of the window start
    rows = db.query(
        "SELECT fire_time, created_at, started_at, state FROM runs"
        " WHERE fire_time >= ? AND fire_time < ? AND task_id NOT IN (" + marks + ")",
        (start_ms, end_ms, *fresh),
    )
    ran = [r for r in rows if r[3] != "skipped"]
    started = sorted(float(r[2]) - float(r[0]) for r in ran if r[2] is not None)  # type: ignore[arg-type]
    created = sorted(float(r[1]) - float(r[0]) for r in ran)  # type: ignore[arg-type]
    wait_stats_after(log_path, end_ms, 75)
    return Result(
        backend=backend,
        workers=workers,
        tasks=tasks,
        window_s=(end_ms - start_ms) / 1000,
        expected_fires=expected_fires(offsets, start_ms, end_ms),
        recorded=len(rows),
        ran=len(ran),
        skipped=len(rows) - len(ran),
        not_started=len(ran) - len(started),
        late_p50_ms=percentile(started, 50),
        late_p99_ms=percentile(started, 99),
        late_max_ms=started[-1] if started else float("nan"),
        create_p99_ms=percentile(created, 99),
        server_cpu=server_cpu,
        planner_cpu=planner_cpu(log_path, start_ms, end_ms),
        first_fire_p50_s=percentile(first, 50),
        first_fire_max_s=first[-1] if first else float("nan"),
    )


def render(results: list[Result], header: list[str]) -> str:
    lines = [
        *header,
        "",
        "| backend | worker processes | tasks | window s | fires expected | recorded | ran "
        "| skipped | not started "
        "| lateness p50 ms | p99 ms | max ms | created p99 ms | server CPU % | planner CPU % "
        "| batch start → first fire p50 / max s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        planner = f"{r.planner_cpu:.1f}" if r.planner_cpu is not None else "n/a"
        lines.append(
            f"| {r.backend} | {r.workers} | {r.tasks:,} | {r.window_s:.0f} | {r.expected_fires:,} "
            f"| {r.recorded:,} | {r.ran:,} | {r.skipped:,} | {r.not_started:,} "
            f"| {r.late_p50_ms:.0f} | {r.late_p99_ms:.0f} | {r.late_max_ms:.0f} "
            f"| {r.create_p99_ms:.0f} | {r.server_cpu:.0f} | {planner} "
            f"| {r.first_fire_p50_s:.2f} / {r.first_fire_max_s:.2f} |"
        )
    lines.append("")
    for r in results:
        lateness = "met" if r.late_p99_ms < GOAL_P99_MS else "NOT met"
        cpu = r.planner_cpu
        cpu_verdict = "n/a" if cpu is None else ("met" if cpu < GOAL_CPU else "NOT met")
        lines.append(
            f"- {r.backend}, {r.workers} worker processes: fire lateness p99 < "
            f"{GOAL_P99_MS:.0f} ms: **{lateness}**; "
            f"scheduler (planner) CPU < {GOAL_CPU:.0f} % of a core: **{cpu_verdict}**."
        )
    lines += [
        "",
        "Lateness is run start (the executor's claim) minus fire time; *created* is the run "
        "row's creation (the planner) minus fire time. Server CPU includes the engine executing "
        "every run (the server's threads, or its worker processes: the whole process tree); "
        "planner CPU is the planner's own tick "
        "(thread CPU time, from its stats log line). *Not started*: runs of fires in the window "
        "not yet claimed 10 s after it ended.",
    ]
    return "\n".join(lines) + "\n"


EXECUTOR = "local"


def main() -> int:
    global TARGETS, EXECUTOR  # settings of this run of the script
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1,000 tasks, 1 minute")
    parser.add_argument("--tasks", type=int, help="started TIMING tasks (default 10,000)")
    parser.add_argument("--minutes", type=float, help="measured window (default 5)")
    parser.add_argument(
        "--backend", action="append", choices=("sqlite", "postgres"), help="repeatable"
    )
    parser.add_argument(
        "--targets",
        type=int,
        default=TARGETS,
        help=f"SQLite target files the tasks share (default {TARGETS}); runs writing the same "
        "file from several worker processes wait on its lock",
    )
    parser.add_argument(
        "--workers",
        type=int,
        action="append",
        help="OPENFDI_WORKER_PROCESSES of the server (repeatable; default 0: runs in the server)",
    )
    parser.add_argument(
        "--executor",
        choices=("local", "celery"),
        default="local",
        help="celery: the server publishes runs to RabbitMQ (127.0.0.1:5672) and --workers "
        "`openfdi worker --executor celery` processes execute them (PostgreSQL metadata only)",
    )
    args = parser.parse_args()
    TARGETS = args.targets
    EXECUTOR = args.executor
    if EXECUTOR == "celery" and (args.backend or ["postgres"]) != ["postgres"]:
        parser.error("--executor celery needs --backend postgres (shared metadata)")
    if EXECUTOR == "celery":
        args.backend = ["postgres"]
        args.workers = args.workers or [2]
    tasks = args.tasks or (1000 if args.quick else 10_000)
    minutes = args.minutes or (1.0 if args.quick else 5.0)
    warmup_s = 20.0 if args.quick else 70.0
    backends = args.backend or ["sqlite", "postgres"]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    results = [
        bench_backend(b, w, tasks, warmup_s, minutes * 60, log)
        for b in backends
        for w in args.workers or [0]
    ]
    header = [
        "# Scheduler: started TIMING tasks firing every minute",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load_before:.2f} before the run. "
        f"{tasks:,} tasks per backend, each firing every minute (fires spread evenly across "
        f"the minute), each run copying one row SQLite -> SQLite (upsert, {TARGETS} target "
        f"files); {warmup_s:.0f} s warm-up after the last start, {minutes:g} min measured. One "
        "`openfdi serve` process (engine on); with worker processes, runs execute in its "
        "`openfdi worker` children.",
    ]
    if EXECUTOR == "celery":
        header[-1] += (
            " Executor celery: the server publishes each run to RabbitMQ; the worker column "
            "counts `openfdi worker --executor celery` processes (not in the server's CPU)."
        )
    table = render(results, header)
    print(table)
    results_file = RESULTS.with_name("scheduler-celery.md") if EXECUTOR == "celery" else RESULTS
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(table)
    print(f"written to {results_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
