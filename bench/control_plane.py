"""Control-plane benchmark: 10-task batch start/stop next to GET /healthz, on SQLite and PostgreSQL.

    .venv/bin/python bench/control_plane.py            # 1,000 tasks, 5 s per cell
    .venv/bin/python bench/control_plane.py --quick    # 200 tasks, 1 s per cell
    .venv/bin/python bench/control_plane.py --engine   # with the engine running the tasks

For each metadata backend it starts a real `openfdi serve` on 127.0.0.1 (a free port, its own
data dir; on PostgreSQL a fresh schema on 127.0.0.1:5432, dropped afterwards), creates the tasks
through the API (half REALTIME, half TIMING with a plan), then measures at 1, 8 and 32 concurrent
clients, each a thread with its own keep-alive httpx client:

- `GET /healthz`: the framework's floor (routing, middleware, one `SELECT 1`);
- `POST …/batch-operation/tasks`: random 10-task sets, each client alternating start and stop,
  signed with the AK/SK exactly as the SDK signs.

The server runs without its engine by default, so the figures are the control plane's own; with
`--engine` every start of a REALTIME task also starts a run, whose work shares the process.

Each cell warms up first, then runs for a fixed time; latency is measured per call on the client.
The client threads share the machine (and one Python process) with nothing but the server, so
the figures include the client's own cost, the same for both operations. The markdown table is
printed and written to bench/results/control_plane.md. Traffic goes to 127.0.0.1 only.
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

import argparse
import json
import math
import platform
import random
import shutil
import signal
import socket
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

import httpx
import psycopg

from openfdi.client import signed_client

PROJECT_ID = "b3c4d5e6f708192a3b4c5d6e7f809102"
INSTANCE_ID = "6a1e2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
AK = "BENCHAK0000000000001"
SK = "benchSecretKey00000000000000000000000001"
USER = "bench"
PASSWORD = "bench-password"
BASE = f"/v2/{PROJECT_ID}/fdi/instances/{INSTANCE_ID}"

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONCURRENCY = (1, 8, 32)
BATCH_SIZE = 10
GOAL_P99_MS = 50.0
RESULTS = Path(__file__).resolve().parent / "results" / "control_plane.md"
RESULTS_ENGINE = RESULTS.with_name("control_plane_engine.md")
TASK_DETAIL = json.dumps(
    {
        "sourceSelectedDatasource": {"table": "orders"},
        "targetSelectedDatasource": {"table": "orders_copy"},
    }
)


@dataclass(frozen=True)
class Cell:
    backend: str
    operation: str
    clients: int
    calls: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float  # server process CPU time per measured call

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine have used so far (Linux /proc/stat), else 0.0."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


SERVER_CPU_SECONDS: list[float] = []  # each server's total CPU time, read just before it stops


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema, dropped afterwards; the URL pins search_path to it (as tests do)."""
    schema = f"bench_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
            f"?options=-csearch_path%3D{schema}"
        )
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _openfdi_command() -> list[str]:
    script = Path(sys.executable).with_name("openfdi")
    if script.exists():
        return [str(script)]
    found = shutil.which("openfdi")
    return [found] if found else [sys.executable, "-m", "openfdi"]


@contextmanager
def openfdi_server(
    data_dir: Path, database_url: str | None, *, engine: bool
) -> Iterator[tuple[str, int]]:
    """`openfdi serve` on a free loopback port; yields (base URL, pid), stops it afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "OPENFDI_DATA_DIR": str(data_dir),
        "OPENFDI_BOOTSTRAP_PROJECT_ID": PROJECT_ID,
        "OPENFDI_BOOTSTRAP_INSTANCE_ID": INSTANCE_ID,
        "OPENFDI_BOOTSTRAP_AK": AK,
        "OPENFDI_BOOTSTRAP_SK": SK,
        "OPENFDI_BOOTSTRAP_USER": USER,
        "OPENFDI_BOOTSTRAP_PASSWORD": PASSWORD,
    }
    env.pop("OPENFDI_DATABASE_URL", None)
    env["OPENFDI_ENGINE_ENABLED"] = "true" if engine else "false"
    if database_url:
        env["OPENFDI_DATABASE_URL"] = database_url
    command = [
        *_openfdi_command(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    log_path = data_dir / "server.log"
    data_dir.mkdir(parents=True, exist_ok=True)
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
            yield url, process.pid
        finally:
            SERVER_CPU_SECONDS.append(cpu_seconds(process.pid))
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def create_tasks(url: str, count: int, db_path: Path) -> list[str]:
    """`count` tasks through the API: half REALTIME, half TIMING with an hourly plan."""
    with signed_client(url, AK, SK, PROJECT_ID) as client:
        reply = client.post(
            f"{BASE}/datasources",
            json={
                "datasource_name": "bench-source",
                "datasource_type": "SQLITE",
                "content": {"database_name": str(db_path)},
            },
        )
        reply.raise_for_status()
        source = reply.json()["datasource_id"]

    local = threading.local()

    def one(index: int) -> str:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = signed_client(url, AK, SK, PROJECT_ID)
        timing = index % 2 == 1
        reply = client.post(
            f"{BASE}/tasks",
            json={
                "task": {
                    "task_name": f"bench-{index:05d}",
                    "task_type": "TIMING" if timing else "REALTIME",
                    "source_datasource_id": source,
                    "target_datasource_id": source,
                },
                "task_detail": TASK_DETAIL,
            },
        )
        if reply.status_code != 200:
            raise RuntimeError(f"create task: {reply.status_code} {reply.text}")
        task_id = str(reply.json()["task"]["task_id"])
        if timing:
            plan = client.post(
                f"{BASE}/tasks/{task_id}/dispatches",
                json={"start_datetime": 1767225600000, "period": "HOUR", "dispatch_interval": 1},
            )
            if plan.status_code != 200:
                raise RuntimeError(f"create plan: {plan.status_code} {plan.text}")
        return task_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))


def run_cell(
    make_client: Callable[[], httpx.Client],
    call: Callable[[httpx.Client, random.Random, int], bool],
    clients: int,
    warmup_s: float,
    duration_s: float,
    server_pid: int,
) -> tuple[list[float], int, int, float, float]:
    """Measured latencies (s), calls, errors, measured wall time (s), server CPU time (s)."""
    barrier = threading.Barrier(clients + 1)
    results: list[tuple[list[float], int, int]] = [([], 0, 0)] * clients
    marks: dict[str, float] = {}

    def checked(client: httpx.Client, rng: random.Random, n: int) -> bool:
        try:
            return call(client, rng, n)
        except httpx.HTTPError:
            return False

    def worker(index: int) -> None:
        rng = random.Random(index)
        latencies: list[float] = []
        errors = calls = 0
        with make_client() as client:
            barrier.wait(timeout=60)  # every client is ready
            barrier.wait(timeout=60)  # the marks are set: warm up, then measure
            n = 0
            while time.perf_counter() < marks["measure"]:
                checked(client, rng, n)
                n += 1
            while True:
                started = time.perf_counter()
                if started >= marks["stop"]:
                    break
                ok = checked(client, rng, n)
                latencies.append(time.perf_counter() - started)
                calls += 1
                errors += not ok
                n += 1
        results[index] = (latencies, calls, errors)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=60)
    now = time.perf_counter()
    marks["measure"] = now + warmup_s
    marks["stop"] = now + warmup_s + duration_s
    barrier.wait(timeout=60)
    time.sleep(max(0.0, marks["measure"] - time.perf_counter()))
    cpu_before = cpu_seconds(server_pid)
    for thread in threads:
        thread.join(timeout=warmup_s + duration_s + 60)
        if thread.is_alive():
            raise RuntimeError("a client thread did not stop")
    # The last calls end after `stop`; count the wall time until the last of them returned.
    elapsed = max(time.perf_counter(), marks["stop"]) - marks["measure"]
    cpu = cpu_seconds(server_pid) - cpu_before
    latencies = sorted(x for lat, _, _ in results for x in lat)
    calls = sum(c for _, c, _ in results)
    return latencies, calls, sum(e for _, _, e in results), elapsed, cpu


def bench_backend(
    backend: str,
    tasks: int,
    warmup_s: float,
    duration_s: float,
    log: Callable[[str], None],
    *,
    engine: bool,
) -> list[Cell]:
    with tempfile.TemporaryDirectory(prefix="openfdi-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        with (
            postgres_schema() if backend == "postgres" else _no_url() as database_url,
            openfdi_server(data_dir, database_url, engine=engine) as (url, pid),
        ):
            started = time.perf_counter()
            ids = create_tasks(url, tasks, Path(tmp) / "source.db")
            log(f"{backend}: {len(ids)} tasks created in {time.perf_counter() - started:.1f} s")

            def healthz(client: httpx.Client, _rng: random.Random, _n: int) -> bool:
                return client.get("/healthz").status_code == 200

            def batch(client: httpx.Client, rng: random.Random, n: int) -> bool:
                chosen = rng.sample(ids, BATCH_SIZE)
                body = {
                    "action_id": "start" if n % 2 == 0 else "stop",
                    "list": [{"task_id": task_id} for task_id in chosen],
                }
                reply = client.post(f"{BASE}/batch-operation/tasks", json=body)
                return reply.status_code == 200 and reply.json()["success_count"] == BATCH_SIZE

            operations: dict[str, tuple[Callable[[], httpx.Client], Callable[..., bool]]] = {
                "GET /healthz": (lambda: httpx.Client(base_url=url, timeout=30), healthz),
                "batch start/stop (10 tasks)": (
                    lambda: signed_client(url, AK, SK, PROJECT_ID, timeout=30),
                    batch,
                ),
            }
            cells = []
            for clients in CONCURRENCY:
                for name, (make_client, call) in operations.items():
                    latencies, calls, errors, seconds, cpu = run_cell(
                        make_client, call, clients, warmup_s, duration_s, pid
                    )
                    cell = Cell(
                        backend,
                        name,
                        clients,
                        calls,
                        errors,
                        seconds,
                        percentile(latencies, 50) * 1000,
                        percentile(latencies, 99) * 1000,
                        cpu * 1000 / max(calls, 1),
                    )
                    log(
                        f"{backend}: {name} x{clients}: {cell.rate:.0f} calls/s, "
                        f"p50 {cell.p50_ms:.1f} ms, p99 {cell.p99_ms:.1f} ms, "
                        f"server CPU {cell.server_cpu_ms:.2f} ms/call, {errors} errors"
                    )
                    cells.append(cell)
            return cells


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


@contextmanager
def _no_url() -> Iterator[None]:
    yield None


def render(cells: list[Cell], header: list[str]) -> str:
    floors = {(c.backend, c.clients): c.p50_ms for c in cells if c.operation == "GET /healthz"}
    lines = [
        *header,
        "",
        "| backend | operation | clients | calls/s | p50 ms | p99 ms "
        "| p50 / healthz p50 | server CPU ms/call | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        ratio = c.p50_ms / floors[(c.backend, c.clients)]
        lines.append(
            f"| {c.backend} | {c.operation} | {c.clients} | {c.rate:,.0f} | {c.p50_ms:.2f} "
            f"| {c.p99_ms:.2f} | {ratio:.1f}x | {c.server_cpu_ms:.2f} | {c.errors} |"
        )
    goal = [
        c
        for c in cells
        if c.backend == "sqlite" and c.clients == 8 and c.operation.startswith("batch")
    ]
    lines.append("")
    if goal:
        p99 = goal[0].p99_ms
        verdict = "met" if p99 < GOAL_P99_MS and goal[0].errors == 0 else "NOT met"
        lines.append(
            f"Goal: batch start/stop p99 < {GOAL_P99_MS:.0f} ms at 8 clients on SQLite: "
            f"**{verdict}** (p99 {p99:.2f} ms)."
        )
    else:
        lines.append("Goal: not measured (SQLite was not run).")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="200 tasks, 1 s per cell")
    parser.add_argument(
        "--backend",
        action="append",
        choices=("sqlite", "postgres"),
        help="run only this backend (repeatable; default both)",
    )
    parser.add_argument(
        "--engine",
        action="store_true",
        help=f"run the server with its engine (table in {RESULTS_ENGINE.name})",
    )
    args = parser.parse_args()
    tasks, warmup_s, duration_s = (200, 0.3, 1.0) if args.quick else (1000, 1.0, 5.0)
    backends = args.backend or ["sqlite", "postgres"]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    busy_before, own_before, wall_before = machine_busy_seconds(), _own_cpu(), time.monotonic()
    cells: list[Cell] = []
    for backend in backends:
        cells.extend(bench_backend(backend, tasks, warmup_s, duration_s, log, engine=args.engine))
    wall = time.monotonic() - wall_before
    ours = _own_cpu() - own_before + sum(SERVER_CPU_SECONDS)
    others = max(0.0, machine_busy_seconds() - busy_before - ours)

    header = [
        "# Control plane: batch start/stop vs GET /healthz",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}. "
        f"{tasks} tasks per backend (half REALTIME, half TIMING with a plan); "
        f"{warmup_s:g} s warm-up and {duration_s:g} s measured per cell; one `openfdi serve` "
        "process (one uvicorn worker) per backend, "
        + ("with its engine running the started tasks" if args.engine else "engine off")
        + "; clients are threads with keep-alive httpx clients in one other process on the "
        "same machine; latency measured on the client.",
        f"Other work on the machine: load average {load_before:.2f} before the run; other "
        f"processes used {others:.0f} CPU-seconds during its {wall:.0f} s "
        f"({others / (wall * (os.cpu_count() or 1)) * 100:.0f}% of the machine).",
    ]
    table = render(cells, header)
    print(table)
    results = RESULTS_ENGINE if args.engine else RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(table)
    print(f"written to {results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
