"""Composite (CDC) tasks from PostgreSQL into PostgreSQL, measured end to end through the API.

    .venv/bin/python bench/cdc.py                      # 50,000 changes, 200,000-row snapshot
    .venv/bin/python bench/cdc.py --changes 200000 --snapshot-rows 1000000 --rate 2000

Starts its own PostgreSQL with wal_level=logical (initdb in a temporary directory, a free
loopback port; the machine's server is not touched) and a real `openfdi serve` (SQLite
metadata, its own data dir), then measures:

1. Catch-up throughput: `--changes` single-row UPDATE transactions made while the composite
   task is stopped, then the time from the batch start call until the target has them all
   (its saved position reaches the source's WAL end). Beside it, `pg_recvlogical` (the native
   client, pgoutput, output to /dev/null) reading the same changes from a second slot created
   at the same point: the floor of merely receiving them.
2. Replication lag at a fixed rate: single-row INSERT transactions at `--rate` per second for
   `--seconds`, each stamped with clock_timestamp() at the source; a trigger on the target
   stamps each row at apply (same server, same clock). p50 / p99 / max of the difference.
3. Snapshot: a `--snapshot-rows` table copied by a new composite task (start call until its
   snapshot is committed) against a plain common task copying the same table (run call until
   its run ends SUCCESS).
4. Many tables, measured first: `--tables` tables of `--table-rows` rows followed by one
   composite task (the snapshot of them all, then every row updated, until the target's sum
   equals); the openfdi process's peak RSS (VmHWM) right after it.
5. Peak RSS of the openfdi process (VmHWM) over the whole bench.

The markdown table is printed and written to bench/results/cdc.md.

`--source mariadb` measures a MariaDB binlog source into the same PostgreSQL target (its own
mariadbd with a ROW binlog, tests/cdc/mariaserver.py): the same three measures, the catch-up
beside python-mysql-replication's raw `BinLogStreamReader` loop over the same binlog range (the
published Python way of reading a binlog: parsing the events, applying nothing; openfdi decodes
with its own decoder, my_binlog.py), the snapshot beside a plain copy task from the
same MariaDB table; written to bench/results/cdc-mariadb.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run from the project root: bench/copy.py would shadow the standard library's `copy`.
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import psycopg  # noqa: E402
from tests.cdc.mariaserver import BinlogMariaDB  # noqa: E402
from tests.cdc.pgserver import LogicalPostgres, _bin  # noqa: E402
from tests.e2e.process import Served  # noqa: E402

from openfdi.client import signed_client  # noqa: E402

PROJECT = "d4a5d4098fb4474fa22cd05f897d6b99"
INSTANCE = "6f2b6c1e-8a4d-4f6e-9b1a-2c3d4e5f6a7b"
AK, SK = "CDCBENCHAK0000000001", "cdcBenchSecretKey0000000000000000000001"
BASE = f"/v2/{PROJECT}/fdi/instances/{INSTANCE}"
RESULTS = ROOT / "bench" / "results" / "cdc.md"


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


class Bench:
    def __init__(self, pg: LogicalPostgres, served: Served) -> None:
        self.pg = pg
        self.served = served
        self.client = signed_client(served.url, AK, SK, PROJECT)
        self.ds: dict[str, str] = {}

    def sql(self, db: str, statement: str, params: Any = None) -> list[Any]:
        with psycopg.connect(self.pg.url(db), autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    maria: BinlogMariaDB | None = None

    def my(self, db: str | None, statement: str, params: Any = None) -> list[Any]:
        assert self.maria is not None
        with self.maria.connect(db) as conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall())

    def datasource(self, db: str) -> str:
        if db not in self.ds:
            mysql = self.maria is not None and db.endswith("_src")
            assert self.maria is not None or not mysql
            reply = self.client.post(
                f"{BASE}/datasources",
                json={"datasource_name": f"ds-{db}",
                      "datasource_type": "MYSQL" if mysql else "POSTGRESQL",
                      "content": self.maria.content(db) if self.maria and mysql
                      else self.pg.content(db)},
            )  # fmt: skip
            reply.raise_for_status()
            self.ds[db] = reply.json()["datasource_id"]
        return self.ds[db]

    def composite(self, name: str, src: str, dst: str) -> str:
        init = self.client.post(
            f"{BASE}/multi-tasks/init",
            json={"source_datasource_id": self.datasource(src),
                  "target_datasource_id": self.datasource(dst), "auto_mapping": True},
        )  # fmt: skip
        init.raise_for_status()
        task_id = str(init.json()[0]["task_id"])
        self.client.post(
            f"{BASE}/multi-tasks",
            json={"task_name": name, "task_id": task_id, "task_type": "REALTIME",
                  "operation_types": ["INSERT", "UPDATE", "DELETE"]},
        ).raise_for_status()  # fmt: skip
        return task_id

    def batch(self, action: str, task_id: str) -> None:
        reply = self.client.post(
            f"{BASE}/batch-operation/tasks",
            json={"action_id": action, "list": [{"task_id": task_id}]},
        )
        assert reply.json()["success_count"] == 1, reply.text

    def position(self, dst: str, task_id: str) -> int:
        if self.sql(dst, "SELECT to_regclass('openfdi_cdc_offsets')") == [(None,)]:
            return 0
        found = self.sql(
            dst,
            "SELECT lsn FROM openfdi_cdc_offsets WHERE task_id = %s AND source_table = ''",
            (task_id,),
        )
        return int(found[0][0]) if found else 0

    def wal_end(self, db: str) -> int:
        text = self.sql(db, "SELECT pg_current_wal_lsn()::text")[0][0]
        high, low = text.split("/")
        return (int(high, 16) << 32) | int(low, 16)

    def ended(self, task_id: str) -> bool:
        reply = self.client.get(f"{BASE}/tasks/{task_id}/monitor-logs")
        entities = reply.json()["entities"]
        return bool(entities) and entities[0]["execute_status"] not in ("RUNNING", "UNSTARTED")

    def stopped(self, task_id: str) -> None:
        self.batch("stop", task_id)
        wait(lambda: self.ended(task_id), 30, "the run to stop")


def catch_up(b: Bench, changes: int) -> dict[str, float]:
    for db in ("c_src", "c_dst"):
        b.sql("postgres", f"CREATE DATABASE {db}")
        b.sql(db, "CREATE TABLE ev (id int PRIMARY KEY, v bigint, note text)")
    b.sql("c_src", "INSERT INTO ev SELECT g, 0, 'row ' || g FROM generate_series(1, 1000) g")
    task_id = b.composite("bench-catch-up", "c_src", "c_dst")
    b.batch("start", task_id)
    wait(lambda: b.position("c_dst", task_id), 60, "the first snapshot")
    b.stopped(task_id)
    # The native client's slot, at the same point as openfdi's.
    recv = _bin("pg_recvlogical")
    assert recv is not None
    conn_args = ["-h", "127.0.0.1", "-p", str(b.pg.port), "-U", "postgres", "-d", "c_src"]
    subprocess.run([recv, *conn_args, "--slot", "native", "--create-slot", "-P", "pgoutput"],
                   check=True)  # fmt: skip
    b.sql(
        "c_src",
        "CREATE PROCEDURE churn(n int) LANGUAGE plpgsql AS $$ BEGIN "
        "FOR i IN 1..n LOOP UPDATE ev SET v = v + 1 WHERE id = 1 + i % 1000; COMMIT; END LOOP;"
        " END $$",
    )
    b.sql("c_src", f"CALL churn({changes})")
    end = b.wal_end("c_src")
    end_text = b.sql("c_src", "SELECT pg_current_wal_lsn()::text")[0][0]
    started = time.monotonic()
    b.batch("start", task_id)
    wait(lambda: b.position("c_dst", task_id) >= end - 1_000_000 and _same(b), 600, "catch-up")
    openfdi_s = time.monotonic() - started
    b.stopped(task_id)
    started = time.monotonic()
    subprocess.run(
        [recv, *conn_args, "--slot", "native", "--start", "-o", "proto_version=1",
         "-o", f"publication_names=openfdi_{task_id}", "-E", end_text, "-f", "/dev/null",
         "--no-loop"],
        check=True,
    )  # fmt: skip
    native_s = time.monotonic() - started
    b.sql("c_src", "SELECT pg_drop_replication_slot('native')")
    return {"changes": changes, "openfdi_s": openfdi_s, "native_s": native_s}


def _same(b: Bench) -> bool:
    query = "SELECT sum(v), count(*) FROM ev"
    return b.sql("c_src", query) == b.sql("c_dst", query)


def lag(b: Bench, rate: int, seconds: float) -> dict[str, float]:
    b.sql("postgres", "CREATE DATABASE l_src")
    b.sql("postgres", "CREATE DATABASE l_dst")
    b.sql("l_src", "CREATE TABLE tick (id int PRIMARY KEY, at timestamptz NOT NULL)")
    b.sql(
        "l_dst",
        "CREATE TABLE tick (id int PRIMARY KEY, at timestamptz NOT NULL, applied timestamptz);"
        "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "NEW.applied := clock_timestamp(); RETURN NEW; END $$;"
        "CREATE TRIGGER stamp BEFORE INSERT ON tick FOR EACH ROW EXECUTE FUNCTION stamp()",
    )
    task_id = b.composite("bench-lag", "l_src", "l_dst")
    b.batch("start", task_id)
    wait(lambda: b.position("l_dst", task_id), 60, "the lag task's snapshot")
    total = int(rate * seconds)
    sent = 0
    with psycopg.connect(b.pg.url("l_src"), autocommit=True) as conn:
        # The bench server runs with synchronous_commit=off (speed); a source's default is on,
        # and with it off the WAL writer, not the commit, makes a change visible to the slot
        # (up to wal_writer_delay, 200 ms, later).
        conn.execute("SET synchronous_commit = on")
        started = time.monotonic()
        while sent < total:
            due = int((time.monotonic() - started) * rate)
            while sent < min(due, total):
                sent += 1
                conn.execute("INSERT INTO tick VALUES (%s, clock_timestamp())", (sent,))
            time.sleep(0.002)
        achieved = total / (time.monotonic() - started)
    wait(lambda: b.sql("l_dst", "SELECT count(*) FROM tick")[0][0] == total, 120, "the lag rows")
    lags = sorted(
        r[0] * 1000
        for r in b.sql("l_dst", "SELECT extract(epoch FROM applied - at)::float8 FROM tick")
    )
    b.stopped(task_id)
    return {
        "rate": achieved,
        "p50": statistics.median(lags),
        "p99": lags[int(len(lags) * 0.99) - 1],
        "max": lags[-1],
    }


def _snapshot_then_copy(b: Bench) -> tuple[float, float]:
    """Seconds of a composite task's snapshot of `s_src.big` into `s_dst.big`, then of a plain
    TIMING copy of the same table into `s_dst.plain`, each from the API call to its end."""
    task_id = b.composite("bench-snapshot", "s_src", "s_dst")
    started = time.monotonic()
    b.batch("start", task_id)
    wait(lambda: b.position("s_dst", task_id), 600, "the snapshot")
    cdc_s = time.monotonic() - started
    b.stopped(task_id)
    detail = {"sourceSelectedDatasource": {"table": "big"},
              "targetSelectedDatasource": {"table": "plain", "writeMode": "insert"}}  # fmt: skip
    reply = b.client.post(
        f"{BASE}/tasks",
        json={"task": {"task_name": "bench-plain-copy", "task_type": "TIMING",
                       "source_datasource_id": b.datasource("s_src"),
                       "target_datasource_id": b.datasource("s_dst")},
              "task_detail": json.dumps(detail)},
    )  # fmt: skip
    reply.raise_for_status()
    plain_id = reply.json()["task"]["task_id"]
    started = time.monotonic()
    b.client.post(f"{BASE}/tasks/{plain_id}/run").raise_for_status()
    wait(lambda: b.ended(plain_id), 600, "the plain copy")
    return cdc_s, time.monotonic() - started


def snapshot(b: Bench, rows: int) -> dict[str, float]:
    b.sql("postgres", "CREATE DATABASE s_src")
    b.sql("postgres", "CREATE DATABASE s_dst")
    table = "(id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)"
    b.sql("s_src", f"CREATE TABLE big {table}")
    b.sql("s_dst", f"CREATE TABLE big {table}; CREATE TABLE plain {table}")
    b.sql(
        "s_src",
        "INSERT INTO big SELECT g, 'name ' || g, g / 7.0, now() - g * interval '1 second' "
        f"FROM generate_series(1, {rows}) g",
    )
    b.sql("s_src", "VACUUM ANALYZE big")
    cdc_s, plain_s = _snapshot_then_copy(b)
    return {"rows": rows, "cdc_s": cdc_s, "plain_s": plain_s}


# --- a MariaDB source ------------------------------------------------------------------------


def _master_position(b: Bench) -> tuple[str, int]:
    row = b.my(None, "SHOW MASTER STATUS")[0]
    return str(row[0]), int(row[1])


def _encoded(file_pos: tuple[str, int]) -> int:
    return (int(file_pos[0].rsplit(".", 1)[1]) << 32) | file_pos[1]


def my_catch_up(b: Bench, changes: int) -> dict[str, float]:
    b.my(None, "CREATE DATABASE c_src")
    b.my("c_src", "CREATE TABLE ev (id int PRIMARY KEY, v bigint, note varchar(100))")
    b.my("c_src", "INSERT INTO ev SELECT seq, 0, CONCAT('row ', seq) FROM seq_1_to_1000")
    b.sql("postgres", "CREATE DATABASE c_dst")
    b.sql("c_dst", "CREATE TABLE ev (id int PRIMARY KEY, v bigint, note text)")
    task_id = b.composite("bench-catch-up", "c_src", "c_dst")
    b.batch("start", task_id)
    wait(lambda: b.position("c_dst", task_id), 60, "the first snapshot")
    b.stopped(task_id)
    begin = _master_position(b)
    # Each UPDATE of the procedure commits on its own (autocommit): one transaction per change.
    b.my(
        "c_src",
        "CREATE PROCEDURE churn(n int) BEGIN DECLARE i int DEFAULT 0; WHILE i < n DO "
        "UPDATE ev SET v = v + 1 WHERE id = 1 + i % 1000; SET i = i + 1; END WHILE; END",
    )
    b.my("c_src", f"CALL churn({changes})")
    end = _master_position(b)
    started = time.monotonic()
    b.batch("start", task_id)
    wait(
        lambda: b.position("c_dst", task_id) >= _encoded(end) - 1_000_000 and _my_same(b),
        600,
        "catch-up",
    )
    openfdi_s = time.monotonic() - started
    b.stopped(task_id)
    native_s, seen = _raw_reader(b, begin, end)
    assert seen == changes, (seen, changes)
    return {"changes": changes, "openfdi_s": openfdi_s, "native_s": native_s}


def _raw_reader(b: Bench, begin: tuple[str, int], end: tuple[str, int]) -> tuple[float, int]:
    """python-mysql-replication's own loop over the same binlog range: every row parsed."""
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import UpdateRowsEvent

    assert b.maria is not None
    content = b.maria.content("c_src")
    started = time.monotonic()
    reader = BinLogStreamReader(
        connection_settings={"host": content["host"], "port": int(content["port"]),
                             "user": content["user_name"], "passwd": content["password"]},
        server_id=4242, resume_stream=True, log_file=begin[0], log_pos=begin[1],
        blocking=False, only_events=[UpdateRowsEvent], only_schemas=["c_src"],
        freeze_schema=True,
    )  # fmt: skip
    seen = 0
    for event in reader:
        for row in event.rows:
            seen += row["after_values"] is not None
        if reader.log_file == end[0] and reader.log_pos >= end[1]:
            break
    reader.close()
    return time.monotonic() - started, seen


def _my_same(b: Bench) -> bool:
    source = b.my("c_src", "SELECT sum(v), count(*) FROM ev")[0]
    target = b.sql("c_dst", "SELECT sum(v), count(*) FROM ev")[0]
    return (int(source[0]), int(source[1])) == (int(target[0]), int(target[1]))


def my_lag(b: Bench, rate: int, seconds: float) -> dict[str, float]:
    b.my(None, "CREATE DATABASE l_src")
    b.my("l_src", "CREATE TABLE tick (id int PRIMARY KEY, at datetime(6) NOT NULL)")
    b.sql("postgres", "CREATE DATABASE l_dst")
    b.sql(
        "l_dst",
        "CREATE TABLE tick (id int PRIMARY KEY, at timestamp(6) NOT NULL, applied timestamptz);"
        "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "NEW.applied := clock_timestamp(); RETURN NEW; END $$;"
        "CREATE TRIGGER stamp BEFORE INSERT ON tick FOR EACH ROW EXECUTE FUNCTION stamp()",
    )
    task_id = b.composite("bench-lag", "l_src", "l_dst")
    b.batch("start", task_id)
    wait(lambda: b.position("l_dst", task_id), 60, "the lag task's snapshot")
    total = int(rate * seconds)
    sent = 0
    assert b.maria is not None
    with b.maria.connect("l_src") as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        started = time.monotonic()
        while sent < total:
            due = int((time.monotonic() - started) * rate)
            while sent < min(due, total):
                sent += 1
                cur.execute("INSERT INTO tick VALUES (%s, NOW(6))", (sent,))
            time.sleep(0.002)
        achieved = total / (time.monotonic() - started)
    wait(lambda: b.sql("l_dst", "SELECT count(*) FROM tick")[0][0] == total, 120, "the lag rows")
    lags = sorted(
        r[0] * 1000
        for r in b.sql(
            "l_dst",
            "SELECT extract(epoch FROM applied - (at AT TIME ZONE 'UTC'))::float8 FROM tick",
        )
    )
    b.stopped(task_id)
    return {
        "rate": achieved,
        "p50": statistics.median(lags),
        "p99": lags[int(len(lags) * 0.99) - 1],
        "max": lags[-1],
    }


def my_snapshot(b: Bench, rows: int) -> dict[str, float]:
    b.my(None, "CREATE DATABASE s_src")
    b.my(
        "s_src",
        "CREATE TABLE big (id bigint PRIMARY KEY, name varchar(40), amount decimal(12,2),"
        " at datetime(6))",
    )
    b.my(
        "s_src",
        "INSERT INTO big SELECT seq, CONCAT('name ', seq), seq / 7.0,"
        f" NOW(6) - INTERVAL seq SECOND FROM seq_1_to_{rows}",
    )
    b.sql("postgres", "CREATE DATABASE s_dst")
    table = "(id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamp(6))"
    b.sql("s_dst", f"CREATE TABLE big {table}; CREATE TABLE plain {table}")
    cdc_s, plain_s = _snapshot_then_copy(b)
    copied = b.sql("s_dst", "SELECT (SELECT count(*) FROM big), (SELECT count(*) FROM plain)")
    assert copied == [(rows, rows)], copied
    return {"rows": rows, "cdc_s": cdc_s, "plain_s": plain_s}


def many_tables(b: Bench, tables: int, rows: int) -> dict[str, float]:
    """One composite task following `tables` tables of `rows` rows: the snapshot of them all,
    then one UPDATE of every row of every table streamed; the server's peak RSS right after."""
    mariadb = b.maria is not None
    run = b.my if mariadb else b.sql
    if mariadb:
        b.my(None, "CREATE DATABASE m_src")
    else:
        b.sql("postgres", "CREATE DATABASE m_src")
    b.sql("postgres", "CREATE DATABASE m_dst")
    for i in range(tables):
        note = "varchar(100)" if mariadb else "text"
        run("m_src", f"CREATE TABLE t{i} (id int PRIMARY KEY, v bigint, note {note})")
        b.sql("m_dst", f"CREATE TABLE t{i} (id int PRIMARY KEY, v bigint, note text)")
        run(
            "m_src",
            f"INSERT INTO t{i} SELECT seq, 0, CONCAT('row ', seq) FROM seq_1_to_{rows}"
            if mariadb
            else f"INSERT INTO t{i} SELECT g, 0, 'row ' || g FROM generate_series(1, {rows}) g",
        )
    task_id = b.composite("bench-many-tables", "m_src", "m_dst")
    started = time.monotonic()
    b.batch("start", task_id)
    wait(lambda: b.position("m_dst", task_id), 600, "the snapshot of every table")
    for i in range(tables):
        run("m_src", f"UPDATE t{i} SET v = v + 1")
    total = "SELECT " + " + ".join(f"(SELECT sum(v) FROM t{i})" for i in range(tables))
    wait(lambda: b.sql("m_dst", total) == [(tables * rows,)], 600, "every table's updates")
    seconds = time.monotonic() - started
    # Before the stop: a MariaDB source's reader process lives as long as its run.
    assert b.served.proc is not None
    tree, others = tree_rss_mb(b.served.proc.pid)
    b.stopped(task_id)
    return {"tables": tables, "rows": rows, "seconds": seconds,
            "rss": peak_rss_mb(b.served.proc.pid), "tree": tree, "others": others}  # fmt: skip


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> list[int]:
    """The processes under `pid` now (a MariaDB source's binlog reader, worker processes),
    children before their own."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return [d for child in found for d in (child, *descendants(child))]


def tree_rss_mb(pid: int) -> tuple[float, int]:
    """The sum of the peak RSS (VmHWM) of `pid` and every process under it, and how many there
    are besides it. An upper bound: pages shared between them count once in each."""
    others = descendants(pid)
    total = peak_rss_mb(pid)
    for other in others:
        try:
            total += peak_rss_mb(other)
        except OSError:  # ended meanwhile
            continue
    return total, len(others)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--snapshot-rows", type=int, default=200_000)
    parser.add_argument("--source", choices=("postgresql", "mariadb"), default="postgresql")
    parser.add_argument("--tables", type=int, default=50, help="tables of the many-table step")
    parser.add_argument("--table-rows", type=int, default=1_000, help="rows of each of them")
    args = parser.parse_args()
    mariadb = args.source == "mariadb"
    pg = LogicalPostgres()
    pg.init()
    maria = (
        BinlogMariaDB("--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0") if mariadb else None
    )
    if maria is not None:
        maria.init()
    work = Path(tempfile.mkdtemp(prefix="openfdi-cdc-bench-"))
    served = Served(
        work,
        demo=False,
        env={"OPENFDI_BOOTSTRAP_PROJECT_ID": PROJECT, "OPENFDI_BOOTSTRAP_INSTANCE_ID": INSTANCE,
             "OPENFDI_BOOTSTRAP_AK": AK, "OPENFDI_BOOTSTRAP_SK": SK},
    )  # fmt: skip
    served.start()
    try:
        b = Bench(pg, served)
        b.maria = maria
        m = many_tables(b, args.tables, args.table_rows)  # first: its RSS is the peak so far
        c = (my_catch_up if mariadb else catch_up)(b, args.changes)
        lg = (my_lag if mariadb else lag)(b, args.rate, args.seconds)
        s = (my_snapshot if mariadb else snapshot)(b, args.snapshot_rows)
        assert served.proc is not None
        rss = peak_rss_mb(served.proc.pid)
    finally:
        served.stop()
        shutil.rmtree(work, ignore_errors=True)
        pg.stop()
        if maria is not None:
            maria.stop()
    table = "\n".join(
        [
            f"CDC bench, source {args.source} ({platform.node()}, {platform.python_version()}; "
            f"`bench/cdc.py --source {args.source} --changes {args.changes} --rate {args.rate} "
            f"--seconds {args.seconds:g} --snapshot-rows {args.snapshot_rows} "
            f"--tables {args.tables} --table-rows {args.table_rows}`)",
            "",
            "| measure | openfdi | beside it | ratio |",
            "|---|---|---|---|",
            f"| catch-up, {c['changes']:,.0f} single-row update transactions | "
            f"{c['changes'] / c['openfdi_s']:,.0f} changes/s ({c['openfdi_s']:.2f} s, start call "
            f"to target equal) | "
            + (
                "python-mysql-replication's raw BinLogStreamReader loop: "
                if mariadb
                else "pg_recvlogical to /dev/null: "
            )
            + f"{c['changes'] / c['native_s']:,.0f} changes/s ({c['native_s']:.2f} s) | "
            f"{c['native_s'] / c['openfdi_s']:.2f}x |",
            f"| lag at {lg['rate']:,.0f} inserts/s for {args.seconds:g} s | p50 {lg['p50']:.0f} ms,"
            f" p99 {lg['p99']:.0f} ms, max {lg['max']:.0f} ms | | |",
            f"| snapshot of {s['rows']:,} rows | {s['cdc_s']:.2f} s (start call to copy "
            f"committed) | plain copy task: {s['plain_s']:.2f} s (run call to SUCCESS) | "
            f"{s['plain_s'] / s['cdc_s']:.2f}x |",
            f"| {m['tables']} tables of {m['rows']:,} rows in one composite task: snapshot, "
            f"then every row updated | {m['seconds']:.2f} s; peak RSS {m['rss']:.0f} MB (VmHWM"
            " after this step, the bench's first); with the processes under it, before the "
            f"task stopped ({m['others']} of them: sum of their VmHWM) {m['tree']:.0f} MB | | |",
            f"| peak RSS of openfdi serve (VmHWM, whole bench) | {rss:.0f} MB | | |",
        ]
    )
    print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    (RESULTS.with_name("cdc-mariadb.md") if mariadb else RESULTS).write_text(table + "\n")


if __name__ == "__main__":
    main()
