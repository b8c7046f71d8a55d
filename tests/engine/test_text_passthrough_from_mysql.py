"""Fast paths: MySQL/MariaDB to PostgreSQL by the text pass-through (lines MariaDB formats).

Driven through a live server with the engine on; the MySQL source's pass-through methods are
spied on (the server runs in this process) to tell which path a run took. What the row path
writes is the reference: the same copy runs with the pass-through switched off, and both
PostgreSQL tables must hold the same values.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pymysql
import pytest
from huaweicloudsdkroma.v2 import (
    RunTaskRequest,
    StopTaskRequest,
)

from openfdi.connectors.mysql import tsv_read
from openfdi.connectors.mysql.connector import MysqlConnector
from openfdi.connectors.spi import ReadPlan
from tests.engine import test_fast_paths as fast
from tests.engine.conftest import create_task, wait_for
from tests.factories import unique

pg = fast.pg  # the same fixture: SQL in the test's PostgreSQL schema

Sql = Callable[..., list[tuple[Any, ...]]]

ALL_TYPES = """
CREATE TABLE src (
  id BIGINT PRIMARY KEY, i INT, s SMALLINT, n DECIMAL(12,2), u BIGINT UNSIGNED, d DOUBLE,
  v VARCHAR(40), c CHAR(4), e ENUM('x', 'yy'), l VARCHAR(10) CHARACTER SET latin1,
  t MEDIUMTEXT, b BOOLEAN, dt DATE, ts DATETIME(6), tz TIMESTAMP(6) NULL, y YEAR,
  g VARCHAR(12) COLLATE utf8mb4_general_ci, m VARCHAR(12) CHARACTER SET utf8mb3
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
TEXTS = [
    "tab\there", "new\nline", "cr\rhere", "crlf\r\n", "back\\slash", "ends with \\",
    "\\N", "\\\\N", "\\t is not a tab", "NULL", "", " ", "ünïcødé 😀 漢字",
    "\f\b\v\x1b", "x" * 100_000,
]  # fmt: skip


def _doubles(count: int) -> list[float]:
    """Finite doubles from random bit patterns: every magnitude, subnormals included."""
    rng = random.Random(7)
    found: list[float] = []
    while len(found) < count:
        (value,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if value == value and abs(value) != float("inf"):
            found.append(value)
    return found


def _all_values() -> list[tuple[Any, ...]]:
    special = [0.1 + 0.2, 1e-300, -1.7976931348623157e308, 5e-324, -0.0, 1e15, 123456789.125]
    doubles = special + _doubles(300)
    rows: list[tuple[Any, ...]] = [
        (-(2**63), -(2**31), -(2**15), Decimal("-9999999999.99"), 0, doubles[0], "a", "ab  ",
         "x", "é", TEXTS[0], 0, date(1000, 1, 1), datetime(1000, 1, 1),
         datetime(1970, 1, 1, 0, 0, 1), 1901, "Ab\t", "ü\\"),
        (2**63 - 1, 2**31 - 1, 2**15 - 1, Decimal("9999999999.99"), 2**64 - 1, doubles[1], "b",
         "abcd", "yy", "ÿ", TEXTS[1], 1, date(9999, 12, 31),
         datetime(9999, 12, 31, 23, 59, 59, 999999), datetime(2038, 1, 19, 3, 14, 7, 999999), 2155,
         "", "\n"),
        (0, *[None] * 17),
    ]  # fmt: skip
    for index, value in enumerate(doubles[2:], start=1):
        text = TEXTS[index % len(TEXTS)]
        stamp = datetime(2024, 1, 2, 3, 4, 5, index)
        rows.append(
            (index, index * 7, index % 300, Decimal(index) / 4, index * 10**9, value,
             text[:40], "c", "x", "ü", text, index % 4 - 1, date(2024, 2, 29), stamp,
             stamp.replace(microsecond=index * 3), 2000 + index % 100, text[:12], text[-12:])
        )  # fmt: skip
    return rows


@pytest.fixture
def my(mysql_database: str) -> Iterator[Sql]:
    """Run SQL (with parameters, or `many` rows of them) in the test's MariaDB database; returns
    a query's rows. Its session is UTC and lax, so it can store what strict sessions refuse."""
    conn = pymysql.connect(
        host="127.0.0.1", user="root", password="", database=mysql_database,
        charset="utf8mb4", autocommit=True, init_command="SET time_zone = '+00:00', sql_mode = ''",
    )  # fmt: skip

    def run(sql: str, params: Any = None, *, many: list[tuple[Any, ...]] | None = None) -> Any:
        with conn.cursor() as cursor:
            if many is not None:
                cursor.executemany(sql, many)
            else:
                cursor.execute(sql, params)
            return list(cursor.fetchall())

    yield run
    conn.close()


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the MySQL source's pass-through did: read_raw calls, slices streamed (with each
    one's position and bytes, in order) and slices re-read row-wise after a refusal."""
    seen: dict[str, Any] = {"read_raw": 0, "batches": 0, "slices": []}
    read_raw, chunks, batches = (
        MysqlConnector.read_raw,
        tsv_read.TsvSlice.chunks,
        tsv_read.TsvSlice.batches,
    )

    def spy_read_raw(self: MysqlConnector, *args: Any) -> Any:
        seen["read_raw"] += 1
        return read_raw(self, *args)

    def spy_chunks(self: tsv_read.TsvSlice) -> Generator[bytes, None, None]:
        data = bytearray()
        seen["slices"].append((self.position, data))
        inner = chunks(self)
        try:
            for chunk in inner:
                data += chunk
                yield chunk
        finally:
            inner.close()

    def spy_batches(self: tsv_read.TsvSlice) -> Any:
        seen["batches"] += 1
        return batches(self)

    monkeypatch.setattr(MysqlConnector, "read_raw", spy_read_raw)
    monkeypatch.setattr(tsv_read.TsvSlice, "chunks", spy_chunks)
    monkeypatch.setattr(tsv_read.TsvSlice, "batches", spy_batches)
    return seen


@pytest.fixture
def no_passthrough(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call to make the MySQL source offer no pass-through form: the row path runs."""

    def switch_off() -> None:
        monkeypatch.setattr(MysqlConnector, "passthrough_forms", lambda self, *a, **k: ())

    return switch_off


@pytest.fixture
def datasources(signed, base_path, pg_schema, mysql_database) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(MariaDB source, PostgreSQL target) datasource ids."""
    contents = {
        "MYSQL": {"host": "127.0.0.1", "port": "3306", "database_name": mysql_database,
                  "user_name": "root", "password": ""},
        "POSTGRESQL": {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
                       "user_name": "postgres", "password": "unused", "schema": pg_schema},
    }  # fmt: skip
    ids = []
    for kind, content in contents.items():
        body = {"datasource_name": unique("ds"), "datasource_type": kind, "content": content}
        reply = signed.post(f"{base_path}/datasources", json=body)
        assert reply.status_code == 201, reply.text
        ids.append(str(reply.json()["datasource_id"]))
    return ids[0], ids[1]


def _task(sdk, creds, datasources: tuple[str, str], detail: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    return create_task(sdk, creds, *datasources, detail)


def _copy(table: str, target: str, **target_options: Any) -> dict[str, Any]:
    return {"sourceSelectedDatasource": {"table": table},
            "targetSelectedDatasource": {"table": target, **target_options}}  # fmt: skip


def _lines(data: bytes) -> list[list[bytes]]:
    return [line.split(b"\t") for line in data.split(b"\n")[:-1]]


def test_every_text_form_value_arrives_as_the_row_path_writes_it(
    sdk, creds, signed, base_path, datasources, my, pg, spied, no_passthrough
) -> None:  # type: ignore[no-untyped-def]
    my(ALL_TYPES)
    rows = _all_values()
    my(f"INSERT INTO src VALUES ({', '.join(['%s'] * 18)})", many=rows)

    log = fast._run(sdk, creds, _task(sdk, creds, datasources, _copy("src", "dst_raw")))
    assert (log.execute_status, log.data_count, log.dirty_data_count) == (
        "SUCCESS", len(rows), 0), log.remarks  # fmt: skip
    assert spied["read_raw"] == 1
    assert spied["batches"] == 0
    assert len(spied["slices"]) >= 1
    assert sum(len(_lines(data)) for _, data in spied["slices"]) == len(rows)

    no_passthrough()
    log = fast._run(sdk, creds, _task(sdk, creds, datasources, _copy("src", "dst_rows")))
    assert (log.execute_status, log.data_count, log.dirty_data_count) == (
        "SUCCESS", len(rows), 0), log.remarks  # fmt: skip
    assert spied["read_raw"] == 1  # the reference run took the row path

    assert fast._types(pg, "dst_raw") == fast._types(pg, "dst_rows")
    assert fast._same_rows(pg, "dst_raw", "dst_rows")
    assert fast._same_rows(pg, "dst_rows", "dst_raw")
    # And both are the source's values, exactly.
    copied = {r[0]: r for r in pg("SELECT id, d, t, b, tz, n, u FROM dst_raw")}
    for row in rows:
        d, t, b, tz = copied[row[0]][1:5]
        assert (d, t) == (row[5], row[10])
        assert b == row[11]  # TINYINT(1) holds -1 and 2 too: a smallint, not a boolean
        assert tz == (None if row[14] is None else row[14].replace(tzinfo=UTC))
    assert copied[2**63 - 1][5:] == (Decimal("9999999999.99"), Decimal(2**64 - 1))


def test_a_refused_slice_falls_back_and_reports_the_bad_rows_like_the_row_path(
    sdk, creds, signed, base_path, datasources, my, pg, spied, no_passthrough
) -> None:  # type: ignore[no-untyped-def]
    my("CREATE TABLE src (id BIGINT PRIMARY KEY, day DATE, at DATETIME, note TEXT)")
    rows = [
        (i, date(2024, 1, 1 + i % 28), datetime(2024, 5, 6, 7, 8, i % 60), f"n{i}")
        for i in range(1, 101)
    ]
    my("INSERT INTO src VALUES (%s, %s, %s, %s)", many=rows)
    # Values MariaDB stores and PostgreSQL refuses: a zero date, a zero in a date, a NUL byte.
    my("UPDATE src SET day = '0000-00-00' WHERE id = 30")
    my("UPDATE src SET at = '2024-00-10 00:00:00' WHERE id = 50")
    my("UPDATE src SET note = 'bad\\0nul' WHERE id = 70")
    bad = {30, 50, 70}

    def dirty(task: str, run_id: str) -> list[tuple[str, str]]:
        reply = signed.get(
            f"{base_path}/tasks/{task}/runs/{run_id}/dirty-data", params={"limit": 50}
        )
        return sorted((e["row"], e["reason"]) for e in reply.json()["entities"])

    task = _task(sdk, creds, datasources, _copy("src", "dst_raw"))
    log = fast._run(sdk, creds, task)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 97, 3)
    assert spied["read_raw"] == 1
    assert spied["batches"] >= 1  # the refused slice was re-read row-wise
    assert pg("SELECT id FROM dst_raw ORDER BY id") == [(i,) for i in range(1, 101) if i not in bad]
    found = dirty(task, log.id)

    no_passthrough()
    task = _task(sdk, creds, datasources, _copy("src", "dst_rows"))
    log = fast._run(sdk, creds, task)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 97, 3)
    assert fast._same_rows(pg, "dst_raw", "dst_rows")
    assert dirty(task, log.id) == found


def test_incremental_reads_null_rows_first_then_only_new_rows(
    sdk, creds, signed, base_path, datasources, my, pg, spied
) -> None:  # type: ignore[no-untyped-def]
    my("CREATE TABLE ev (id BIGINT, at DATETIME(6) NULL, note VARCHAR(20))")
    # Many rows share each time: slices must never split them.
    my(
        "INSERT INTO ev SELECT seq, TIMESTAMP'2026-01-01 00:00:00' + INTERVAL (seq DIV 7) * 1000 "
        "MICROSECOND, CONCAT('n', seq) FROM seq_1_to_40000"
    )
    my("INSERT INTO ev SELECT seq, NULL, CONCAT('null ', seq) FROM seq_40001_to_40050")
    detail = _copy("ev", "ev_copy")
    detail["sourceSelectedDatasource"]["incremental"] = {"column": "at"}
    task = _task(sdk, creds, datasources, detail)

    def same() -> bool:
        query = "SELECT id, at, note FROM ev{} ORDER BY id"
        return pg(query.format("_copy")) == [tuple(r) for r in my(query.format(""))]

    log = fast._run(sdk, creds, task)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 40050), log.remarks
    slices = spied["slices"]
    assert len(slices) >= 3
    first, rest = slices[0], slices[1:]
    assert first[0] is None  # no watermark yet
    assert [line[1] for line in _lines(first[1])] == [b"\\N"] * 50
    assert all(line[1] != b"\\N" for _, data in rest for line in _lines(data))
    positions = [position for position, _ in rest]
    assert positions == sorted(positions)
    assert positions[-1] == datetime(2026, 1, 1) + timedelta(milliseconds=40000 // 7)
    assert spied["batches"] == 0
    assert same()

    my(
        "INSERT INTO ev SELECT seq, TIMESTAMP'2026-02-01 00:00:00' + INTERVAL seq MICROSECOND, "
        "CONCAT('m', seq) FROM seq_40051_to_41050"
    )
    log = fast._run(sdk, creds, task, nth=2)
    # Insert mode: only the new rows moved, none twice.
    assert (log.execute_status, log.data_count) == ("SUCCESS", 1000), log.remarks
    assert same()

    log = fast._run(sdk, creds, task, nth=3)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 0)
    assert same()


def test_terminate_mid_copy_cancels_and_the_next_upsert_is_exact(
    sdk, creds, signed, base_path, datasources, my, pg, spied
) -> None:  # type: ignore[no-untyped-def]
    total = 500_000
    my("CREATE TABLE src (id BIGINT PRIMARY KEY, v TEXT, amount DECIMAL(12,2), at DATETIME(6))")
    my(
        f"INSERT INTO src SELECT seq, CONCAT(REPEAT('x', 20), seq), seq / 100, "
        f"TIMESTAMP'2026-01-01 00:00:00' + INTERVAL seq MICROSECOND FROM seq_1_to_{total}"
    )
    detail = _copy("src", "dst", writeMode="upsert", keyColumns=["id"])
    task = _task(sdk, creds, datasources, detail)

    def committed() -> bool:
        logs = fast._logs(sdk, creds, task)
        return bool(logs) and logs[0].data_count > 0

    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    wait_for(committed)
    sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=task))
    log = wait_for(lambda: fast._finished(sdk, creds, task, 1), timeout=5)
    assert log.execute_status == "CANCELLED"
    assert 0 < log.data_count < total
    assert pg("SELECT count(*) FROM dst") == [(log.data_count,)]  # counted means committed
    assert spied["read_raw"] == 1

    log = fast._run(sdk, creds, task, nth=2, timeout=120)
    assert (log.execute_status, log.data_count) == ("SUCCESS", total), log.remarks
    assert spied["read_raw"] == 2
    assert spied["batches"] == 0
    summary = "SELECT count(*), sum(id), sum(amount), sum(length(v)), max(at) FROM {}"
    assert pg(summary.format("dst")) == [tuple(r) for r in my(summary.format("src"))]


def test_an_abandoned_slice_keeps_the_snapshot_for_its_fallback_and_the_next_slices(
    mysql_database, my
) -> None:  # type: ignore[no-untyped-def]
    """A target that refuses a slice mid-stream abandons it, then re-reads it row-wise: both
    that re-read and the later slices still see the rows as they were when the read began."""
    my("CREATE TABLE big (id BIGINT PRIMARY KEY, v TEXT)")
    my("INSERT INTO big SELECT seq, REPEAT('x', 1000) FROM seq_1_to_20000")
    content = {"host": "127.0.0.1", "port": "3306", "database_name": mysql_database,
               "user_name": "root", "password": ""}  # fmt: skip
    with MysqlConnector(content) as source:
        (form,) = source.passthrough_forms("big", ["id", "v"], as_target=False)
        slices = source.read_raw(ReadPlan("big", batch_rows=5000), form)
        first = next(slices)
        chunks = first.chunks()
        assert len(next(chunks)) < 5000 * 1000  # the slice has more chunks: abandoned early
        chunks.close()
        my("INSERT INTO big VALUES (1000000, 'new')")
        my("DELETE FROM big WHERE id IN (3, 15000)")

        again = [row for batch in first.batches() for row in batch.rows]
        assert [row[0] for row in again] == list(range(1, 5001))
        later = [int(line[0]) for s in slices for line in _lines(b"".join(s.chunks()))]
        assert later == list(range(5001, 20001))
        slices.close()
    assert len(my("SELECT id FROM big")) == 19999
