"""PostgreSQL writes: converted a column at a time, streamed with psycopg's row encoder.

The reference is the row-by-row path: every value through `_write_converter`, every row through
`Copy.write_row`. The fast path must write the same values and reject the same rows, in the same
order, with the same reasons, or step aside: a column that needs no conversion is not touched,
a column with one value to convert is converted, and a batch where some value fails to convert
goes row by row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from openfdi.connectors._sqlbase import Convert
from openfdi.connectors.postgres import copyin
from openfdi.connectors.postgres.binary import binary_columns
from openfdi.connectors.postgres.connector import PostgresConnector
from openfdi.connectors.spi import Batch, Column, LogicalType, Row, WriteMode, WritePlan
from tests.services import PG_ADMIN_URL, require

CONTENT = {"host": "127.0.0.1", "port": 5432, "database_name": "postgres", "user_name": "postgres"}
PLUS_2 = timezone(timedelta(hours=2))

ID = Column("id", LogicalType.BIGINT)
TS = Column("ts", LogicalType.TIMESTAMP)
DOC = Column("doc", LogicalType.JSON)


class RowByRow(PostgresConnector):
    """The reference: each batch converted row by row (`write_row` is forced by the tests)."""

    def _convert_columns(self, columns: Sequence[Column], rows: Sequence[Row]) -> None:
        return None


def _typed(rows: Sequence[Sequence[Any]]) -> list[list[tuple[type, str]]]:
    """Rows as (type, repr) of each value: a tzinfo, a Decimal's exponent, a float's bits."""
    return [[(type(v), repr(v)) for v in row] for row in rows]


# --- conversion, no server -----------------------------------------------------------------------


@pytest.fixture
def converter_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every value `_write_converter`'s functions are called with."""
    calls: list[Any] = []
    original = PostgresConnector._write_converter

    def spied(self: PostgresConnector, column: Column) -> Convert | None:
        convert = original(self, column)
        if convert is None:
            return None

        def spy(value: Any) -> Any:
            calls.append(value)
            return convert(value)

        return spy

    monkeypatch.setattr(PostgresConnector, "_write_converter", spied)
    return calls


def test_columns_that_need_no_conversion_are_not_touched(converter_calls: list[Any]) -> None:
    rows = [
        (1, datetime(2026, 1, 2, 3, 4, 5, 6), '{"a": 1}'),
        (2, None, None),
        (3, datetime(1, 1, 1), "[]"),
    ]
    out = PostgresConnector(CONTENT)._convert_columns([ID, TS, DOC], rows)
    assert out is not None
    assert all(a is b for a, b in zip(out, rows, strict=True))  # the very same row objects
    assert converter_calls == []


def test_only_the_column_holding_an_aware_timestamp_is_converted(
    converter_calls: list[Any],
) -> None:
    aware = datetime(2026, 1, 2, 3, 0, tzinfo=PLUS_2)
    rows = [(1, datetime(2026, 1, 1), '"x"'), (2, aware, None), (3, None, '"y"')]
    connector = PostgresConnector(CONTENT)
    out = connector._convert_columns([ID, TS, DOC], rows)
    assert out is not None
    assert [r[1] for r in out] == [datetime(2026, 1, 1), datetime(2026, 1, 2, 1, 0), None]
    assert converter_calls == [datetime(2026, 1, 1), aware]  # no NULL, no JSON text
    reference, origin, rejected = connector._convert_rows([ID, TS, DOC], rows)
    assert _typed(out) == _typed(reference)
    assert (list(origin), rejected) == ([0, 1, 2], [])


def test_documents_that_are_not_text_are_serialised() -> None:
    rows = [(1, None, "[1]"), (2, None, {"k": "ü"}), (3, None, [1, 2])]
    out = PostgresConnector(CONTENT)._convert_columns([ID, TS, DOC], rows)
    assert out is not None
    assert [r[2] for r in out] == ["[1]", '{"k": "ü"}', "[1, 2]"]


@pytest.mark.parametrize(
    "bad",
    [
        (5, datetime(1, 1, 1, tzinfo=PLUS_2), None),  # before year 1 in UTC: OverflowError
        (5, None, {1, 2}),  # a set is no JSON document: TypeError
    ],
)
def test_a_value_that_fails_to_convert_sends_the_batch_row_by_row(bad: Row) -> None:
    rows: list[Row] = [(i, datetime(2026, 1, i), None) for i in range(1, 5)]
    rows += [bad, (6, datetime(2026, 1, 1, tzinfo=UTC), '"z"')]
    connector = PostgresConnector(CONTENT)
    assert connector._convert_columns([ID, TS, DOC], rows) is None
    _, origin, rejected = connector._convert_rows([ID, TS, DOC], rows)
    assert list(origin) == [0, 1, 2, 3, 5]
    assert [i for i, _ in rejected] == [4]
    assert rejected[0][1].startswith("column 'ts'" if bad[1] else "column 'doc'")


def test_rows_of_another_width_go_row_by_row() -> None:
    connector = PostgresConnector(CONTENT)
    assert connector._convert_columns([ID, TS], [(1, None, "extra")]) is None
    assert connector._convert_columns([ID, TS], [(1, datetime(2026, 1, 1)), (2,)]) is None


# --- the binary check, no server ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typname", "values", "fits"),
    [
        ("int4", [None, 2**40], False),  # a NULL must not hide the out-of-range value
        ("int4", [None, 2**31 - 1, -(2**31)], True),
        ("int2", [None, None], True),
        ("int4", [0, None, -(2**31) - 1], False),
        ("int2", [0, None, 0], True),
        ("int8", [None, True], False),
        ("timestamptz", [None, datetime(2026, 1, 1)], False),
        ("timestamptz", [None, datetime(2026, 1, 1, tzinfo=UTC)], True),
        ("timestamp", [None, datetime(2026, 1, 1, tzinfo=UTC)], False),
        ("timestamp", [datetime(2026, 1, 1), None], True),
        ("time", [None, time(1, tzinfo=UTC)], False),
        ("time", [None, time(1)], True),
        ("date", [None, datetime(2026, 1, 1)], False),
    ],
)
def test_binary_checks_look_past_nulls(typname: str, values: list[Any], fits: bool) -> None:
    columns = binary_columns([typname])
    assert columns is not None
    assert columns.fits([(v,) for v in values]) is fits


# --- against the server ---------------------------------------------------------------------------

DDL = """CREATE TABLE {t} (
    id bigint PRIMARY KEY, n integer, amount numeric(12,2), x double precision, flag boolean,
    day date, ts timestamp, tz timestamptz, doc json, name text)"""
NAMES = ("id", "n", "amount", "x", "flag", "day", "ts", "tz", "doc", "name")


@pytest.fixture
def schemas() -> Iterator[tuple[str, str]]:
    """Two schemas with the same table: one for the fast path, one for the reference (the same
    names, so that the server's messages are the same)."""
    require("postgres")
    names = (f"fast_{uuid.uuid4().hex[:12]}", f"slow_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE SCHEMA "{name}"')
            conn.execute(DDL.format(t=f'"{name}".t'))
    yield names
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def _row(i: int) -> Row:
    return (
        i,
        i * 7 - 1000,
        Decimal(i * 13).scaleb(-2),
        i / 3,
        i % 2 == 0,
        date(2000, 1, 1) + timedelta(days=i),
        datetime(2026, 1, 1) + timedelta(microseconds=i * 999_999),
        datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
        None if i % 3 else f'{{"i": {i}}}',
        f"row\t{i}\\\n'ü'",
    )


def _with(row: Row, **changes: Any) -> Row:
    values = list(row)
    for name, value in changes.items():
        values[NAMES.index(name)] = value
    return tuple(values)


def _mixed_batch() -> list[Row]:
    rows = [_row(i) for i in range(1, 41)]
    rows[3] = (4,) + (None,) * (len(NAMES) - 1)  # NULLs everywhere
    rows[5] = _with(rows[5], ts=datetime(2026, 6, 1, 12, tzinfo=PLUS_2))  # aware among naive
    rows[9] = _with(rows[9], doc={"nested": [1, 2]})  # a document to serialise
    rows[12] = _with(rows[12], ts=datetime(1, 1, 1, tzinfo=PLUS_2))  # refused: not in UTC range
    rows[17] = _with(rows[17], doc={1, 2})  # refused: no JSON document
    rows[20] = _with(rows[20], n=2**40)  # refused by the server (int4), the batch goes text
    rows[25] = _with(rows[25], id=100)  # refused by the server: a key already written
    rows[30] = _with(rows[30], amount=Decimal("1E+11"))  # refused: numeric(12,2) overflow
    return rows


def _write(
    schema: str, batches: Sequence[list[Row]], mode: WriteMode, *, reference: bool
) -> list[tuple[int, list[tuple[Row, str]]]]:
    keys = ("id",) if mode is WriteMode.UPSERT else ()
    plan = WritePlan(table="t", columns=NAMES, write_mode=mode, key_columns=keys)
    kind = RowByRow if reference else PostgresConnector
    results = []
    with kind({**CONTENT, "schema": schema}) as connector:
        connector.prepare_target(plan)
        for rows in batches:
            result = connector.write(Batch.of(NAMES, rows), plan)
            results.append((result.rows_written, [(r.row, r.reason) for r in result.rejected]))
        connector.commit()
    return results


def _stored(schema: str) -> tuple[list[Row], list[Row]]:
    """The rows as psycopg reads them, and as the server prints them."""
    with psycopg.connect(PG_ADMIN_URL) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        typed = conn.execute(f'SELECT * FROM "{schema}".t ORDER BY id').fetchall()
        text = conn.execute(f'SELECT t::text FROM "{schema}".t ORDER BY id').fetchall()
        return typed, text


def _same_as_row_by_row(
    schemas: tuple[str, str],
    batches: Sequence[list[Row]],
    mode: WriteMode,
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[int, list[tuple[Row, str]]]]:
    fast = _write(schemas[0], batches, mode, reference=False)
    with monkeypatch.context() as patch:
        patch.setattr(copyin, "_ENCODERS", None)  # every row through Copy.write_row
        slow = _write(schemas[1], batches, mode, reference=True)
    assert fast == slow
    (typed, text), (slow_typed, slow_text) = _stored(schemas[0]), _stored(schemas[1])
    assert _typed(typed) == _typed(slow_typed)
    assert text == slow_text
    return fast


@pytest.mark.parametrize("mode", [WriteMode.INSERT, WriteMode.UPSERT])
def test_a_mixed_batch_writes_and_rejects_exactly_as_row_by_row(
    schemas: tuple[str, str], mode: WriteMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = [[_row(100)], _mixed_batch()]
    results = _same_as_row_by_row(schemas, batches, mode, monkeypatch)
    refused = [row[0] for row, _ in results[1][1]]
    if mode is WriteMode.INSERT:
        assert refused == [13, 18, 21, 100, 31]
    else:  # an upsert overwrites the key written before
        assert refused == [13, 18, 21, 31]
    assert [reason.split(":")[0] for _, reason in results[1][1][:2]] == [
        "column 'ts'",
        "column 'doc'",
    ]
    typed, _ = _stored(schemas[0])
    by_id = {row[0]: row for row in typed}
    assert by_id[4] == (4,) + (None,) * (len(NAMES) - 1)
    assert by_id[6][NAMES.index("ts")] == datetime(2026, 6, 1, 10)
    assert by_id[10][NAMES.index("doc")] == {"nested": [1, 2]}


def test_batches_longer_than_one_write_of_rows_arrive_whole(
    schemas: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    count = copyin.ROWS_PER_WRITE * 2 + 7
    batches = [[_row(i) for i in range(1, count + 1)]]
    assert _same_as_row_by_row(schemas, batches, WriteMode.INSERT, monkeypatch) == [(count, [])]


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("count", [0, 1, copyin.ROWS_PER_WRITE, copyin.ROWS_PER_WRITE + 1])
def test_write_rows_frames_a_whole_copy(binary: bool, count: int) -> None:
    require("postgres")
    rows = [(i, f"a\tb\\c\n{i}", Decimal("-0.05"), None) for i in range(count)]
    with psycopg.connect(PG_ADMIN_URL) as conn:
        conn.execute("CREATE TEMP TABLE t (i int8, s text, d numeric, n int4)")
        statement = "COPY t FROM STDIN" + (" (FORMAT binary)" if binary else "")
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            if binary:
                copy.set_types(["int8", "text", "numeric", "int4"])
            copyin.write_rows(copy, rows, binary=binary)
        assert conn.execute("SELECT * FROM t ORDER BY i").fetchall() == rows


def test_this_psycopg_takes_the_fast_path() -> None:
    # Otherwise every test above compared write_row with itself.
    assert copyin._ENCODERS is not None
