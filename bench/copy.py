"""Copy benchmark: openfdi's engine next to the native tools, on PostgreSQL, MariaDB and SQLite.

    .venv/bin/python bench/copy.py            # PG->PG 1,000,000 rows, others 500,000; 20 stops
    .venv/bin/python bench/copy.py --quick    # 100,000 rows for every pair, 5 stops
    .venv/bin/python bench/copy.py --rows 1000000 --slow-rows 1000000 --pair "MySQL→PG"
    .venv/bin/python bench/copy.py --rows 3000000 --parallel 1,2,4   # key-range slices, PG->PG
    .venv/bin/python bench/copy.py --rows 3000000 --parallel 1,2,4 --executor celery

It generates deterministic pseudo-random rows of 10 typed columns (bigint primary key, int,
varchar(32), numeric(12,2), double, text, timestamp(6) without and with time zone, boolean,
date; about 1.6% NULLs in every other column; unicode, quotes and commas in the strings) and
loads them into a fresh schema on PostgreSQL (127.0.0.1:5432), a fresh database on MariaDB
(127.0.0.1:3306) and a SQLite file. MariaDB has no time zone type: both timestamps are
DATETIME(6) there, the second one holding the UTC wall time.

The pairs other than PG->PG move 500,000 rows by default (--slow-rows), to keep the full run
near 15 minutes on a 2-CPU machine; rows/s hardly depends on the table size.

Then it starts a real `openfdi serve` on 127.0.0.1 (free port, own data dir, engine on) and, for
each pair (PG->PG, MySQL->PG, PG->MySQL, MySQL->MySQL, SQLite->PG):

- the native pipe (psql binary COPY; `mariadb --batch` into COPY; mariadb-dump into mariadb;
  ...; the exact commands are listed under the table) into an empty, pre-created table;
- openfdi: data sources and a TIMING task created through the signed API, `POST .../run`, polled
  through monitor-logs until it ends; rows/s from the run's start_time/end_time and data_count.
  The target table is created by openfdi from the source schema. The server's peak RSS during
  the run is its VmHWM, reset before the run (`/proc/<pid>/clear_refs`), and sampled VmRSS;
- a value-by-value check of every target (openfdi's and the native one) against the generated
  rows, read back ordered by key: Decimal exact and typed, doubles bit-exact, timestamps to the
  microsecond (aware values compared in UTC), booleans, dates, strings, NULLs.

Last, stop latency: 20 runs of a large PG->PG copy (PG->MySQL with --stop-target mysql), each
terminated after 0.5-1 s of copying; latency is the run's end_time (server clock) minus the time
the client sent the terminate.

With `--parallel N,...` it benchmarks only PG->PG, once per N: the native binary COPY pipe, then
openfdi with the task detail's `"parallelism": N` (N key-range slices at once, docs/task-detail.md),
side by side, each target checked value by value; the table (bench/results/copy-parallel.md)
gives each ratio and the speed-up over N = 1. No stop test in that mode. With `--executor
celery`, the runs execute in 2 `openfdi worker --executor celery` processes (RabbitMQ on
127.0.0.1, PostgreSQL metadata in a schema of the `test` database, dropped at the end), and the
peak RSS and CPU columns are the workers'.

The markdown table is printed and written to bench/results/copy.md. Everything it creates (the
schema, the two databases, the temp dir, the server) is removed at the end, also on failure.
"""

from __future__ import annotations

# This file is named copy.py, like the standard library's `copy` module, and Python puts the
# script's directory first on sys.path: drop it before anything imports `copy` (dataclasses
# does), or the stdlib import would load this script instead. Hence E402 below.
# ruff: noqa: E402
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # the repository's root: `bench.served`

import argparse
import contextlib
import math
import platform
import random
import shlex
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql  # type: ignore[import-untyped]
import pymysql.cursors  # type: ignore[import-untyped]
from bench.served import Api, RssWatch, RunOutcome, openfdi_server
from bench.served import status_kb as _status_kb

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
MY = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
RESULTS = Path(__file__).resolve().parent / "results" / "copy.md"
PARALLEL_RESULTS = RESULTS.with_name("copy-parallel.md")
SEED = 20261123

GOAL_PG_PG = 0.8
GOAL_MYSQL_PG = 0.45
GOAL_ROWS_S = 150_000
GOAL_RSS_MB = 150.0
GOAL_STOP_P99_MS = 1000.0

COLUMNS = ("id", "n_int", "vc", "amount", "dbl", "txt", "ts", "tstz", "flag", "day")
KINDS = ("int", "int", "str", "dec", "float", "str", "ts", "ts", "bool", "date")
PG_DDL = (
    "CREATE TABLE {t} (id bigint PRIMARY KEY, n_int integer, vc varchar(32), "
    "amount numeric(12,2), dbl double precision, txt text, ts timestamp(6), "
    "tstz timestamptz(6), flag boolean, day date)"
)
MY_DDL = (
    "CREATE TABLE {t} (id BIGINT PRIMARY KEY, n_int INT, vc VARCHAR(32), amount DECIMAL(12,2), "
    "dbl DOUBLE, txt TEXT, ts DATETIME(6), tstz DATETIME(6), flag BOOLEAN, day DATE) "
    "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
)
SQLITE_DDL = (
    "CREATE TABLE bench (id INTEGER PRIMARY KEY, n_int INT, vc VARCHAR(32), "
    "amount DECIMAL(12,2), dbl DOUBLE, txt TEXT, ts TIMESTAMP, tstz TIMESTAMPTZ, flag BOOLEAN, "
    "day DATE)"
)
SELECT_LIST = ", ".join(COLUMNS)

# No tab, newline or backslash: the native text pipes (`mariadb --raw`) cannot carry them.
ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789      ,.;:'\"-_()"
    "éüßøæñçÅΩπж漢字かな😀€"
)
EPOCH = datetime(1970, 1, 1)
TS_LOW_US = int((datetime(1971, 1, 1) - EPOCH).total_seconds()) * 1_000_000
TS_SPAN_US = int((datetime(2037, 12, 31) - datetime(1971, 1, 1)).total_seconds()) * 1_000_000
DAY_LOW = date(1900, 1, 1).toordinal()
DAY_SPAN = date(2099, 12, 31).toordinal() - DAY_LOW

Row = tuple[Any, ...]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- data ----------------------------------------------------------------------------------------


def generate(n: int) -> Iterator[Row]:
    """N rows in key order, the same for every call: (id, n_int, vc, amount, dbl, txt, ts,
    tstz, flag, day), tstz as naive UTC wall time."""
    rng = random.Random(SEED)
    bits = rng.getrandbits
    words = ["".join(rng.choices(ALPHABET, k=rng.randint(1, 32))) for _ in range(4096)]
    blob = "".join(rng.choices(ALPHABET, k=65536 + 256))
    delta, fromordinal = timedelta, date.fromordinal
    for key in range(1, n + 1):
        nulls = bits(54)
        row = [
            key,
            bits(32) - 2**31,
            words[bits(12)],
            Decimal(bits(40) - 2**39).scaleb(-2),
            (rng.random() - 0.5) * 10.0 ** (bits(5) - 12),
            blob[(o := bits(16)) : o + 1 + bits(7) + bits(6)],
            EPOCH + delta(microseconds=TS_LOW_US + bits(52) % TS_SPAN_US),
            EPOCH + delta(microseconds=TS_LOW_US + bits(52) % TS_SPAN_US),
            bool(bits(1)),
            fromordinal(DAY_LOW + bits(17) % DAY_SPAN),
        ]
        for column in range(1, 10):  # each non-key column NULL with probability 1/64
            if (nulls >> (6 * (column - 1))) & 63 == 0:
                row[column] = None
        yield tuple(row)


def load_postgres(schema: str, n: int) -> None:
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(PG_DDL.format(t=f"{schema}.bench"))
        with (
            conn.transaction(),
            conn.cursor() as cursor,
            cursor.copy(f"COPY {schema}.bench ({SELECT_LIST}) FROM STDIN (FORMAT binary)") as c,
        ):
            c.set_types(
                [
                    "int8",
                    "int4",
                    "varchar",
                    "numeric",
                    "float8",
                    "text",
                    "timestamp",
                    "timestamptz",
                    "bool",
                    "date",
                ]
            )
            for row in generate(n):
                tstz = row[7]
                c.write_row((*row[:7], tstz and tstz.replace(tzinfo=UTC), *row[8:]))
        conn.execute(f"VACUUM ANALYZE {schema}.bench")


def _tsv(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return str(value)


def load_mysql(database: str, n: int, tmp: Path) -> None:
    path = tmp / "mysql-load.tsv"
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for row in generate(n):
            out.write("\t".join(map(_tsv, row)) + "\n")
    conn = pymysql.connect(**MY, database=database, charset="utf8mb4", local_infile=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE'")
            cursor.execute(MY_DDL.format(t="bench"))
            cursor.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE bench CHARACTER SET utf8mb4 ({SELECT_LIST})",
                (str(path),),
            )
            cursor.execute("SHOW COUNT(*) WARNINGS")
            warnings = cursor.fetchone()[0]
            if warnings:
                cursor.execute("SHOW WARNINGS LIMIT 3")
                raise RuntimeError(f"MariaDB load warnings: {cursor.fetchall()}")
            cursor.execute("ANALYZE TABLE bench")
            cursor.fetchall()
        conn.commit()
    finally:
        conn.close()
        path.unlink(missing_ok=True)


def _sqlite_value(value: Any) -> Any:
    # openfdi's SQLite storage forms: booleans 0/1, decimals as text (numeric affinity makes them
    # REAL), timestamps as ISO text with microseconds, `+00:00` for TIMESTAMPTZ, dates ISO.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return value


def load_sqlite(path: Path, n: int) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(SQLITE_DDL)
        conn.executemany(
            "INSERT INTO bench VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    *map(_sqlite_value, row[:7]),
                    None if row[7] is None else _sqlite_value(row[7]) + "+00:00",
                    None if row[8] is None else int(row[8]),
                    _sqlite_value(row[9]),
                )
                for row in generate(n)
            ),
        )
        conn.commit()
    finally:
        conn.close()


# --- checking values ------------------------------------------------------------------------------


def _normalise(value: Any, kind: str) -> Any:
    """The value in the form the generated rows use, or a marker naming a wrong type."""
    if value is None:
        return None
    ok: bool
    if kind == "int":
        ok = type(value) is int
    elif kind == "str":
        ok = type(value) is str
    elif kind == "dec":
        ok = isinstance(value, Decimal)
    elif kind == "float":
        ok = type(value) is float
    elif kind == "bool":
        if type(value) is int and value in (0, 1):
            value = bool(value)
        ok = type(value) is bool
    elif kind == "ts":
        ok = isinstance(value, datetime)
        if ok and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
    else:  # date
        ok = type(value) is date
    return value if ok else ("<wrong type>", type(value).__name__, value)


def _same(expected: Any, got: Any, kind: str) -> bool:
    if kind == "float" and expected is not None and type(got) is float:
        return repr(expected) == repr(got)
    return expected == got and type(expected) is type(got)


def compare_rows(expected: Iterator[Row], actual: Iterator[Sequence[Any]]) -> tuple[str, int]:
    """("exact", rows) or (the first difference, rows read)."""
    count = 0
    for want, got in zip(expected, actual, strict=False):
        count += 1
        for column, kind in enumerate(KINDS):
            value = _normalise(got[column], kind)
            if not _same(want[column], value, kind):
                return (
                    f"id {want[0]} column {COLUMNS[column]}: expected {want[column]!r}, "
                    f"got {got[column]!r}",
                    count,
                )
    return "exact", count


def _pg_rows(table: str) -> Iterator[tuple[Any, ...]]:
    with psycopg.connect(**PG) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        with conn.cursor(name="bench_check") as cursor:
            cursor.itersize = 20_000
            cursor.execute(f"SELECT {SELECT_LIST} FROM {table} ORDER BY id")
            yield from cursor


def _my_rows(database: str, table: str) -> Iterator[tuple[Any, ...]]:
    conn = pymysql.connect(
        **MY, database=database, charset="utf8mb4", cursorclass=pymysql.cursors.SSCursor
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")
            cursor.execute(f"SELECT {SELECT_LIST} FROM `{table}` ORDER BY id")
            while chunk := cursor.fetchmany(20_000):
                yield from chunk
    finally:
        conn.close()


def _sqlite_rows(path: Path) -> Iterator[tuple[Any, ...]]:
    # Undo _sqlite_value (a source check: SQLite has no types of its own to compare).
    conn = sqlite3.connect(path)
    try:
        for row in conn.execute(f"SELECT {SELECT_LIST} FROM bench ORDER BY id"):
            amount = row[3]
            if amount is not None:
                amount = Decimal(repr(amount) if isinstance(amount, float) else str(amount))
            ts, tstz, day = row[6], row[7], row[9]
            yield (
                *row[:3],
                amount,
                *row[4:6],
                ts and datetime.fromisoformat(ts),
                tstz and datetime.fromisoformat(tstz),
                row[8],
                day and date.fromisoformat(day),
            )
    finally:
        conn.close()


def count_rows(rows: Iterator[Any]) -> int:
    return sum(1 for _ in rows)


def check(kind: str, where: str, table: str, n: int) -> str:
    """Compare a table with the generated rows; "exact" or what differs."""
    if kind == "pg":
        rows: Iterator[Sequence[Any]] = _pg_rows(f"{where}.{table}")
    elif kind == "mysql":
        rows = _my_rows(where, table)
    else:
        rows = _sqlite_rows(Path(where))
    try:
        verdict, seen = compare_rows(generate(n), rows)
        extra = count_rows(rows) if verdict == "exact" else 0
    finally:
        close = getattr(rows, "close", None)
        if close:
            close()
    if verdict == "exact" and seen + extra != n:
        return f"{seen + extra:,} rows, expected {n:,}"
    return verdict


def target_types(kind: str, where: str, table: str) -> str:
    """The target table's column types and primary key, compactly."""
    if kind == "pg":
        with psycopg.connect(**PG) as conn:
            rows = conn.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
                "coalesce(a.attnum = ANY(i.indkey::int2[]), false) "
                "FROM pg_attribute a LEFT JOIN pg_index i "
                "ON i.indrelid = a.attrelid AND i.indisprimary "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum",
                (f"{where}.{table}",),
            ).fetchall()
    else:
        conn = pymysql.connect(**MY, database=where)
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT COLUMN_NAME, COLUMN_TYPE, COLUMN_KEY = 'PRI' FROM "
                    "information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                    "ORDER BY ORDINAL_POSITION",
                    (where, table),
                )
                rows = list(cursor.fetchall())
        finally:
            conn.close()
    return ", ".join(f"{name} {typ}{' PK' if pk else ''}" for name, typ, pk in rows)


# --- native pipes ---------------------------------------------------------------------------------


def run_pipe(command: str, timeout_s: float) -> float:
    """Run a shell pipeline (pipefail, own process group); its wall time in seconds."""
    env = {**os.environ, "PGTZ": "UTC", "PGCLIENTENCODING": "UTF8"}
    started = time.perf_counter()
    process = subprocess.Popen(
        ["bash", "-o", "pipefail", "-c", command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise RuntimeError(f"native pipe timed out after {timeout_s:.0f} s: {command}") from None
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"native pipe failed ({process.returncode}): {stderr.decode()[-800:]}")
    return elapsed


PSQL = "psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres"
MARIADB = "mariadb -h 127.0.0.1 -P 3306 -u root --default-character-set=utf8mb4"
MARIADB_DUMP = "mariadb-dump -h 127.0.0.1 -P 3306 -u root --default-character-set=utf8mb4"


def q(text: str) -> str:
    """Quote one shell word, in double quotes where that is safe (easier to read)."""
    if not any(c in text for c in '"$`\\!'):
        return f'"{text}"'
    return shlex.quote(text)


def native_command(pair: str, ctx: Context, source: str, target: str) -> str:
    s, db, db2 = ctx.schema, ctx.database, ctx.database2
    if pair == "PG→PG":
        return (
            f"{PSQL} -c {q(f'COPY {s}.{source} TO STDOUT (FORMAT binary)')} | "
            f"{PSQL} -c {q(f'COPY {s}.{target} FROM STDIN (FORMAT binary)')}"
        )
    if pair == "MySQL→PG":
        copy = f"COPY {s}.{target} FROM STDIN (FORMAT text, NULL 'NULL')"
        return (
            f"{MARIADB} --batch --raw --skip-column-names "
            f"-e {q(f'SELECT {SELECT_LIST} FROM {db}.{source}')} | {PSQL} -c {q(copy)}"
        )
    if pair == "PG→MySQL":
        select = (
            "SELECT id, n_int, vc, amount, dbl, txt, ts, tstz AT TIME ZONE 'UTC', flag::int, day "
            f"FROM {s}.{source}"
        )
        load = f"LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE {target} CHARACTER SET utf8mb4"
        return (
            f"{PSQL} -c {q(f'COPY ({select}) TO STDOUT')} | "
            f"{MARIADB} --local-infile=1 {db} -e {q(load)}"
        )
    if pair == "MySQL→MySQL":
        return f"{MARIADB_DUMP} --no-create-info {db} {source} | {MARIADB} {db2}"
    if pair == "SQLite→PG":
        return (
            f"sqlite3 -csv {q(str(ctx.sqlite_path))} {q(f'SELECT {SELECT_LIST} FROM {source}')} | "
            f"{PSQL} -c {q(f'COPY {s}.{target} FROM STDIN (FORMAT csv)')}"
        )
    raise ValueError(pair)


def generic(command: str, ctx: Context) -> str:
    """The command with this run's random names replaced by placeholders."""
    return (
        command.replace(ctx.database2, "<db2>")
        .replace(ctx.database, "<db>")
        .replace(ctx.schema, "<schema>")
        .replace(str(ctx.sqlite_path), "<file.db>")
    )


# --- the benchmark --------------------------------------------------------------------------------


@dataclass
class Context:
    pair_rows: dict[str, int]
    """rows copied per pair"""
    loaded: dict[str, int]
    """rows in each database's `bench` table"""
    tmp: Path
    schema: str
    database: str
    database2: str
    sqlite_path: Path
    datasources: dict[str, str] = field(default_factory=dict)


@dataclass
class PairResult:
    pair: str
    rows: int
    outcome: RunOutcome
    native_s: float
    peak_mb: float
    delta_mb: float
    exact: str
    native_exact: str
    command: str
    types: str

    @property
    def rate(self) -> float:
        return self.outcome.rows / max(self.outcome.ms, 1) * 1000

    @property
    def native_rate(self) -> float:
        return self.rows / self.native_s

    @property
    def ratio(self) -> float:
        return self.rate / self.native_rate


PAIRS = {
    "PG→PG": ("pg", "pg"),
    "MySQL→PG": ("mysql", "pg"),
    "PG→MySQL": ("pg", "mysql"),
    "MySQL→MySQL": ("mysql", "mysql"),
    "SQLite→PG": ("sqlite", "pg"),
}


def _where(kind: str, ctx: Context) -> str:
    return {"pg": ctx.schema, "mysql": ctx.database, "sqlite": str(ctx.sqlite_path)}[kind]


def _exec_pg(sql: str) -> None:
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(sql)


def _exec_my(database: str, sql: str) -> None:
    conn = pymysql.connect(**MY, database=database, charset="utf8mb4")
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
        conn.commit()
    finally:
        conn.close()


def settle() -> None:
    """Flush PostgreSQL's dirty buffers so one measurement does not pay for the last one."""
    _exec_pg("CHECKPOINT")
    time.sleep(1)


def source_table(ctx: Context, kind: str, n: int) -> str:
    """`bench`, or its first n rows as a table of their own (same DDL) when it has more."""
    if ctx.loaded[kind] == n:
        return "bench"
    if kind != "pg":
        raise ValueError(f"{kind} holds {ctx.loaded[kind]} rows, not {n}")
    table = f"bench_{n}"
    with psycopg.connect(**PG, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f"{ctx.schema}.{table}",)).fetchone() == (None,):
            conn.execute(PG_DDL.format(t=f"{ctx.schema}.{table}"))
            conn.execute(
                f"INSERT INTO {ctx.schema}.{table} SELECT * FROM {ctx.schema}.bench WHERE id <= {n}"
            )
            conn.execute(f"VACUUM ANALYZE {ctx.schema}.{table}")
    return table


def warm_up(pairs: Sequence[str], ctx: Context, api: Api) -> None:
    """Copy 1,000 rows per pair first, so the measured runs do not pay for the server's lazy
    imports and first connections (the absolute peak RSS still includes them)."""
    for pair in pairs:
        src, dst = PAIRS[pair]
        target = f"warm_{src}_to_{dst}"
        detail = (
            '{"sourceSelectedDatasource": {"table": "bench", "where": "id <= 1000"}, '
            f'"targetSelectedDatasource": {{"table": "{target}"}}}}'
        )
        task_id = api.task(f"warm-{target}", ctx.datasources[src], ctx.datasources[dst], detail)
        outcome = api.wait(task_id, api.run(task_id), 120, poll_s=0.1)
        if outcome.status != "SUCCESS":
            raise RuntimeError(f"warm-up {pair}: {outcome.status} {outcome.remarks}")
        if dst == "pg":
            _exec_pg(f"DROP TABLE {ctx.schema}.{target}")
        else:
            _exec_my(ctx.database, f"DROP TABLE `{target}`")


def bench_pair(pair: str, ctx: Context, api: Api, pid: int, timeout_s: float) -> PairResult:
    src, dst = PAIRS[pair]
    n = ctx.pair_rows[pair]
    source = source_table(ctx, src, n)
    target = f"{src}_to_{dst}"
    # The native target: empty, created beforehand with the source's own DDL for that database.
    if pair == "MySQL→MySQL":  # mariadb-dump's INSERTs name the source table
        native_kind, native_where, native_table = "mysql", ctx.database2, source
        _exec_my(ctx.database2, MY_DDL.format(t=source))
    elif dst == "pg":
        native_kind, native_where, native_table = "pg", ctx.schema, f"{target}_native"
        _exec_pg(PG_DDL.format(t=f"{ctx.schema}.{native_table}"))
    else:
        native_kind, native_where, native_table = "mysql", ctx.database, f"{target}_native"
        _exec_my(ctx.database, MY_DDL.format(t=native_table))
    command = native_command(pair, ctx, source, native_table)
    settle()
    native_s = run_pipe(command, timeout_s)
    log(f"{pair}: native {n / native_s:,.0f} rows/s ({native_s:.2f} s)")

    detail = (
        f'{{"sourceSelectedDatasource": {{"table": "{source}"}}, '
        f'"targetSelectedDatasource": {{"table": "{target}", "writeMode": "insert"}}}}'
    )
    task_id = api.task(f"copy-{target}", ctx.datasources[src], ctx.datasources[dst], detail)
    settle()
    watch = RssWatch(pid)
    try:
        run_id = api.run(task_id)
        outcome = api.wait(task_id, run_id, timeout_s, poll_s=0.2)
    finally:
        peak_mb, delta_mb = watch.stop()
    rate = outcome.rows / max(outcome.ms, 1) * 1000
    log(
        f"{pair}: openfdi {outcome.status} {outcome.rows:,} rows in {outcome.ms} ms "
        f"({rate:,.0f} rows/s), peak RSS {peak_mb:.0f} MB (+{delta_mb:.0f}), "
        f"remarks {outcome.remarks!r}"
    )
    exact = check(dst, _where(dst, ctx), target, n)
    log(f"{pair}: openfdi values {exact}")
    native_exact = check(native_kind, native_where, native_table, n)
    log(f"{pair}: native values {native_exact}")
    types = target_types(dst, _where(dst, ctx), target)
    # Free the space: the next pair should not pay for this one's tables.
    if dst == "pg":
        _exec_pg(f"DROP TABLE {ctx.schema}.{target}, {ctx.schema}.{native_table}")
    else:
        _exec_my(ctx.database, f"DROP TABLE `{target}`")
        _exec_my(native_where, f"DROP TABLE `{native_table}`")
    return PairResult(
        pair,
        n,
        outcome,
        native_s,
        peak_mb,
        delta_mb,
        exact,
        native_exact,
        generic(command, ctx),
        types,
    )


@dataclass
class ParallelResult:
    parallelism: int
    rows: int
    outcome: RunOutcome
    native_s: float
    peak_mb: float
    exact: str
    native_busy: float
    """The machine's CPUs busy during the native pipe (0..1)."""
    busy: float
    """The machine's CPUs busy during openfdi's run (0..1)."""
    server_cpu_s: float
    """CPU seconds the processes executing runs used during its run (all their threads)."""

    @property
    def rate(self) -> float:
        return self.outcome.rows / max(self.outcome.ms, 1) * 1000

    @property
    def native_rate(self) -> float:
        return self.rows / self.native_s


def bench_parallel(
    ctx: Context, api: Api, pids: list[int], parallelism: int, timeout_s: float
) -> ParallelResult:
    """PG->PG with `parallelism` slices, right after the native pipe (same table, same load).
    `pids`: the processes that execute runs (the server, or the Celery workers); the peak RSS
    is the largest of theirs, the CPU seconds their sum."""
    n = ctx.pair_rows["PG→PG"]
    source = source_table(ctx, "pg", n)
    target, native_table = f"par_{parallelism}", f"par_{parallelism}_native"
    _exec_pg(PG_DDL.format(t=f"{ctx.schema}.{native_table}"))
    settle()
    busy_before = machine_busy_seconds()
    native_s = run_pipe(native_command("PG→PG", ctx, source, native_table), timeout_s)
    native_busy = (machine_busy_seconds() - busy_before) / (native_s * (os.cpu_count() or 1))
    log(
        f"parallel {parallelism}: native {n / native_s:,.0f} rows/s ({native_s:.2f} s, "
        f"CPUs {native_busy:.0%} busy)"
    )
    detail = (
        f'{{"sourceSelectedDatasource": {{"table": "{source}"}}, '
        f'"targetSelectedDatasource": {{"table": "{target}", "writeMode": "insert"}}, '
        f'"parallelism": {parallelism}}}'
    )
    name = f"copy-{target}-{uuid.uuid4().hex[:6]}"  # a count may be measured twice (drift)
    task_id = api.task(name, ctx.datasources["pg"], ctx.datasources["pg"], detail)
    settle()
    watches = [RssWatch(pid) for pid in pids]
    busy_before, wall_before = machine_busy_seconds(), time.time()
    cpu_before = sum(_process_cpu_s(pid) for pid in pids)
    try:
        outcome = api.wait(task_id, api.run(task_id), timeout_s, poll_s=0.2)
    finally:
        peak_mb = max(watch.stop()[0] for watch in watches)
    # Up to the poll that saw the end: a little idle time after the run is included.
    wall = time.time() - wall_before
    busy = (machine_busy_seconds() - busy_before) / (wall * (os.cpu_count() or 1))
    server_cpu_s = sum(_process_cpu_s(pid) for pid in pids) - cpu_before
    rate = outcome.rows / max(outcome.ms, 1) * 1000
    log(
        f"parallel {parallelism}: openfdi {outcome.status} {outcome.rows:,} rows in "
        f"{outcome.ms} ms ({rate:,.0f} rows/s), peak RSS {peak_mb:.0f} MB, CPUs {busy:.0%} "
        f"busy, server {server_cpu_s:.1f} CPU-s"
    )
    exact = check("pg", ctx.schema, target, n)
    log(f"parallel {parallelism}: openfdi values {exact}")
    _exec_pg(f"DROP TABLE {ctx.schema}.{target}, {ctx.schema}.{native_table}")
    return ParallelResult(
        parallelism, n, outcome, native_s, peak_mb, exact, native_busy, busy, server_cpu_s
    )


def _process_cpu_s(pid: int) -> float:
    """User and system CPU seconds of one process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def render_parallel(results: list[ParallelResult], header: list[str]) -> str:
    base = next((r.rate for r in results if r.parallelism == 1), None)
    lines = [
        *header,
        "",
        "| parallelism | native rows/s | native CPUs busy | openfdi rows/s | openfdi CPUs busy "
        "| server CPU-s | ratio | vs parallelism 1 | peak RSS MB | status | values |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        speedup = f"{r.rate / base:.2f}x" if base else "-"
        lines.append(
            f"| {r.parallelism} | {r.native_rate:,.0f} | {r.native_busy:.0%} | {r.rate:,.0f} | "
            f"{r.busy:.0%} | {r.server_cpu_s:.1f} | {r.rate / r.native_rate:.2f} | {speedup} | "
            f"{r.peak_mb:.0f} | "
            f"{r.outcome.status} | {r.exact} |"
        )
    lines += [
        "",
        "native: `psql -c 'COPY <schema>.bench TO STDOUT (FORMAT binary)' | "
        "psql -c 'COPY <schema>.<target> FROM STDIN (FORMAT binary)'`, measured right before "
        'each openfdi run. openfdi: a TIMING task with `"parallelism": N`, rows/s from the '
        "run's start and end times. CPUs busy: the whole machine's (all processes), from "
        "/proc/stat; server CPU-s: the processes executing runs (the server, or the Celery "
        "workers; all their threads, /proc/<pid>/stat).",
        "",
    ]
    return "\n".join(lines)


@dataclass
class StopResult:
    pair: str
    latencies_ms: list[float]
    statuses: dict[str, int]
    rows: int
    remarks: dict[str, int]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def bench_stops(ctx: Context, api: Api, stops: int, rows: int, target: str) -> StopResult:
    """`stops` runs of a large copy from PG to `target` ("pg" or "mysql"), each terminated
    after 0.5-1 s."""
    s = ctx.schema
    _exec_pg(PG_DDL.format(t=f"{s}.stop_src"))
    _exec_pg(
        f"INSERT INTO {s}.stop_src SELECT g, (g * 7919 % 2000000000)::int, md5(g::text), "
        "((g * 104729) % 100000000000)::numeric / 100, g * 1.0000001e-3, "
        "repeat(md5(g::text), 3), timestamp '2000-01-01' + g * interval '1.000001 second', "
        "timestamptz '2000-01-01Z' + g * interval '2.000003 second', g % 2 = 0, "
        f"date '1950-01-01' + (g % 50000)::int FROM generate_series(1::bigint, {rows}) g"
    )
    _exec_pg(f"VACUUM ANALYZE {s}.stop_src")
    detail = (
        '{"sourceSelectedDatasource": {"table": "stop_src"}, '
        '"targetSelectedDatasource": {"table": "stop_dst", "writeMode": "truncate_insert"}}'
    )
    task_id = api.task("stop-latency", ctx.datasources["pg"], ctx.datasources[target], detail)
    rng = random.Random(SEED)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    remarks: dict[str, int] = {}
    copied = 0
    for index in range(stops):
        run_id = api.run(task_id)
        time.sleep(rng.uniform(0.5, 1.0))
        sent_ms = time.time() * 1000
        api.terminate(task_id)
        outcome = api.wait(task_id, run_id, 60, poll_s=0.02)
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        key = outcome.remarks or ""
        remarks[key] = remarks.get(key, 0) + 1
        copied += outcome.rows
        if outcome.status == "CANCELLED":
            latencies.append(outcome.end_time - sent_ms)
        log(
            f"stop {index + 1}/{stops}: {outcome.status} after {outcome.rows:,} rows, "
            f"terminate -> end {outcome.end_time - sent_ms:.0f} ms"
        )
    pair = {"pg": "PG→PG", "mysql": "PG→MySQL"}[target]
    return StopResult(pair, sorted(latencies), statuses, copied, remarks)


# --- rendering ------------------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def versions() -> str:
    with psycopg.connect(**PG) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0].split()[0]  # type: ignore[index]
    conn2 = pymysql.connect(**MY)
    try:
        with conn2.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            maria = cursor.fetchone()[0].split("-")[0]
    finally:
        conn2.close()
    return f"PostgreSQL {pg}, MariaDB {maria}, SQLite {sqlite3.sqlite_version}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def render(
    results: list[PairResult], stops: StopResult | None, header: list[str], missing: list[str]
) -> str:
    lines = [
        *header,
        "",
        "| pair | rows | openfdi rows/s | native rows/s | ratio | openfdi peak RSS MB (delta) "
        "| values exact | native values exact |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        status = "" if r.outcome.status == "SUCCESS" else f" ({r.outcome.status})"
        lines.append(
            f"| {r.pair} | {r.rows:,} | {r.rate:,.0f}{status} | {r.native_rate:,.0f} "
            f"| {r.ratio:.2f}x | {r.peak_mb:.0f} (+{r.delta_mb:.0f}) | {r.exact} "
            f"| {r.native_exact} |"
        )
    by = {r.pair: r for r in results}
    lines += ["", "Goals:", ""]
    if "PG→PG" in by:
        r = by["PG→PG"]
        lines.append(
            f"- PG→PG ≥ {GOAL_PG_PG}x native: {_verdict(r.ratio >= GOAL_PG_PG)} ({r.ratio:.2f}x)"
        )
    if "MySQL→PG" in by:
        r = by["MySQL→PG"]
        lines.append(
            f"- MySQL→PG ≥ {GOAL_MYSQL_PG}x native: {_verdict(r.ratio >= GOAL_MYSQL_PG)} "
            f"({r.ratio:.2f}x)"
        )
    if results:
        slow = [f"{r.pair} {r.rate:,.0f}" for r in results if r.rate < GOAL_ROWS_S]
        lines.append(
            f"- every pair ≥ {GOAL_ROWS_S:,} rows/s: {_verdict(not slow)}"
            + (f" (below: {', '.join(slow)})" if slow else "")
        )
        worst = max(results, key=lambda r: r.peak_mb)
        lines.append(
            f"- server peak RSS < {GOAL_RSS_MB:.0f} MB: {_verdict(worst.peak_mb < GOAL_RSS_MB)} "
            f"(highest {worst.peak_mb:.0f} MB in {worst.pair}, +{worst.delta_mb:.0f} MB over "
            "its RSS before the run)"
        )
        wrong = [r.pair for r in results if r.exact != "exact"]
        lines.append(
            f"- every value exact: {_verdict(not wrong)}"
            + (f" (not exact: {', '.join(wrong)})" if wrong else "")
        )
    if stops is not None:
        p50 = percentile(stops.latencies_ms, 50)
        p99 = percentile(stops.latencies_ms, 99)
        total = sum(stops.statuses.values())
        ok = p99 < GOAL_STOP_P99_MS and len(stops.latencies_ms) == total
        lines.append(
            f"- stop latency p99 < {GOAL_STOP_P99_MS:.0f} ms: {_verdict(ok)} "
            f"(terminate → end_time over {len(stops.latencies_ms)} cancelled {stops.pair} runs "
            f"of {total}: "
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max "
            f"{max(stops.latencies_ms, default=float('nan')):.0f} ms; outcomes "
            + ", ".join(f"{k} {v}" for k, v in sorted(stops.statuses.items()))
            + "; remarks "
            + "; ".join(f"{v}x {k!r}" for k, v in stops.remarks.items())
            + ")"
        )
    lines += ["", "openfdi runs:", ""]
    for r in results:
        o = r.outcome
        lines.append(
            f"- {r.pair}: {o.status}, data_count {o.rows:,}, dirty {o.dirty}, "
            f"{o.ms} ms (read {o.read_ms} ms, write {o.write_ms} ms)"
            + (f", remarks {o.remarks!r}" if o.remarks else "")
            + f"; target created as: {r.types}"
        )
    lines += ["", "Native baselines (exact commands; `<...>` are this run's random names):", ""]
    for r in results:
        lines.append(f"- {r.pair}: `{r.command}`")
    lines += [
        "",
        "Notes: openfdi rows/s = data_count / (end_time - start_time) of the run (server clock, "
        "includes connecting and creating the target table); native rows/s = rows / wall time "
        "of the whole shell pipeline (including process start). Native targets are created "
        "beforehand, empty, with the same DDL as the source table (primary key included). "
        "MySQL→PG native: `mariadb --raw` prints NULL as the word NULL, so COPY uses "
        "`NULL 'NULL'` (a string 'NULL' would become NULL too; the data has none) and the data "
        "has no tab, newline or backslash, which `--raw` cannot carry. PG→MySQL native: "
        "PostgreSQL's text COPY (\\N for NULL, backslash escapes) is what LOAD DATA reads by "
        "default; booleans cast to int and timestamptz to UTC wall time in the SELECT. "
        "SQLite→PG native: `sqlite3 -csv` prints NULL as an empty unquoted field, which CSV COPY "
        "reads as NULL; the sqlite3 shell prints REAL values with 15 significant digits, so "
        "that pipe rounds doubles (hence its 'native values' verdict). "
        "Peak RSS: the server process's VmHWM (reset before each run) and VmRSS "
        "sampled every 20 ms; delta = peak minus RSS just before the run.",
    ]
    if missing:
        lines.append(f"Native tools missing: {', '.join(missing)}.")
    return "\n".join(lines) + "\n"


# --- main -----------------------------------------------------------------------------------------


@contextmanager
def scratch_databases(ctx: Context) -> Iterator[None]:
    """The PostgreSQL schema and the two MariaDB databases, dropped afterwards."""
    with ExitStack() as stack:
        _exec_pg(f"CREATE SCHEMA {ctx.schema}")
        stack.callback(_exec_pg, f"DROP SCHEMA IF EXISTS {ctx.schema} CASCADE")
        for database in (ctx.database, ctx.database2):
            _exec_my("mysql", f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
            stack.callback(_exec_my, "mysql", f"DROP DATABASE IF EXISTS `{database}`")
        yield


CELERY_WORKERS = 2


def _step_seconds() -> str:
    value = os.environ.get("OPENFDI_CELERY_STEP_SECONDS")
    return f"{value} s" if value else "5 s, the default"


@contextmanager
def _served(executor: str, tmp: Path, suffix: str) -> Iterator[tuple[str, int, list[int]]]:
    """`openfdi serve`: (URL, server pid, the pids executing runs). `local`: the server itself,
    SQLite metadata. `celery`: PostgreSQL metadata in a schema of its own (dropped at the end)
    and 2 Celery workers on RabbitMQ, as bench/stops.py and bench/scheduler.py run them."""
    if executor == "local":
        with openfdi_server(tmp / "data", {"OPENFDI_SQLITE_ROOTS": str(tmp)}) as (url, pid):
            yield url, pid, [pid]
        return
    from bench.scheduler import openfdi_server as served_with_workers

    # Not in the database the copied tables are in: no data source may reach the metadata's.
    meta_url, schema = "postgresql://postgres@127.0.0.1:5432/test", f"bench_copy_meta_{suffix}"
    with psycopg.connect(meta_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    metadata = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    try:
        with served_with_workers(tmp / "data", metadata, CELERY_WORKERS, "celery") as served:
            yield served.url, served.pid, served.worker_pids
    finally:
        with psycopg.connect(meta_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 5 stops")
    parser.add_argument("--rows", type=int, help="rows for PG→PG (default 1,000,000)")
    parser.add_argument(
        "--slow-rows",
        type=int,
        help="rows for the other pairs (default 500,000; with --quick the same as --rows)",
    )
    parser.add_argument("--stops", type=int, help="terminated runs (default 20; 5 with --quick)")
    parser.add_argument("--pair", action="append", choices=list(PAIRS), help="repeatable")
    parser.add_argument(
        "--parallel",
        help="comma-separated slice counts, e.g. 1,2,4: PG→PG only, once per count (no stops)",
    )
    parser.add_argument(
        "--executor",
        choices=["local", "celery"],
        default="local",
        help="with --parallel: runs in the server (local) or in 2 `openfdi worker --executor "
        "celery` processes (RabbitMQ on 127.0.0.1, PostgreSQL metadata)",
    )
    parser.add_argument(
        "--stop-target",
        choices=["pg", "mysql"],
        default="pg",
        help="the stopped copies go from PostgreSQL to this (default pg)",
    )
    args = parser.parse_args()
    n = args.rows or (100_000 if args.quick else 1_000_000)
    slow_n = args.slow_rows or (n if args.quick or args.rows else min(n, 500_000))
    stops = args.stops if args.stops is not None else (5 if args.quick else 20)
    pairs = args.pair or list(PAIRS)
    parallel = [int(p) for p in args.parallel.split(",")] if args.parallel else []
    if parallel:
        pairs, stops = ["PG→PG"], 0
    elif args.executor != "local":
        parser.error("--executor celery goes with --parallel")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cleanup below still runs

    missing = [t for t in ("psql", "mariadb", "mariadb-dump", "sqlite3") if not shutil.which(t)]
    if missing:
        log(f"native tools missing: {missing}; their pairs are skipped")
        needs = {
            "PG→PG": {"psql"},
            "MySQL→PG": {"psql", "mariadb"},
            "PG→MySQL": {"psql", "mariadb"},
            "MySQL→MySQL": {"mariadb", "mariadb-dump"},
            "SQLite→PG": {"psql", "sqlite3"},
        }
        pairs = [p for p in pairs if not needs[p] & set(missing)]

    timeout_s = max(300.0, n / 5_000)
    load_before = os.getloadavg()[0]
    busy_before, wall_before = machine_busy_seconds(), time.monotonic()
    suffix = uuid.uuid4().hex[:12]
    results: list[PairResult] = []
    parallel_results: list[ParallelResult] = []
    stop_result: StopResult | None = None
    idle_mb = float("nan")
    with tempfile.TemporaryDirectory(prefix="openfdi-copy-") as tmp_name:
        tmp = Path(tmp_name)
        pair_rows = {p: n if p == "PG→PG" else slow_n for p in pairs}
        loaded = {
            kind: max([r for p, r in pair_rows.items() if PAIRS[p][0] == kind], default=0)
            for kind in ("pg", "mysql", "sqlite")
        }
        if stops and not loaded["pg"]:
            loaded["pg"] = 1  # the stop test's source is made by SQL; `bench` is not used
        ctx = Context(
            pair_rows=pair_rows,
            loaded=loaded,
            tmp=tmp,
            schema=f"bench_copy_pg_{suffix}",
            database=f"bench_copy_my_{suffix}",
            database2=f"bench_copy_my2_{suffix}",
            sqlite_path=tmp / "source.db",
        )
        with scratch_databases(ctx):
            for kind, load in (
                ("pg", lambda rows: load_postgres(ctx.schema, rows)),
                ("mysql", lambda rows: load_mysql(ctx.database, rows, tmp)),
                ("sqlite", lambda rows: load_sqlite(ctx.sqlite_path, rows)),
            ):
                rows = loaded[kind]
                if not rows:
                    continue
                started = time.perf_counter()
                load(rows)
                log(f"{kind}: {rows:,} rows loaded in {time.perf_counter() - started:.1f} s")
                verdict = check(kind, _where(kind, ctx), "bench", rows)
                if verdict != "exact":
                    raise RuntimeError(f"{kind} source does not hold the generated rows: {verdict}")
            log("sources hold exactly the generated rows")

            with _served(args.executor, tmp, suffix) as (url, pid, run_pids):
                api = Api(url)
                try:
                    ctx.datasources["pg"] = api.datasource(
                        "bench-pg",
                        "POSTGRESQL",
                        {
                            "host": "127.0.0.1",
                            "port": 5432,
                            "database_name": "postgres",
                            "user_name": "postgres",
                            "password": "",
                            "schema": ctx.schema,
                        },
                    )
                    ctx.datasources["mysql"] = api.datasource(
                        "bench-mysql",
                        "MYSQL",
                        {
                            "host": "127.0.0.1",
                            "port": 3306,
                            "database_name": ctx.database,
                            "user_name": "root",
                            "password": "",
                        },
                    )
                    ctx.datasources["sqlite"] = api.datasource(
                        "bench-sqlite", "SQLITE", {"database_name": str(ctx.sqlite_path)}
                    )
                    idle_mb = _status_kb(pid, "VmRSS") / 1024
                    log(f"server up, RSS {idle_mb:.0f} MB")
                    warm_up(pairs, ctx, api)
                    log(f"warmed up, RSS {_status_kb(pid, 'VmRSS') / 1024:.0f} MB")
                    for slices in parallel:
                        parallel_results.append(
                            bench_parallel(ctx, api, run_pids, slices, timeout_s)
                        )
                    for pair in pairs if not parallel else []:
                        results.append(bench_pair(pair, ctx, api, pid, timeout_s))
                    if stops:
                        stop_rows = max(n, 2_000_000 if not args.quick else 1_000_000)
                        stop_result = bench_stops(ctx, api, stops, stop_rows, args.stop_target)
                finally:
                    api.close()
    wall = time.monotonic() - wall_before
    others = max(0.0, machine_busy_seconds() - busy_before)
    header = [
        "# Copy: openfdi engine vs native tools",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {versions()}. Rows x 10 typed columns: "
        f"{n:,} for PG→PG"
        + (f", {slow_n:,} for the other pairs (to bound the run's time)" if slow_n != n else "")
        + (
            "; one `openfdi serve` (engine in-process, SQLite metadata) on 127.0.0.1, runs "
            if args.executor == "local"
            else f"; one `openfdi serve` (PostgreSQL metadata) on 127.0.0.1 and {CELERY_WORKERS} "
            "`openfdi worker --executor celery` processes executing its runs (RabbitMQ on "
            f"127.0.0.1, steps of {_step_seconds()}), runs "
        )
        + "started with POST …/tasks/{id}/run and polled through monitor-logs. Everything (server, "
        "databases, native tools, this script) shares the machine. "
        f"The idle server's RSS before any run: {idle_mb:.0f} MB; each pair was first run once "
        "on 1,000 rows (warm-up), so deltas exclude lazy imports and first connections.",
        f"Machine load: load average {load_before:.2f} before; all processes together used "
        f"{others:.0f} CPU-seconds during the {wall:.0f} s run "
        f"({others / (wall * (os.cpu_count() or 1)) * 100:.0f}% of the machine, this benchmark "
        "included).",
    ]
    if parallel:
        header[0] = "# Copy in parallel key-range slices: openfdi vs the native binary COPY pipe"
        table, written_to = render_parallel(parallel_results, header), PARALLEL_RESULTS
    else:
        table, written_to = render(results, stop_result, header, missing), RESULTS
    print(table)
    written_to.parent.mkdir(parents=True, exist_ok=True)
    written_to.write_text(table)
    log(f"written to {written_to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
