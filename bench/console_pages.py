"""Web console page times on the demo data, next to the JSON API reads they are built from.

    .venv/bin/python bench/console_pages.py              # 50 requests per page
    .venv/bin/python bench/console_pages.py --n 200 --extra-tasks 200

Starts a real `openfdi serve --demo` on 127.0.0.1 (a free port, its own temporary data dir),
optionally adds tasks through the signed API, runs the demo's nightly task once (so the task
page has a run, a chart and progress), signs in to the console, then fetches each page `--n`
times one after another (keep-alive, after 3 warm-up requests) and prints the median and p95
time to the last byte, measured on the client. Beside them: `GET /healthz` (the framework's
floor) and the signed JSON calls the overview and the task list rest on. The goal of issue 13
is every page under 300 ms. The table is printed and written to
bench/results/console_pages.md. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from openfdi.client import signed_client
from openfdi.services import demo

HERE = Path(__file__).resolve().parent
OPENFDI = str(Path(sys.executable).with_name("openfdi"))
API = f"/v2/{demo.DEMO_PROJECT_ID}/fdi/instances/{demo.DEMO_INSTANCE_ID}"
CONSOLE = f"/console/{demo.DEMO_INSTANCE_ID}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("openfdi serve exited")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("openfdi serve did not become healthy")


def timed(client: httpx.Client, path: str, n: int) -> tuple[float, float]:
    for _ in range(3):
        client.get(path)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        reply = client.get(path)
        samples.append((time.perf_counter() - start) * 1000)
        if reply.status_code != 200:
            raise SystemExit(f"{path}: {reply.status_code} {reply.text[:300]}")
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--extra-tasks", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "OPENFDI_DATA_DIR": str(Path(tmp) / ".openfdi")}
        command = [OPENFDI, "serve", "--demo", "--port", str(port), "--no-access-log"]
        proc = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        try:
            wait_healthy(url, proc)
            rows = bench(url, args.n, args.extra_tasks)
        finally:
            proc.terminate()
            proc.wait(30)
    lines = [
        f"Console pages, {args.n} sequential requests each, demo data + {args.extra_tasks} tasks",
        f"({platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, SQLite metadata; times in ms, client side)",
        "",
        "| request | median ms | p95 ms |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {med:.1f} | {p95:.1f} |" for name, med, p95 in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "console_pages.md").write_text(text)


def bench(url: str, n: int, extra: int) -> list[tuple[str, float, float]]:
    with signed_client(url, demo.DEMO_AK, demo.DEMO_SK, demo.DEMO_PROJECT_ID) as api:
        listed = api.get(f"{API}/tasks", params={"limit": 10}).json()["entities"]
        ids = {t["task_name"]: t["task_id"] for t in listed}
        nightly = ids["demo-orders-nightly"]
        shown = api.get(f"{API}/tasks/{nightly}").json()
        for i in range(extra):
            body = {
                "task": {**{k: shown["task"][k] for k in ("source_datasource_id",
                                                           "target_datasource_id")},
                         "task_name": f"bench-{i:04d}", "task_type": "TIMING"},
                "task_detail": shown["task_detail"],
            }  # fmt: skip
            api.post(f"{API}/tasks", json=body).raise_for_status()
        api.post(f"{API}/tasks/{nightly}/run").raise_for_status()
        for _ in range(300):  # the run of 1,000 demo orders ends within seconds
            logs = api.get(f"{API}/tasks/{nightly}/monitor-logs").json()["entities"]
            if logs and logs[0]["execute_status"] != "RUNNING":
                break
            time.sleep(0.1)
        run_id = logs[0]["id"]
        datasource = shown["task"]["source_datasource_id"]
        rows = [("GET /healthz (floor)", *timed(api, "/healthz", n))]
        rows.append(("API GET …/statistics/tasks", *timed(api, f"{API}/statistics/tasks", n)))
        rows.append(("API GET …/task-monitors", *timed(api, f"{API}/task-monitors?limit=200", n)))
        rows.append(("API GET …/tasks?limit=20", *timed(api, f"{API}/tasks?limit=20", n)))
    with httpx.Client(base_url=url, timeout=30) as web:
        page = web.get("/console/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        reply = web.post(
            "/console/login",
            data={"csrf": csrf.group(1), "username": demo.DEMO_USER,
                  "password": demo.DEMO_PASSWORD},
        )  # fmt: skip
        assert reply.status_code == 303, reply.text
        pages = {
            "console overview": f"{CONSOLE}/",
            "console task list": f"{CONSOLE}/tasks?limit=20",
            "console task list, filtered": f"{CONSOLE}/tasks?name=demo&task_type=TIMING",
            "console task page": f"{CONSOLE}/tasks/{nightly}",
            "console task progress (poll)": f"{CONSOLE}/tasks/{nightly}/progress",
            "console run page": f"{CONSOLE}/tasks/{nightly}/runs/{run_id}",
            "console task form (edit)": f"{CONSOLE}/tasks/{nightly}/edit",
            "console data sources": f"{CONSOLE}/datasources",
            "console data source form": f"{CONSOLE}/datasources/{datasource}",
            "console tables picker": f"{CONSOLE}/pick/tables?role=source"
            f"&source_datasource_id={datasource}",
        }
        for name, path in pages.items():
            rows.append((name, *timed(web, path, n)))
    print(json.dumps({"run": run_id}), file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
