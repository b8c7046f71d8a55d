"""File benchmark: openfdi's FILE ends next to the native tool and a minimal pyarrow loop.

    .venv/bin/python bench/files.py              # 1,000,000 rows of the copy benchmark's table
    .venv/bin/python bench/files.py --rows 200000 --repeat 3

It loads the copy benchmark's table (bench/copy.py: 10 typed columns, unicode, quotes and commas
in the strings, about 1.6% NULLs) into a fresh PostgreSQL schema, starts a real `openfdi serve`
(free loopback port, own data dir, OPENFDI_FILE_ROOTS its own temp folder) and measures, the
whole operation a user sees (a TIMING task run through the signed API, from the run's start to
its end as monitor-logs reports them), side by side in the same run:

- PostgreSQL -> Parquet: openfdi (PG source, FILE target `format: parquet`) against a minimal
  hand-written pyarrow loop in its own process (server-side cursor, `fetchmany`, `pa.array` per
  column, `ParquetWriter`), with the peak RSS of each (openfdi: the server's VmHWM, reset before
  the run, as bench/copy.py does);
- PostgreSQL -> CSV: openfdi against `psql \\copy ... TO ... CSV HEADER`;
- CSV -> PostgreSQL: openfdi (FILE source, the CSV openfdi wrote, into a table it creates;
  the CSV passes through as TSV text) against `psql \\copy ... FROM ... CSV HEADER` of the same
  file into the same, pre-created table; both results are compared value by value in SQL.

Ratios are native time / openfdi time (1.0 = as fast as the native tool). Medians over
`--repeat` runs. The markdown table is printed and written to bench/results/files.md.
Everything it creates (schema, temp dir, server) is removed at the end, also on failure.
"""

from __future__ import annotations

# bench/ holds copy.py, named like the standard library's `copy`, and Python puts the script's
# directory first on sys.path: drop it before anything imports `copy` (hence E402 below).
# ruff: noqa: E402
import os
import sys

_HERE_TEXT = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE_TEXT]

import argparse
import importlib.util
import json
import statistics
import subprocess
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import psycopg

_HERE = Path(__file__).resolve().parent


def _copy_bench() -> ModuleType:
    """bench/copy.py, for its table, loader, server, API client and RSS watch (one home)."""
    spec = importlib.util.spec_from_file_location("openfdi_bench_copy", _HERE / "copy.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cb = _copy_bench()
RESULTS = _HERE / "results" / "files.md"
GOAL = 0.8
GOAL_RSS_MB = 200.0

PYARROW_LOOP = textwrap.dedent(
    """
    import resource, sys, time
    import psycopg, pyarrow as pa, pyarrow.parquet as pq
    schema, path = sys.argv[1], sys.argv[2]
    started = time.perf_counter()
    types = pa.schema([("id", pa.int64()), ("n_int", pa.int32()), ("vc", pa.string()),
                       ("amount", pa.decimal128(12, 2)), ("dbl", pa.float64()),
                       ("txt", pa.string()), ("ts", pa.timestamp("us")),
                       ("tstz", pa.timestamp("us", tz="UTC")), ("flag", pa.bool_()),
                       ("day", pa.date32())])
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        with conn.cursor(name="c") as cur, pq.ParquetWriter(path, types) as out:
            cur.itersize = 50_000
            cur.execute(f"SELECT * FROM {schema}.bench ORDER BY id")
            while rows := cur.fetchmany(50_000):
                columns = list(zip(*rows))
                out.write_table(pa.Table.from_arrays(
                    [pa.array(c, type=t) for c, t in zip(columns, types.types)], schema=types))
    print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


@dataclass
class Line:
    what: str
    openfdi_s: list[float]
    native_s: list[float]
    native: str
    rows: int
    openfdi_rss_mb: list[float]
    native_rss_mb: list[float]
    check: str = ""
    openfdi_rise_mb: list[float] = field(default_factory=list)
    """The server's peak RSS minus its RSS when the run started (its libraries already loaded)."""

    @property
    def ratio(self) -> float:
        return statistics.median(self.native_s) / statistics.median(self.openfdi_s)


def _sql(statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(**cb.PG, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def _run_task(
    api: object, pid: int, name: str, source: str, target: str, detail: str, line: Line
) -> tuple[float, float, int]:
    task = api.task(name, source, target, detail)  # type: ignore[attr-defined]
    watch = cb.RssWatch(pid)
    run = api.run(task)  # type: ignore[attr-defined]
    outcome = api.wait(task, run, timeout_s=1800, poll_s=0.2)  # type: ignore[attr-defined]
    peak, rise = watch.stop()
    line.openfdi_rise_mb.append(rise)
    cb.log(f"{name}: server RSS {peak - rise:.0f} MB before the run, peak {peak:.0f} MB")
    if outcome.status != "SUCCESS" or outcome.dirty:
        raise RuntimeError(f"{name}: {outcome.status}, dirty {outcome.dirty}: {outcome.remarks}")
    return outcome.ms / 1000, peak, outcome.rows


def _timed(command: str) -> float:
    return float(cb.run_pipe(command, timeout_s=1800))


def _same_tables(schema: str, a: str, b: str) -> str:
    cols = "id, n_int, vc::text, amount, dbl, txt, ts, tstz, flag, day"
    differ = _sql(
        f"SELECT count(*) FROM ((SELECT {cols} FROM {schema}.{a} EXCEPT ALL "
        f"SELECT {cols} FROM {schema}.{b}) UNION ALL (SELECT {cols} FROM {schema}.{b} "
        f"EXCEPT ALL SELECT {cols} FROM {schema}.{a})) d"
    )[0][0]
    return "identical" if differ == 0 else f"{differ} rows differ"


def bench(n: int, repeat: int) -> list[Line]:
    schema = f"bench_files_{uuid.uuid4().hex[:10]}"
    _sql(f"CREATE SCHEMA {schema}")
    try:
        cb.log(f"loading {n:,} rows into {schema}.bench")
        cb.load_postgres(schema, n)
        with tempfile.TemporaryDirectory(prefix="openfdi-files-") as tmp_name:
            tmp = Path(tmp_name)
            roots = tmp / "files"
            roots.mkdir()
            os.environ["OPENFDI_FILE_ROOTS"] = str(roots)
            with cb.openfdi_server(tmp / "data") as (url, pid):
                api = cb.Api(url)
                try:
                    return _measure(api, pid, schema, roots, tmp, n, repeat)
                finally:
                    api.close()
    finally:
        _sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _measure(
    api: object, pid: int, schema: str, roots: Path, tmp: Path, n: int, repeat: int
) -> list[Line]:
    pg = api.datasource(f"pg-{uuid.uuid4().hex[:6]}", "POSTGRESQL", {  # type: ignore[attr-defined]
        "host": "127.0.0.1", "port": "5432", "database_name": "postgres",
        "user_name": "postgres", "password": "unused", "schema": schema})  # fmt: skip
    lines: list[Line] = []

    def folder(name: str) -> tuple[Path, str]:
        path = roots / name
        path.mkdir()
        ds = api.datasource(f"f-{name}", "FILE", {"address": str(path)})  # type: ignore[attr-defined]
        return path, ds

    # PostgreSQL -> Parquet: openfdi against a minimal pyarrow loop.
    parquet = Line(
        "PostgreSQL → Parquet", [], [], "pyarrow loop (fetchmany + ParquetWriter)", n, [], []
    )
    for i in range(repeat):
        path, ds = folder(f"parquet{i}")
        detail = ('{"sourceSelectedDatasource": {"table": "bench"}, "targetSelectedDatasource": '
                  '{"table": "bench", "message": {"format": "parquet"}}}')  # fmt: skip
        seconds, peak, rows = _run_task(api, pid, f"pq{i}", pg, ds, detail, parquet)
        assert rows == n, rows
        parquet.openfdi_s.append(seconds)
        parquet.openfdi_rss_mb.append(peak)
        out = subprocess.run(
            [sys.executable, "-c", PYARROW_LOOP, schema, str(tmp / f"native{i}.parquet")],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        native_s, rss_kb = out.stdout.split()
        parquet.native_s.append(float(native_s))
        parquet.native_rss_mb.append(int(rss_kb) / 1024)
        cb.log(f"parquet {i}: openfdi {seconds:.2f} s, pyarrow {float(native_s):.2f} s")
    lines.append(parquet)

    # PostgreSQL -> CSV: openfdi against psql \copy.
    to_csv = Line("PostgreSQL → CSV", [], [], "psql \\copy TO csv header", n, [], [])
    csv_file: Path | None = None
    for i in range(repeat):
        path, ds = folder(f"csv{i}")
        detail = ('{"sourceSelectedDatasource": {"table": "bench"}, "targetSelectedDatasource": '
                  '{"table": "bench", "message": {"format": "csv"}}}')  # fmt: skip
        seconds, peak, _ = _run_task(api, pid, f"csv{i}", pg, ds, detail, to_csv)
        to_csv.openfdi_s.append(seconds)
        to_csv.openfdi_rss_mb.append(peak)
        csv_file = csv_file or next(path.iterdir())
        native = tmp / f"native{i}.csv"
        copy = f"\\copy (SELECT * FROM {schema}.bench ORDER BY id) TO '{native}' CSV HEADER"
        to_csv.native_s.append(_timed(f"{cb.PSQL} -c {cb.q(copy)}"))
    lines.append(to_csv)

    # CSV -> PostgreSQL: openfdi (pass-through) against psql \copy of the same file.
    assert csv_file is not None
    source_dir, source = folder("in")
    os.link(csv_file, source_dir / "bench.csv")
    old = time.time() - 60
    os.utime(source_dir / "bench.csv", (old, old))
    from_csv = Line("CSV → PostgreSQL", [], [], "psql \\copy FROM csv header", n, [], [])
    for i in range(repeat):
        _sql(cb.PG_DDL.format(t=f"{schema}.native{i}"))
        copy = f"\\copy {schema}.native{i} FROM '{source_dir / 'bench.csv'}' CSV HEADER"
        from_csv.native_s.append(_timed(f"{cb.PSQL} -c {cb.q(copy)}"))
        detail = json.dumps(
            {"sourceSelectedDatasource": {"table": "bench", "message": {"min_age_seconds": 0}},
             "targetSelectedDatasource": {"table": f"loaded{i}"}}
        )  # fmt: skip
        seconds, peak, rows = _run_task(api, pid, f"load{i}", source, pg, detail, from_csv)
        assert rows == n, rows
        from_csv.openfdi_s.append(seconds)
        from_csv.openfdi_rss_mb.append(peak)
        from_csv.check = _same_tables(schema, f"native{i}", f"loaded{i}")
        native_s = from_csv.native_s[-1]
        cb.log(f"csv->pg {i}: openfdi {seconds:.2f} s, psql {native_s:.2f} s, {from_csv.check}")
    lines.append(from_csv)
    return lines


def render(lines: list[Line], n: int, repeat: int) -> str:
    out = [
        f"# openfdi file ends, {n:,} rows (median of {repeat})",
        "",
        "| operation | openfdi s | native s | native / openfdi | openfdi rows/s "
        "| openfdi peak RSS MB (rise in the run) | native peak RSS MB | native | check |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    med: Callable[[list[float]], float] = statistics.median
    for line in lines:
        out.append(
            f"| {line.what} | {med(line.openfdi_s):.2f} | {med(line.native_s):.2f} | "
            f"{line.ratio:.2f}x | {line.rows / med(line.openfdi_s):,.0f} | "
            f"{med(line.openfdi_rss_mb):.0f} ({med(line.openfdi_rise_mb):.0f}) | "
            f"{med(line.native_rss_mb) if line.native_rss_mb else float('nan'):.0f} | "
            f"{line.native} | {line.check} |"
        )
    csv_in = next(line for line in lines if line.what.startswith("CSV"))
    csv_out = next(line for line in lines if line.what.endswith("CSV"))
    parquet = next(line for line in lines if line.what.endswith("Parquet"))
    out += [
        "",
        f"Goals: CSV → PostgreSQL ≥ {GOAL}x of psql \\copy: **{csv_in.ratio:.2f}x** "
        f"({'met' if csv_in.ratio >= GOAL else 'NOT met'}); PostgreSQL → CSV ≥ {GOAL}x of psql "
        f"\\copy: **{csv_out.ratio:.2f}x** ({'met' if csv_out.ratio >= GOAL else 'NOT met'}); "
        f"PostgreSQL → Parquet ≥ {GOAL}x of "
        f"the pyarrow loop: **{parquet.ratio:.2f}x** "
        f"({'met' if parquet.ratio >= GOAL else 'NOT met'}), peak RSS < {GOAL_RSS_MB:.0f} MB: "
        f"**{statistics.median(parquet.openfdi_rss_mb):.0f} MB**.",
        f"Machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at the end (shared).",
    ]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    lines = bench(args.rows, args.repeat)
    table = render(lines, args.rows, args.repeat)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(table)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
