"""A SQL source's TSV pass-through into CSV and Parquet files (FILE target, real PostgreSQL):
the file holds exactly the bytes (CSV) or values (Parquet) the row path writes, escapes, quotes,
NULLs and `\\N` as text included; a value the file's type cannot hold refuses the slice with
nothing of it kept; a stop mid-slice keeps nothing of it. And the CSV encoder writes what
pyarrow's CSV writer writes, byte for byte."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from openfdi.connectors._files.options import parse_options
from openfdi.connectors._files.writer import csv_lines
from openfdi.connectors._tsv import FILE_CSV, TSV
from openfdi.connectors.errors import SliceRefusedError
from openfdi.connectors.file.connector import FileConnector
from openfdi.connectors.postgres.connector import PostgresConnector
from openfdi.connectors.spi import Column, HostPaths, LogicalType, ReadPlan, TableSchema, WritePlan
from tests.services import PG_ADMIN_URL

COLUMNS = (
    "id bigint primary key, n int, s smallint, amount numeric(12,2), dbl double precision, "
    "vc varchar(20), note text, stamp timestamp, at timestamptz, ok boolean, day date"
)
VALUES = r"""
 (1, 7, 1, 12.50, 0.1, 'plain', E'tab\there, new\nline, cr\rhere, back\\slash, "q"',
  '2026-03-04 05:06:07.891011', '2026-03-04 05:06:07.891011+02', true, '2026-03-04'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, -2147483648, -32768, -0.01, 'Infinity', '', E'\\N', '1969-12-31 23:59:59',
  '1970-01-01 00:00:00+00', false, '0001-01-01'),
 (4, 0, 0, 9999999999.99, 1e-300, 'üñ "x", y', 'say "hi", ok 😀', '2000-01-01 00:00:00.5',
  '2037-12-31 23:59:59.999999+00', true, '9999-12-31'),
 (5, 1, 1, 0, 'NaN', 'a', '', '2026-01-01', '2026-01-01 12:00:00-05:30', false, '2026-01-01')
"""


def _sql(statement: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement)


def _source(schema: str) -> PostgresConnector:
    content = {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
               "user_name": "postgres", "password": "unused", "schema": schema}  # fmt: skip
    return PostgresConnector(content)


def _target(folder: Path, fmt: str) -> FileConnector:
    folder.mkdir()
    connector = FileConnector({"address": str(folder)}, HostPaths(file_roots=(folder,)))
    connector.configure({"format": fmt})
    return connector


def _copy(schema: str, folder: Path, fmt: str, *, raw: bool, kind: str = TSV) -> Path:
    source, target = _source(schema), _target(folder, fmt)
    try:
        table = source.describe("t")
        plan = WritePlan("t", columns=table.names, source_schema=table)
        target.prepare_target(plan)
        read = ReadPlan("t", columns=table.names, batch_rows=2)
        if raw:
            accepted = target.passthrough_forms("t", table.names, as_target=True)
            offered = source.passthrough_forms("t", table.names, as_target=False)
            form = next(f for f in offered if f in accepted and f[0] == kind)
            if kind == TSV and fmt == "parquet":
                assert form == next(f for f in offered if f in accepted)  # the one chosen
            for piece in source.read_raw(read, form):
                assert target.write_raw(piece, plan, lambda: False) is not None
                target.commit()
        else:
            for batch in source.read(read):
                target.write(batch, plan)
                target.commit()
    finally:
        target.close()
        source.close()
    [written] = folder.iterdir()
    return written


@pytest.mark.parametrize(("fmt", "kind"), [("csv", TSV), ("csv", FILE_CSV), ("parquet", TSV)])
def test_tsv_pass_through_writes_what_the_row_path_writes(
    fmt: str, kind: str, pg_schema: str, tmp_path: Path
) -> None:
    _sql(f'CREATE TABLE "{pg_schema}".t ({COLUMNS})')
    _sql(f'INSERT INTO "{pg_schema}".t VALUES {VALUES}')
    by_rows = _copy(pg_schema, tmp_path / "rows", fmt, raw=False)
    by_raw = _copy(pg_schema, tmp_path / "raw", fmt, raw=True, kind=kind)
    if fmt == "csv":
        assert by_raw.read_bytes() == by_rows.read_bytes()
        assert b'"tab\there, new\nline, cr\rhere, back\\slash, ""q"""' in by_raw.read_bytes()
    else:
        raw, rows = pq.read_table(by_raw), pq.read_table(by_rows)
        assert raw.schema.equals(rows.schema, check_metadata=True)
        assert repr(raw.to_pylist()) == repr(rows.to_pylist())  # repr: NaN equals NaN
    values = pq.read_table(by_raw).to_pylist() if fmt == "parquet" else None
    if values is not None:
        assert values[2]["note"] == "\\N"  # the text, not a NULL
        assert values[1]["note"] is None
        assert values[0]["amount"] == Decimal("12.50")
        assert values[4]["at"] == dt.datetime(2026, 1, 1, 17, 30, tzinfo=dt.UTC)


class _Slice:
    """A TSV slice of given lines (what a source's `read_raw` hands over)."""

    form: tuple[str, ...]
    position: Any = None
    nbytes = 0

    def __init__(self, form: tuple[str, ...], *chunks: bytes) -> None:
        self.form, self._chunks = form, chunks

    def chunks(self) -> Any:
        yield from self._chunks

    def batches(self) -> Any:
        raise AssertionError("not used")


def _prepared(folder: Path, fmt: str) -> tuple[FileConnector, WritePlan, tuple[str, ...]]:
    schema = TableSchema(
        "t",
        (Column("id", LogicalType.BIGINT),
         Column("v", LogicalType.DECIMAL, precision=5, scale=2)),
    )  # fmt: skip
    target = _target(folder, fmt)
    plan = WritePlan("t", columns=schema.names, source_schema=schema)
    target.prepare_target(plan)
    forms = target.passthrough_forms("t", schema.names, as_target=True)
    return target, plan, next(f for f in forms if f[0] == TSV)


def test_a_value_that_does_not_fit_refuses_the_slice_and_keeps_nothing(tmp_path: Path) -> None:
    target, plan, form = _prepared(tmp_path / "out", "csv")
    assert target.write_raw(_Slice(form, b"1\t1.50\n"), plan, lambda: False) == 1
    target.commit()
    with pytest.raises(SliceRefusedError):
        target.write_raw(_Slice(form, b"2\t2.00\n", b"3\t1234.567\n"), plan, lambda: False)
    with pytest.raises(SliceRefusedError):
        target.write_raw(_Slice(form, b"4\t1\t2\n"), plan, lambda: False)  # a field too many
    assert target.write_raw(_Slice(form, b"5\t\\N\n"), plan, lambda: True) is None  # stopped
    target.commit()
    target.close()
    [written] = (tmp_path / "out").iterdir()
    assert written.read_bytes() == b'"id","v"\n1,1.50\n'


def test_json_lines_take_rows_not_slices(tmp_path: Path) -> None:
    target = _target(tmp_path / "out", "jsonl")  # JSON lines are built row by row
    schema = TableSchema("t", (Column("id", LogicalType.BIGINT),))
    target.prepare_target(WritePlan("t", columns=schema.names, source_schema=schema))
    assert target.passthrough_forms("t", schema.names, as_target=True) == ()
    target.close()


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_lines_are_what_pyarrows_csv_writer_writes(delimiter: str) -> None:
    table = pa.table({
        "id": pa.array([1, None, -3], pa.int64()),
        "text": pa.array(['x"y\nz, w', None, ""]),
        "plain": pa.array(["a", "", "b,c\nd"]),  # no quote, no NULL: other branches
        "amount": pa.array([Decimal("1.50"), None, Decimal("-0.01")], pa.decimal128(12, 2)),
        "dbl": pa.array([1e-5, float("inf"), float("nan")]),
        "ok": pa.array([True, None, False]),
        "stamp": pa.array([dt.datetime(2020, 1, 1), None, dt.datetime(1, 1, 1, 0, 0, 0, 5)]),
        "at": pa.array([dt.datetime(2020, 1, 1, tzinfo=dt.UTC), None,
                        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)],
                       pa.timestamp("us", tz="UTC")),
        "day": pa.array([dt.date(2020, 1, 1), None, dt.date(1, 1, 1)]),
    })  # fmt: skip
    expected = io.BytesIO()
    options = pcsv.WriteOptions(include_header=False, delimiter=delimiter)
    with pcsv.CSVWriter(expected, table.schema, write_options=options) as writer:
        writer.write_table(table)
    assert parse_options({"delimiter": delimiter}).delimiter == delimiter
    assert csv_lines(table, delimiter) == expected.getvalue()
