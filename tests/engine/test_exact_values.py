"""Exact values: what a run moves arrives as it was, or the row is refused with a reason.

Each test moves values a type mapping could change silently (a TINYINT(1) as a boolean, a
decimal rounded to a narrower scale, a NaN stored as NULL...) through a real task on the real
servers, driven with the SDK, and asserts the exact value arrives or the run says why not: a
dirty row with a reason, never a different value.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.engine import test_fast_paths as fast
from tests.engine import test_text_passthrough_from_mysql as from_mysql
from tests.engine.conftest import create_task
from tests.factories import unique

pg = fast.pg  # SQL in the test's PostgreSQL schema
my = from_mysql.my  # SQL in the test's MariaDB database
no_passthrough = from_mysql.no_passthrough  # the MySQL source offers no pass-through form

Sql = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
def ids(signed, base_path, pg_schema, mysql_database, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Datasource ids: "my" (the test's MariaDB database), "pg" (its PostgreSQL schema) and
    "sqlite" (a file in tmp_path, at `tmp_path / "data.db"`)."""
    sqlite3.connect(tmp_path / "data.db").close()
    contents = {
        "my": ("MYSQL", {"host": "127.0.0.1", "port": "3306", "database_name": mysql_database,
                         "user_name": "root", "password": ""}),
        "pg": ("POSTGRESQL", {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
                              "user_name": "postgres", "password": "unused",
                              "schema": pg_schema}),
        "sqlite": ("SQLITE", {"database_name": str(tmp_path / "data.db")}),
    }  # fmt: skip
    found = {}
    for key, (kind, content) in contents.items():
        body = {"datasource_name": unique("ds"), "datasource_type": kind, "content": content}
        reply = signed.post(f"{base_path}/datasources", json=body)
        assert reply.status_code == 201, reply.text
        found[key] = str(reply.json()["datasource_id"])
    return found


@pytest.fixture
def lite(tmp_path: Path) -> Sql:
    """Run SQL in the SQLite datasource's file (committed); returns a query's rows."""

    def run(sql: str, params: Any = (), *, many: list[tuple[Any, ...]] | None = None) -> Any:
        with sqlite3.connect(tmp_path / "data.db") as conn:
            if many is not None:
                conn.executemany(sql, many)
                return []
            return conn.execute(sql, params).fetchall()

    return run


def _copy(sdk, creds, ids, source: str, target: str, table: str, into: str) -> Any:  # type: ignore[no-untyped-def]
    """Run a new task copying `table` of datasource `source` into `into` of `target`; returns
    the run's monitor log and the task id."""
    detail = {"sourceSelectedDatasource": {"table": table},
              "targetSelectedDatasource": {"table": into}}  # fmt: skip
    task = create_task(sdk, creds, ids[source], ids[target], detail)
    return fast._run(sdk, creds, task), task


def _dirty(signed, base_path, task: str, run_id: str) -> list[tuple[Any, str]]:  # type: ignore[no-untyped-def]
    """The run's refused rows, as (row, reason)."""
    reply = signed.get(f"{base_path}/tasks/{task}/runs/{run_id}/dirty-data", params={"limit": 50})
    assert reply.status_code == 200, reply.text
    return [(e["row"], e["reason"]) for e in reply.json()["entities"]]


def _status(log: Any) -> tuple[str, int, int]:
    return (log.execute_status, log.data_count, log.dirty_data_count)


# --- item 10: TINYINT(1) is not a boolean ---------------------------------------------------------

TINY = [(1, -128), (2, -1), (3, 0), (4, 1), (5, 2), (6, 127), (7, None)]


@pytest.mark.parametrize("passthrough", [True, False], ids=["text-passthrough", "row-path"])
def test_mariadb_tinyint1_keeps_every_value_in_postgresql(
    sdk, creds, signed, base_path, ids, my, pg, no_passthrough, passthrough: bool
) -> None:  # type: ignore[no-untyped-def]
    # BOOLEAN is TINYINT(1) to MariaDB: it stores -128..127, and -1 and 2 are not `true`.
    my("CREATE TABLE flags (id INT PRIMARY KEY, b BOOLEAN, t TINYINT(1))")
    my("INSERT INTO flags VALUES (%s, %s, %s)", many=[(i, v, v) for i, v in TINY])
    if not passthrough:
        no_passthrough()

    log, _task = _copy(sdk, creds, ids, "my", "pg", "flags", "flags")

    assert _status(log) == ("SUCCESS", len(TINY), 0), log.remarks
    assert fast._types(pg, "flags") == [("id", "integer"), ("b", "smallint"), ("t", "smallint")]
    assert pg("SELECT id, b, t FROM flags ORDER BY id") == [(i, v, v) for i, v in TINY]


def test_a_boolean_stays_boolean_through_mariadb_and_its_check_refuses_other_values(
    sdk, creds, signed, base_path, ids, my, pg, lite
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id int PRIMARY KEY, b boolean NOT NULL, n boolean)")
    pg("INSERT INTO src VALUES (1, true, NULL), (2, false, true)")

    log, _ = _copy(sdk, creds, ids, "pg", "my", "src", "mid")
    assert _status(log) == ("SUCCESS", 2, 0), log.remarks
    # The column openfdi created guarantees 0/1, so it reads back as a boolean.
    log, _ = _copy(sdk, creds, ids, "my", "pg", "mid", "back")
    assert _status(log) == ("SUCCESS", 2, 0), log.remarks
    assert fast._types(pg, "back") == [("id", "integer"), ("b", "boolean"), ("n", "boolean")]
    assert pg("SELECT * FROM back ORDER BY id") == [(1, True, None), (2, False, True)]

    # SQLite keeps whatever it is given in a BOOLEAN column: 2 is neither true nor false.
    lite("CREATE TABLE src (id INTEGER PRIMARY KEY, b BOOLEAN NOT NULL, n BOOLEAN)")
    lite("INSERT INTO src VALUES (?, ?, ?)", many=[(1, 1, None), (2, 2, 0), (3, 0, -1)])
    log, task = _copy(sdk, creds, ids, "sqlite", "my", "src", "mid2")
    assert _status(log) == ("SUCCESS", 1, 2), log.remarks
    reasons = [reason for _row, reason in _dirty(signed, base_path, task, log.id)]
    assert len(reasons) == 2, reasons
    assert all("CONSTRAINT" in r for r in reasons), reasons
    assert my("SELECT id, b, n FROM mid2 ORDER BY id") == [(1, 1, None)]
    log, task = _copy(sdk, creds, ids, "sqlite", "pg", "src", "back2")
    assert _status(log) == ("SUCCESS", 1, 2), log.remarks
    reasons = [reason for _row, reason in _dirty(signed, base_path, task, log.id)]
    assert len(reasons) == 2, reasons
    assert all("boolean" in r for r in reasons), reasons


# --- item 11: MySQL TIME is a duration, not only a time of day ------------------------------------

DURATIONS = [(1, "-838:59:59"), (2, "838:59:59.000000"), (3, "100:00:00"), (4, "-00:00:01.5"),
             (5, "00:00:00"), (6, "23:59:59.999999"), (7, None)]  # fmt: skip


def test_mariadb_time_outside_a_day_arrives_in_postgresql(sdk, creds, ids, my, pg) -> None:  # type: ignore[no-untyped-def]
    my("CREATE TABLE spans (id INT PRIMARY KEY, t TIME(6))")
    my("INSERT INTO spans VALUES (%s, %s)", many=DURATIONS)

    log, _task = _copy(sdk, creds, ids, "my", "pg", "spans", "spans")

    assert _status(log) == ("SUCCESS", len(DURATIONS), 0), log.remarks
    assert fast._types(pg, "spans") == [("id", "integer"), ("t", "interval")]
    got = pg("SELECT id, t::text FROM spans ORDER BY id")
    assert got == [(1, "-838:59:59"), (2, "838:59:59"), (3, "100:00:00"), (4, "-00:00:01.5"),
                   (5, "00:00:00"), (6, "23:59:59.999999"), (7, None)]  # fmt: skip


def test_a_duration_outside_a_day_is_refused_by_a_time_column_naming_it(
    sdk, creds, signed, base_path, ids, my, pg
) -> None:  # type: ignore[no-untyped-def]
    # An existing time column (PostgreSQL's time, or a MariaDB TIME checked to hold times of
    # day, as openfdi creates one) takes the durations that are times of day, and refuses the
    # rest with the column and the value, never wrapping them around midnight.
    my("CREATE TABLE spans (id INT PRIMARY KEY, t TIME(6))")
    my("INSERT INTO spans VALUES (%s, %s)", many=DURATIONS)
    pg("CREATE TABLE tod (id int PRIMARY KEY, t time)")
    my("CREATE TABLE tod (id INT PRIMARY KEY, "
       "t TIME(6) CHECK (t >= '00:00:00' AND t < '24:00:00'))")  # fmt: skip
    want = [
        f"column 't': duration {value} is not a time of day (00:00:00 to 23:59:59.999999); "
        "an interval column would hold it"
        for value in sorted(["-838:59:59", "838:59:59", "100:00:00", "-00:00:01.500000"])
    ]
    stored = (
        ("pg", pg, "SELECT id, t::text FROM tod ORDER BY id", ["00:00:00", "23:59:59.999999"]),
        ("my", my, "SELECT id, CAST(t AS CHAR) FROM tod ORDER BY id",
         ["00:00:00.000000", "23:59:59.999999"]),
    )  # fmt: skip
    for target, rows, query, times in stored:
        log, task = _copy(sdk, creds, ids, "my", target, "spans", "tod")

        assert _status(log) == ("SUCCESS", 3, 4), (target, log.remarks)
        assert rows(query) == [(5, times[0]), (6, times[1]), (7, None)], target
        reasons = sorted(reason for _row, reason in _dirty(signed, base_path, task, log.id))
        assert reasons == want, target


def test_durations_go_through_sqlite_and_back_to_mariadb_unchanged(
    sdk, creds, ids, my, lite
) -> None:  # type: ignore[no-untyped-def]
    my("CREATE TABLE spans (id INT PRIMARY KEY, t TIME(6))")
    my("INSERT INTO spans VALUES (%s, %s)", many=DURATIONS)

    log, _ = _copy(sdk, creds, ids, "my", "sqlite", "spans", "spans")
    assert _status(log) == ("SUCCESS", len(DURATIONS), 0), log.remarks
    assert lite("SELECT t, typeof(t) FROM spans WHERE id = 4") == [("-00:00:01.500000", "text")]
    log, _ = _copy(sdk, creds, ids, "sqlite", "my", "spans", "back")
    assert _status(log) == ("SUCCESS", len(DURATIONS), 0), log.remarks
    assert my("SELECT id, CAST(t AS CHAR) FROM back ORDER BY id") == my(
        "SELECT id, CAST(t AS CHAR) FROM spans ORDER BY id"
    )


# --- the same class elsewhere: a mapping or a target that would change a value silently ----------


def test_a_decimal_is_never_rounded_to_a_created_or_existing_column(
    sdk, creds, signed, base_path, ids, my, pg, lite
) -> None:  # type: ignore[no-untyped-def]
    # MariaDB keeps at most 30 decimals (DECIMAL(65,30)): an unbounded or wider numeric would be
    # rounded there, as any value with more decimals than an existing column keeps, everywhere.
    long = "1.0000000000000000000000000000000001"
    pg("CREATE TABLE src (id int PRIMARY KEY, a numeric, b numeric(40,35), c numeric(10,3))")
    pg(f"INSERT INTO src VALUES (1, 2.5, 0.5, 1.250), (2, {long}, 0.5, 1), (3, 1, {long}, 1), "
       "(4, 1, 1, 1.255)")  # fmt: skip

    log, task = _copy(sdk, creds, ids, "pg", "my", "src", "made")
    assert _status(log) == ("SUCCESS", 2, 2), log.remarks
    assert my("SELECT id FROM made ORDER BY id") == [(1,), (4,)]
    reasons = sorted(reason for _row, reason in _dirty(signed, base_path, task, log.id))
    assert reasons == [
        f"column 'a': {long} has more decimals than decimal(65,30) keeps: it would be rounded",
        # numeric(40,35) gives it 35 decimals
        f"column 'b': {long}0 has more decimals than decimal(40,30) keeps: it would be rounded",
    ]

    # Into existing columns with fewer decimals: 1.250 fits one of 2 decimals, 1.255 does not.
    my("CREATE TABLE narrow (id INT PRIMARY KEY, c DECIMAL(10,2))")
    pg("CREATE TABLE narrow (id int PRIMARY KEY, c numeric(10,2))")
    lite("CREATE TABLE narrow (id INTEGER PRIMARY KEY, c DECIMAL(10,2))")
    pg("CREATE VIEW only_c AS SELECT id, c FROM src")
    for target, rows in (("my", my), ("pg", pg), ("sqlite", lite)):
        log, task = _copy(sdk, creds, ids, "pg", target, "only_c", "narrow")
        assert _status(log) == ("SUCCESS", 3, 1), (target, log.remarks)
        [(_row, reason)] = _dirty(signed, base_path, task, log.id)
        assert reason == (
            "column 'c': 1.255 has more decimals than decimal(10,2) keeps: it would be rounded"
        ), target
        # (SQLite keeps 1.00 as the number 1)
        got = [Decimal(str(c)) for (c,) in rows("SELECT c FROM narrow ORDER BY id")]
        assert got == [Decimal("1.25"), 1, 1], target


def test_nan_is_refused_by_sqlite_which_would_store_null(
    sdk, creds, signed, base_path, ids, pg, lite
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id int PRIMARY KEY, x float8, r real)")
    pg("INSERT INTO src VALUES (1, 'NaN', 1), (2, 1, 'NaN'), (3, 'Infinity', '-Infinity')")

    log, task = _copy(sdk, creds, ids, "pg", "sqlite", "src", "dst")

    assert _status(log) == ("SUCCESS", 1, 2), log.remarks
    reasons = sorted(reason for _row, reason in _dirty(signed, base_path, task, log.id))
    assert reasons == [
        "column 'r': nan cannot be stored by SQLite (it stores NULL instead)",
        "column 'x': nan cannot be stored by SQLite (it stores NULL instead)",
    ]
    assert lite("SELECT id, x, r FROM dst") == [(3, float("inf"), float("-inf"))]


def test_a_time_of_day_is_never_cut_off_a_date(
    sdk, creds, signed, base_path, ids, my, pg, lite
) -> None:  # type: ignore[no-untyped-def]
    # SQLite keeps any text in a DATE column; PostgreSQL's and MariaDB's date drop a time given.
    lite("CREATE TABLE src (id INTEGER PRIMARY KEY, d DATE)")
    days = [(1, "2024-01-02"), (2, "2024-01-02 10:00:00"), (3, "2024-01-02 00:00:00")]
    lite("INSERT INTO src VALUES (?, ?)", many=days)
    want = "column 'd': 2024-01-02 10:00:00 is not a date (it has a time of day)"
    for target, rows in (("pg", pg), ("my", my)):
        log, task = _copy(sdk, creds, ids, "sqlite", target, "src", "dates")
        assert _status(log) == ("SUCCESS", 2, 1), (target, log.remarks)
        assert [reason for _row, reason in _dirty(signed, base_path, task, log.id)] == [want]
        assert [str(d) for (d,) in rows("SELECT d FROM dates ORDER BY id")] == ["2024-01-02"] * 2

    # A timestamp into an existing date column: the same.
    pg("CREATE TABLE stamps (id int PRIMARY KEY, d timestamp)")
    pg("INSERT INTO stamps VALUES (1, '2024-01-02'), (2, '2024-01-02 10:00')")
    pg("CREATE TABLE days (id int PRIMARY KEY, d date)")
    my("CREATE TABLE days (id INT PRIMARY KEY, d DATE)")
    for target in ("pg", "my"):
        log, task = _copy(sdk, creds, ids, "pg", target, "stamps", "days")
        assert _status(log) == ("SUCCESS", 1, 1), (target, log.remarks)
        [(_row, reason)] = _dirty(signed, base_path, task, log.id)
        assert reason == want, target


def test_infinite_and_bc_dates_reach_postgresql_and_are_refused_elsewhere_with_a_reason(
    sdk, creds, signed, base_path, ids, my, pg
) -> None:  # type: ignore[no-untyped-def]
    # Python's dates end at year 1 and 9999, its times at 23:59:59.999999: PostgreSQL's
    # 'infinity', BC dates and '24:00:00' are not errors of the run, but values some targets
    # hold and others refuse.
    pg("CREATE TABLE src (id int PRIMARY KEY, d date, t timestamp, z timestamptz, tm time)")
    pg("INSERT INTO src VALUES "
       "(1, '2024-01-02', '2024-01-02 03:04', '2024-01-02 03:04+00', '12:00'), "
       "(2, 'infinity', '-infinity', 'infinity', '24:00:00'), "
       "(3, '0044-03-15 BC', '0044-03-15 BC', NULL, NULL)")  # fmt: skip
    # Many fetched chunks around one more: only the chunk holding it is loaded again.
    pg("INSERT INTO src SELECT g, date '2024-01-01' + g, NULL, NULL, NULL "
       "FROM generate_series(4, 9000) g")  # fmt: skip
    pg("UPDATE src SET d = 'infinity' WHERE id = 6000")
    pg("CREATE TABLE copy (id int PRIMARY KEY, d date, t timestamp, z timestamptz, tm time, "
       "note text)")  # fmt: skip

    log, _ = _copy(sdk, creds, ids, "pg", "pg", "src", "copy")
    assert _status(log) == ("SUCCESS", 9000, 0), log.remarks
    same = "SELECT count(*) FROM (SELECT * FROM src EXCEPT SELECT id, d, t, z, tm FROM copy) AS x"
    assert pg(same) == [(0,)]
    assert pg("SELECT count(*) FROM copy") == [(9000,)]

    # MariaDB holds none of them: those three rows are refused, with MariaDB's reason.
    log, task = _copy(sdk, creds, ids, "pg", "my", "src", "copy")
    assert _status(log) == ("SUCCESS", 8997, 3), log.remarks
    dirty = _dirty(signed, base_path, task, log.id)
    refused = sorted((json.loads(row)[0], reason) for row, reason in dirty)
    assert [id_ for id_, _reason in refused] == [2, 3, 6000]
    assert all("'d'" in reason for _id, reason in refused), refused


def test_a_mariadb_time_column_can_be_the_incremental_column(sdk, creds, ids, my, pg) -> None:  # type: ignore[no-untyped-def]
    # The watermark of a duration is saved in the text MariaDB reads back (not "-1 day, ...").
    my("CREATE TABLE spans (id INT PRIMARY KEY, t TIME(6))")
    my("INSERT INTO spans VALUES (%s, %s)", many=[(1, "-838:59:59"), (2, "-00:00:01.5")])
    detail = {"sourceSelectedDatasource": {"table": "spans", "incremental": {"column": "t"}},
              "targetSelectedDatasource": {"table": "spans"}}  # fmt: skip
    task = create_task(sdk, creds, ids["my"], ids["pg"], detail)

    log = fast._run(sdk, creds, task)
    assert _status(log) == ("SUCCESS", 2, 0), log.remarks
    my("INSERT INTO spans VALUES (%s, %s)", many=[(3, "-00:00:01"), (4, "100:00:00")])
    log = fast._run(sdk, creds, task, nth=2)

    assert _status(log) == ("SUCCESS", 2, 0), log.remarks
    assert pg("SELECT id, t::text FROM spans ORDER BY id") == [
        (1, "-838:59:59"), (2, "-00:00:01.5"), (3, "-00:00:01"), (4, "100:00:00")
    ]  # fmt: skip
