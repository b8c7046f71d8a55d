"""HTTP API <-> PostgreSQL: openfdi's API connector next to a minimal hand-written httpx + psycopg
loop doing the same job in the same run (issue 14's benchmark, API half).

    .venv/bin/python bench/http_api.py                      # 200 pages of 1,000 records
    .venv/bin/python bench/http_api.py --pages 50 --rounds 1
    .venv/bin/python bench/http_api.py --latency-ms 20      # an API 20 ms away

A paged JSON API (Starlette under uvicorn, in its own process, pages rendered once up front) serves
`--pages` pages of `--size` records of ~200 bytes (id, name, city, an exact decimal amount, note,
a timestamp), and receives POSTed JSON arrays at /sink (it parses each body and counts its rows).

- API -> PostgreSQL. Loop: GET each page with httpx, json.loads with exact decimals, COPY the
  page's rows, commit every 5 pages (openfdi's batches hold 5,000 rows at most), until a short
  page.
  openfdi: a TIMING task through `openfdi serve` (page paging, six typed fields), POST .../run,
  polled until it ends; the rate is from the run's start and end.
- PostgreSQL -> API. Loop: a server-side cursor, fetchmany(1000), json.dumps the rows (decimals
  and times as strings), POST, check 2xx. openfdi: a TIMING task into the API's /sink, 1,000
  rows a request.

Rounds alternate (loop, openfdi, ...) and the best rate of each side counts; every target is
counted after its round. Prints the table with ratios and the openfdi server's peak RSS, and
writes it to bench/results/http_api.md.
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
import contextlib
import importlib.util
import json
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import psycopg
from bench.served import free_port


def _sibling(name: str) -> ModuleType:
    """A sibling bench script as a module (its server helpers are reused, not copied)."""
    spec = importlib.util.spec_from_file_location(name, Path(_HERE) / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"bench/{name}.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rs = _sibling("redis_stream")  # openfdi_server, peak_rss_mb, log, credentials
RESULTS = Path(__file__).resolve().parent / "results" / "http_api.md"
DDL = "(id bigint, name text, city text, amount numeric, note text, at timestamptz)"
FIELDS = [
    {"name": "id", "path": "$.id", "type": "bigint"},
    {"name": "name", "path": "$.customer.name", "type": "text"},
    {"name": "city", "path": "$.customer.city", "type": "text"},
    {"name": "amount", "path": "$.amount", "type": "decimal"},
    {"name": "note", "path": "$.note", "type": "text"},
    {"name": "at", "path": "$.at", "type": "timestamptz"},
]


# --- the API under test (in its own process: `http_api.py --serve PORT PAGES SIZE`) ---


def serve(port: int, pages: int, size: int, latency_ms: int) -> None:
    import asyncio

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    rendered: list[bytes] = []
    for p in range(pages):
        items = []
        for i in range(p * size + 1, (p + 1) * size + 1):
            note = "null" if i % 7 == 0 else '"express"'
            items.append(
                f'{{"id":{i},"customer":{{"name":"Kunde Nr. {i} \u00fc","city":"Z\u00fcrich"}},'
                f'"amount":{i % 100000}.{i % 100:02d},"note":{note},'
                f'"at":"2026-01-01T00:00:{i % 60:02d}Z"}}'
            )
        rendered.append(('{"data":[' + ",".join(items) + "]}").encode())
    empty = b'{"data":[]}'
    received = [0]

    async def page(request: Request) -> Response:
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)  # a remote API's round trip and work
        n = int(request.query_params.get("page", "1"))
        body = rendered[n - 1] if 1 <= n <= pages else empty
        return Response(body, media_type="application/json")

    async def sink(request: Request) -> Response:
        rows = json.loads(await request.body())
        received[0] += len(rows)
        return JSONResponse({"accepted": len(rows)})

    async def count(request: Request) -> Response:
        """The rows received so far; DELETE also starts counting again from 0."""
        got = received[0]
        if request.method == "DELETE":
            received[0] = 0
        return JSONResponse({"received": got})

    app = Starlette(
        routes=[
            Route("/orders", page),
            Route("/sink", sink, methods=["POST"]),
            Route("/count", count, methods=["GET", "DELETE"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def api_server(pages: int, size: int, latency_ms: int) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(port), str(pages), str(size)]
    command.append(str(latency_ms))
    process = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/count", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bench API did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(30)


# --- the hand-written loops ---------------------------------------------------------------


COMMIT_PAGES = 5
"""The loop commits every 5 pages (5,000 rows), as openfdi's batches are bounded to 5,000 rows:
the same durability step on both sides."""


def loop_api_to_pg(api: str, size: int, schema: str, table: str) -> float:
    started = time.perf_counter()
    with httpx.Client(timeout=30) as client, psycopg.connect(**rs.PG) as conn:
        conn.execute(f'CREATE TABLE "{schema}"."{table}" {DDL}')
        conn.commit()
        page = 1
        while True:
            reply = client.get(f"{api}/orders", params={"page": page, "size": size})
            reply.raise_for_status()
            records = json.loads(reply.content, parse_float=Decimal)["data"]
            with conn.cursor() as cur, cur.copy(f'COPY "{schema}"."{table}" FROM STDIN') as copy:
                for r in records:
                    customer = r["customer"]
                    copy.write_row(
                        (r["id"], customer["name"], customer["city"], r["amount"], r["note"],
                         r["at"])
                    )  # fmt: skip
            if page % COMMIT_PAGES == 0 or len(records) < size:
                conn.commit()
            if len(records) < size:
                break
            page += 1
    return time.perf_counter() - started


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value.isoformat()


def loop_pg_to_api(api: str, schema: str, table: str) -> float:
    started = time.perf_counter()
    with httpx.Client(timeout=30) as client, psycopg.connect(**rs.PG) as conn:
        names = ("id", "name", "city", "amount", "note", "at")
        with conn.cursor(name="bench") as cur:
            cur.execute(f'SELECT {", ".join(names)} FROM "{schema}"."{table}"')
            while rows := cur.fetchmany(1000):
                body = json.dumps(
                    [dict(zip(names, row, strict=True)) for row in rows],
                    default=_plain,
                    ensure_ascii=False,
                )
                headers = {"Content-Type": "application/json"}
                reply = client.post(f"{api}/sink", content=body.encode(), headers=headers)
                reply.raise_for_status()
    return time.perf_counter() - started


# --- openfdi ---------------------------------------------------------------------------


class OpenFdi:
    def __init__(self, url: str) -> None:
        self.client = rs.signed_client(url, rs.AK, rs.SK, rs.PROJECT_ID, timeout=60)

    def datasource(self, kind: str, content: dict[str, Any]) -> str:
        body = {"datasource_name": f"bench-{uuid.uuid4().hex[:6]}", "datasource_type": kind,
                "content": content}  # fmt: skip
        reply = self.client.post(f"{rs.BASE}/datasources", json=body)
        reply.raise_for_status()
        return str(reply.json()["datasource_id"])

    def run(self, source: str, target: str, detail: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        body = {
            "task": {"task_name": f"bench-{uuid.uuid4().hex[:8]}", "task_type": "TIMING",
                     "source_datasource_id": source, "target_datasource_id": target},
            "task_detail": json.dumps(detail),
        }  # fmt: skip
        reply = self.client.post(f"{rs.BASE}/tasks", json=body)
        reply.raise_for_status()
        task = reply.json()["task"]["task_id"]
        run = self.client.post(f"{rs.BASE}/tasks/{task}/run").json()["run_id"]
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            logs = self.client.get(f"{rs.BASE}/tasks/{task}/monitor-logs").json()["entities"]
            entry = next((e for e in logs if e["id"] == run), None)
            if entry and entry["execute_status"] != "RUNNING" and entry["end_time"]:
                if entry["execute_status"] != "SUCCESS":
                    raise RuntimeError(f"the openfdi run ended {entry['execute_status']}: {entry}")
                return (entry["end_time"] - entry["start_time"]) / 1000, entry
            time.sleep(0.1)
        raise RuntimeError("the openfdi run did not end in 30 minutes")


def count(schema: str, table: str) -> int:
    with psycopg.connect(**rs.PG) as conn:
        row = conn.execute(f'SELECT count(DISTINCT id) FROM "{schema}"."{table}"').fetchone()
    return int(row[0]) if row else 0


def received(api: str, reset: bool = False) -> int:
    reply = httpx.request("DELETE" if reset else "GET", f"{api}/count")
    return int(reply.json()["received"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--latency-ms", type=int, default=0, help="the API waits this long before each page"
    )
    parser.add_argument("--serve", nargs=4, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    n, size = args.pages * args.size, args.size
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**rs.PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    load_before = os.getloadavg()[0]
    rates: dict[str, list[float]] = {k: [] for k in ("loop_in", "fdi_in", "loop_out", "fdi_out")}
    try:
        with (
            api_server(args.pages, size, args.latency_ms) as api,
            tempfile.TemporaryDirectory() as tmp,
            rs.openfdi_server(Path(tmp)) as (url, pid),
        ):
            fdi = OpenFdi(url)
            pg = fdi.datasource("POSTGRESQL", {"host": "127.0.0.1", "port": "5432",
                                               "database_name": "postgres", "user_name": "postgres",
                                               "password": "unused", "schema": schema})  # fmt: skip
            pages = fdi.datasource("API", {"url": f"{api}/orders"})
            sink = fdi.datasource("API", {"url": f"{api}/sink", "api_method": "POST"})
            paging = {"type": "page", "param": "page", "size_param": "size", "size": size}
            for r in range(1, args.rounds + 1):
                rs.log(f"round {r}: API -> PostgreSQL, loop")
                rates["loop_in"].append(n / loop_api_to_pg(api, size, schema, f"loop{r}"))
                rs.log(f"round {r}: API -> PostgreSQL, openfdi")
                detail = {
                    "sourceSelectedDatasource": {"table": "orders", "message": {
                        "records": "$.data", "fields": FIELDS, "paging": paging}},
                    "targetSelectedDatasource": {"table": f"fdi{r}"},
                }  # fmt: skip
                seconds, entry = fdi.run(pages, pg, detail)
                rates["fdi_in"].append(n / seconds)
                for table in (f"loop{r}", f"fdi{r}"):
                    if count(schema, table) != n:
                        raise RuntimeError(f"{table} holds {count(schema, table)} rows, not {n}")
                rs.log(f"round {r}: PostgreSQL -> API, loop")
                received(api, reset=True)
                rates["loop_out"].append(n / loop_pg_to_api(api, schema, f"loop{r}"))
                if received(api, reset=True) != n:
                    raise RuntimeError("the loop's rows did not all reach the API")
                rs.log(f"round {r}: PostgreSQL -> API, openfdi")
                detail = {
                    "sourceSelectedDatasource": {"table": f"loop{r}"},
                    "targetSelectedDatasource": {"table": "sink",
                                                 "message": {"rows_per_request": 1000}},
                }  # fmt: skip
                seconds, out_entry = fdi.run(pg, sink, detail)
                rates["fdi_out"].append(n / seconds)
                if (got := received(api, reset=True)) != n:
                    raise RuntimeError(f"openfdi's rows reached the API {got} times, not {n}")
            rss = rs.peak_rss_mb(pid)
        best = {k: max(v) for k, v in rates.items()}
        median = {k: statistics.median(v) for k, v in rates.items()}

        def paired(way: str) -> float:
            pairs = zip(rates[f"fdi_{way}"], rates[f"loop_{way}"], strict=True)
            return statistics.median(fdi / loop for fdi, loop in pairs)

        lines = [
            f"HTTP API <-> PostgreSQL, {args.pages:,} pages of {size:,} records (~200 bytes), "
            f"{n:,} rows, {args.latency_ms} ms per page ({platform.node()}, {os.cpu_count()} CPUs, "
            f"{time.strftime('%Y-%m-%d %H:%M')})",
            "",
            "| pair | loop rows/s | openfdi rows/s | ratio | openfdi pages/s |",
            "|---|---:|---:|---:|---:|",
            f"| API -> PostgreSQL | {best['loop_in']:,.0f} | {best['fdi_in']:,.0f} | "
            f"{best['fdi_in'] / best['loop_in']:.2f} | {best['fdi_in'] / size:,.1f} |",
            f"| PostgreSQL -> API | {best['loop_out']:,.0f} | {best['fdi_out']:,.0f} | "
            f"{best['fdi_out'] / best['loop_out']:.2f} | {best['fdi_out'] / size:,.1f} |",
            "",
            "Loop: httpx + psycopg in one thread (GET, json.loads with exact decimals, COPY, "
            "commit every 5 pages; or a server-side cursor, json.dumps, POST 1,000 rows). openfdi: "
            "TIMING tasks through `openfdi serve`, rate from the run's start and end (last "
            f"runs: read {entry['read_spend_time']}/{out_entry['read_spend_time']} ms, write "
            f"{entry['write_spend_time']}/{out_entry['write_spend_time']} ms). Best of "
            f"{args.rounds} alternating rounds; rows/s per round (loop/openfdi): in "
            + ", ".join(
                f"{a:,.0f}/{b:,.0f}" for a, b in zip(rates["loop_in"], rates["fdi_in"], strict=True)
            )
            + "; out "
            + ", ".join(
                f"{a:,.0f}/{b:,.0f}"
                for a, b in zip(rates["loop_out"], rates["fdi_out"], strict=True)
            )
            + f". Peak RSS of the openfdi server over the whole bench: {rss:.0f} MB.",
            "",
            f"Medians of the {args.rounds} rounds: API -> PostgreSQL {median['loop_in']:,.0f} / "
            f"{median['fdi_in']:,.0f} rows/s (**{median['fdi_in'] / median['loop_in']:.2f}x**), "
            f"PostgreSQL -> API {median['loop_out']:,.0f} / {median['fdi_out']:,.0f} rows/s "
            f"(**{median['fdi_out'] / median['loop_out']:.2f}x**); median of the rounds' own "
            f"ratios (each openfdi run against the loop run just before it): in "
            f"{paired('in'):.2f}x, out {paired('out'):.2f}x. Load average (1 min) "
            f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.",
        ]
        table = "\n".join(lines)
        print(table)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(table + "\n")
    finally:
        with psycopg.connect(**rs.PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
