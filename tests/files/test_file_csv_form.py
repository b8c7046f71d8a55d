"""PostgreSQL writing a CSV file's lines itself (the `file-csv` form, postgres/csv_out.py)
against a real server: every double, timestamp, date, decimal and text value is spelled exactly
as the file target's row path (pyarrow) spells it, including the doubles where PostgreSQL's
shortest digits are longer than pyarrow's; a value the row path would not write as such refuses
the slice (nothing of it kept, the rows then go the row path); a stop keeps nothing; a target
that rotates files or uses another delimiter does not take the form."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from openfdi.connectors._tsv import FILE_CSV
from openfdi.connectors.errors import SliceRefusedError
from openfdi.connectors.file.connector import FileConnector
from openfdi.connectors.postgres.connector import PostgresConnector
from openfdi.connectors.postgres.csv_out import _double, _timestamp, _timestamptz
from openfdi.connectors.spi import HostPaths, ReadPlan, WritePlan
from tests.services import PG_ADMIN_URL


def _sql(statement: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET extra_float_digits = 1")
        cursor = conn.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []


def _doubles(seed: int) -> list[float]:
    rng = random.Random(seed)
    values = [(rng.random() - 0.5) * 10.0 ** rng.randint(-320, 307) for _ in range(4000)]
    # From 1e16 up, where PostgreSQL's digits may be longer than the shortest.
    values += [(rng.random() - 0.5) * 10.0 ** rng.randint(15, 24) for _ in range(8000)]
    values += [float(rng.randrange(2**52, 2**60)) for _ in range(2000)]
    values += [v * 10.0**k for v in (1.0, 1.5, 2 / 3, 9.999999999999999) for k in range(-26, 26)]
    values += [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e-4, 1e-5,
               1e-6, 1e-7, 1e10, 1e15, 1e16, 0.00009999999999999999, 9999999999.999998,
               float("inf"), float("-inf"), float("nan")]  # fmt: skip
    return values + [-v for v in values]


@pytest.mark.parametrize("seed", [1, 2])
def test_doubles_are_spelled_as_pyarrow_spells_them(seed: int) -> None:
    values = _doubles(seed)
    got = [row[0] for row in _sql(f"SELECT {_double('x')} FROM unnest(%s::float8[]) x", values)]
    expected = pa.array(values, pa.float64()).cast(pa.string()).to_pylist()
    wrong = [(v, g, e) for v, g, e in zip(values, got, expected, strict=True) if g != e]
    assert wrong == []


def test_timestamps_are_spelled_as_pyarrow_spells_them() -> None:
    stamps = [dt.datetime(2026, 3, 4, 5, 6, 7, us) for us in (0, 1, 10, 500000, 999999, 120)]
    stamps += [
        dt.datetime(1, 1, 1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        dt.datetime(1969, 12, 31, 23, 59, 59, 5),
        dt.datetime(999, 1, 2, 3, 4, 5, 60),
    ]
    rows = _sql(
        f"SELECT {_timestamp('x')}, {_timestamptz('z')} FROM "
        "(SELECT x, (x::text || '+00')::timestamptz AS z FROM unnest(%s::timestamp[]) x) s",
        stamps,
    )
    plain = pa.array(stamps, pa.timestamp("us")).cast(pa.string()).to_pylist()
    assert [r[0] for r in rows] == plain
    assert [r[1] for r in rows] == [p + "Z" for p in plain]  # the row path's UTC spelling


def test_decimals_are_spelled_as_pyarrow_spells_them() -> None:
    rng = random.Random(4)
    for precision, scale in ((12, 2), (38, 6), (10, 0), (6, 6)):
        values = [Decimal(0), Decimal(10) ** -scale, -(Decimal(10) ** -scale)]
        values += [
            Decimal(rng.randrange(-(10**precision) + 1, 10**precision)).scaleb(-scale)
            for _ in range(2000)
        ]
        kind = f"numeric({precision},{scale})"
        got = [r[0] for r in _sql(f"SELECT x::text FROM unnest(%s::{kind}[]) x", values)]
        expected = pa.array(values, pa.decimal128(precision, scale)).cast(pa.string())
        assert got == expected.to_pylist()


COLUMNS = (
    "id bigint primary key, n int, amount numeric(12,2), dbl double precision, "
    "vc varchar(20), note text, stamp timestamp, at timestamptz, ok boolean, day date"
)


def _source(schema: str) -> PostgresConnector:
    content = {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
               "user_name": "postgres", "password": "unused", "schema": schema}  # fmt: skip
    return PostgresConnector(content)


def _target(folder: Path, options: dict[str, object]) -> FileConnector:
    folder.mkdir()
    connector = FileConnector({"address": str(folder)}, HostPaths(file_roots=(folder,)))
    connector.configure({"format": "csv", **options})
    return connector


def _copy(
    schema: str, folder: Path, *, raw: bool, stop_at: int | None = None
) -> tuple[bytes, list[str]]:
    """The file a copy of table t writes (by pass-through or by rows), and how each slice
    went: `raw`, `refused` (then written by rows, as the engine does) or `stopped`."""
    source, target = _source(schema), _target(folder, {})
    how: list[str] = []
    try:
        table = source.describe("t")
        plan = WritePlan("t", columns=table.names, source_schema=table)
        target.prepare_target(plan)
        read = ReadPlan("t", columns=table.names, batch_rows=3)
        if raw:
            accepted = target.passthrough_forms("t", table.names, as_target=True)
            offered = source.passthrough_forms("t", table.names, as_target=False)
            form = next(f for f in offered if f in accepted)
            assert form[0] == FILE_CSV
            for i, piece in enumerate(source.read_raw(read, form)):
                try:
                    written = target.write_raw(piece, plan, lambda i=i: i == stop_at)
                except SliceRefusedError:
                    how.append("refused")
                    for batch in piece.batches():
                        target.write(batch, plan)
                else:
                    how.append("raw" if written is not None else "stopped")
                    if written is None:
                        break
                target.commit()
        else:
            for batch in source.read(read):
                target.write(batch, plan)
                target.commit()
    finally:
        target.close()
        source.close()
    files = list(folder.iterdir())  # none when no row was written
    assert len(files) <= 1
    return (files[0].read_bytes() if files else b""), how


def _load(schema: str, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    _sql(f'CREATE TABLE "{schema}".t ({COLUMNS})')
    values = []
    for i in range(rows):
        exponent = rng.randint(-12, 19)
        values.append((
            i, rng.randint(-(2**31), 2**31 - 1), f"{rng.random():.4f}",
            (rng.random() - 0.5) * 10.0**exponent, rng.choice(["a,b", 'q"x', "", "l\nm", "ü"]),
            rng.choice([None, "t\tab", "\\N", "x" * rng.randint(0, 40)]),
            dt.datetime(2000, 1, 1) + dt.timedelta(microseconds=rng.randrange(10**15)),
            dt.datetime(1990, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randrange(10**9)),
            rng.choice([True, False, None]), dt.date(1, 1, 1) + dt.timedelta(rng.randrange(10**6)),
        ))  # fmt: skip
    with (
        psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn,
        conn.cursor().copy(f'COPY "{schema}".t FROM STDIN') as copy,
    ):
        for row in values:
            copy.write_row(row)


def test_many_rows_give_the_row_paths_bytes(pg_schema: str, tmp_path: Path) -> None:
    _load(pg_schema, 3000, seed=7)
    by_rows, _ = _copy(pg_schema, tmp_path / "rows", raw=False)
    by_raw, how = _copy(pg_schema, tmp_path / "raw", raw=True)
    assert how
    assert set(how) == {"raw"}
    assert by_raw == by_rows
    assert by_raw.count(b"\n") > 3000


@pytest.mark.parametrize(
    "bad",
    [
        "amount = 'NaN'",  # the row path cannot write a NaN decimal: a dirty row
        "stamp = 'infinity'",
        "at = '-infinity'",
        "day = '0044-03-15 BC'",
        "stamp = '10000-01-01 00:00:00'",
        "day = 'infinity'",
    ],
)
def test_a_value_without_the_row_paths_spelling_refuses_the_slice(
    bad: str, pg_schema: str, tmp_path: Path
) -> None:
    _load(pg_schema, 20, seed=3)
    _sql(f'UPDATE "{pg_schema}".t SET {bad} WHERE id = 10')
    by_rows, _ = _copy(pg_schema, tmp_path / "rows", raw=False)
    by_raw, how = _copy(pg_schema, tmp_path / "raw", raw=True)
    assert "refused" in how  # the slice holding row 10, written row by row instead
    assert by_raw == by_rows  # the same rows and bytes as the row path, nothing twice


def test_a_stop_mid_slice_keeps_nothing_of_it(pg_schema: str, tmp_path: Path) -> None:
    _load(pg_schema, 20, seed=5)
    by_raw, how = _copy(pg_schema, tmp_path / "raw", raw=True, stop_at=0)
    assert how == ["stopped"]
    assert by_raw == b""  # no row of the stopped slice, so no file


def test_a_column_pyarrow_spells_otherwise_keeps_the_tsv_form(pg_schema: str) -> None:
    _sql(f'CREATE TABLE "{pg_schema}".t (id int, small numeric(20,9), r real, n numeric, j json)')
    source = _source(pg_schema)
    try:
        for column in ("small", "r", "n", "j"):
            offered = source.passthrough_forms("t", ["id", column], as_target=False)
            assert all(form[0] != FILE_CSV for form in offered), column
        assert any(f[0] == FILE_CSV for f in source.passthrough_forms("t", ["id"], as_target=False))
    finally:
        source.close()


@pytest.mark.parametrize(
    "options", [{"max_rows": 10}, {"max_bytes": 100000}, {"delimiter": ";"}, {"header": False}]
)
def test_only_a_plain_csv_file_without_rotation_takes_the_form(
    options: dict[str, object], tmp_path: Path, pg_schema: str
) -> None:
    _load(pg_schema, 1, seed=1)
    source, target = _source(pg_schema), _target(tmp_path / "out", options)
    try:
        table = source.describe("t")
        target.prepare_target(WritePlan("t", columns=table.names, source_schema=table))
        accepted = target.passthrough_forms("t", table.names, as_target=True)
        takes = any(f[0] == FILE_CSV for f in accepted)
        assert takes == (options == {"header": False})  # the header is the target's own
    finally:
        target.close()
        source.close()
