"""The SQLite reader's column-at-a-time fast path: exact, or it steps aside.

Every value must come back exactly as `types.reader_for` (the value-by-value converter, the
reference here) makes it: values in openfdi's canonical storage forms through the fast path, and
anything else SQLite may hold (text in a numeric column, 'T' and 'Z' timestamps, 'true' booleans,
...) as before, even mixed with canonical values and NULLs in one chunk.
"""

from __future__ import annotations

import math
import random
import sqlite3
import struct
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from openfdi.connectors.spi import Batch, Column, LogicalType, ReadPlan, TableSchema, WritePlan
from openfdi.connectors.sqlite import columnar, types
from openfdi.connectors.sqlite.connector import SqliteConnector

Row = tuple[Any, ...]


def _key(value: Any) -> tuple[type, str]:
    """What two values must share to be the same: type and repr (a Decimal's exponent and sign,
    a datetime's tzinfo, a double's every bit)."""
    return type(value), repr(value)


def _keys(values: Sequence[Any]) -> list[tuple[type, str]]:
    return list(map(_key, values))


def _reference(column: Column, values: Sequence[Any]) -> list[Any]:
    convert = types.reader_for(column)
    if convert is None:
        return list(values)
    return [None if v is None else convert(v) for v in values]


def _fast(column: Column, values: Sequence[Any]) -> list[Any]:
    read = columnar.column_reader(column)
    out = None if read is None else read(tuple(values))
    return list(values) if out is None else out


def _stored(declared: str, values: Sequence[Any]) -> list[Any]:
    """The values as SQLite gives them back from a column of that declared type (affinity)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE TABLE t (v {declared})")
        conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
        return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY rowid")]
    finally:
        conn.close()


DEC = Column("d", LogicalType.DECIMAL, precision=12, scale=2)
DEC_TEXT = Column("d", LogicalType.DECIMAL, precision=30, scale=10)
DEC_FREE = Column("d", LogicalType.DECIMAL)
TS = Column("ts", LogicalType.TIMESTAMP)
TSTZ = Column("tz", LogicalType.TIMESTAMPTZ)

# Column -> SPI values; `writer_for` turns them into their canonical storage forms.
CANONICAL: dict[str, tuple[Column, list[Any]]] = {
    "bigint": (Column("i", LogicalType.BIGINT), [1, -(2**63), 2**63 - 1, 0]),
    "int": (Column("i", LogicalType.INT), [5, -(2**31), 0]),
    "double": (Column("x", LogicalType.DOUBLE), [0.1 + 0.2, -1e-300, 5e-324, 1.5]),
    "float": (Column("x", LogicalType.FLOAT), [0.5, 3.25]),
    "decimal": (
        DEC,
        list(map(Decimal, ["2959863478.63", "0.10", "-0.01", "7.00", "0.00", "-9999999999.99"])),
    ),
    "wide decimal": (DEC_TEXT, [Decimal("12345678901234567890.0123456789"), Decimal("-1E-10")]),
    "boolean": (Column("b", LogicalType.BOOLEAN), [True, False, True]),
    "date": (Column("d", LogicalType.DATE), [date(2026, 1, 1), date(1, 1, 1), date(9999, 12, 31)]),
    "time": (Column("t", LogicalType.TIME), [time(0, 0), time(23, 59, 59, 999_999)]),
    "timestamp": (
        TS,
        [datetime(2017, 8, 31, 11, 26, 33, 839_866), datetime(2026, 1, 1), datetime(1, 1, 1)],
    ),
    "timestamptz": (
        TSTZ,
        [datetime(1974, 8, 19, 22, 25, 19, 735_986, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)],
    ),
    "binary": (Column("bin", LogicalType.BINARY), [b"\x00\xff", b""]),
    "json": (Column("j", LogicalType.JSON), ['{"a": 1.50}', "[]", "1.50"]),
}


@pytest.mark.parametrize("name", CANONICAL)
def test_canonical_values_round_trip_without_the_value_converter(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    column, spi_values = CANONICAL[name]
    write = types.writer_for(column)
    values = [*spi_values[:1], None, *spi_values[1:], None]  # NULLs mid-column and last
    stored = _stored(
        types.declared_from_column(column), [None if v is None else write(v) for v in values]
    )

    def forbidden(value: Any) -> Any:
        raise AssertionError(f"{value!r} took the value-by-value converter")

    monkeypatch.setattr(types, "reader_for", lambda column: forbidden)
    assert _keys(_fast(column, stored)) == _keys(values)


# Stored values the fast paths must not vouch for, each mixed with canonical ones and NULLs.
ODD: dict[str, tuple[Column, list[Any]]] = {
    "integral float in an int column": (
        Column("i", LogicalType.INT),
        [1, None, 3.0, 2.5, "12", b"x", -0.0, 7],
    ),
    "int in a double column": (Column("x", LogicalType.DOUBLE), [1.5, None, 2, "abc", 2.5]),
    "text and numbers in a decimal column": (
        DEC,
        [1.5, None, "1.5", " 2.25 ", "abc", 7, 0, 0.0, 2**60],
    ),
    # Numbers only, so the chunk reaches the integer shortcut and its guards must refuse it.
    "doubles halfway at the scale in a decimal column": (DEC, [1.25, None, 1.005, 1.015, 2.675]),
    "doubles beyond 15 digits in a decimal column": (
        DEC,
        [123.45, float(2**60), 1e17, -1e16 + 2, 12345678901234.56, 99999999999999.99, 0.1 + 0.2],
    ),
    # 16 digits: the shortcut's n reads back as the double, but repr rounds elsewhere (...2.81).
    "a 16-digit double in a decimal column": (DEC, [1.25, -99400372592162.81]),
    "tiny and huge doubles in a decimal column": (DEC, [1.25, 1e-300, 5e-324, 1e300, -1e300]),
    "negative zero in a decimal column": (DEC, [1.25, -0.0, None, 0.0, 0]),
    "infinities and NaN in a decimal column": (DEC, [1.25, math.inf, None, -math.inf, math.nan]),
    "bytes in a decimal column": (DEC, [1.25, b"1.25", None]),
    "numbers in a wide decimal column": (DEC_TEXT, ["1.5", None, 1.5, 3]),
    "decimal without scale": (DEC_FREE, [1.5, None, 2, 0.1 + 0.2, "7.10", -0.0]),
    "decimal without scale, numbers only": (DEC_FREE, [1.5, None, 2, 0.1 + 0.2, 2**60, -0.0]),
    "text booleans": (
        Column("b", LogicalType.BOOLEAN),
        [1, None, 0, "true", " No ", "t", 2, 1.0, 0.0, "maybe", b"1"],
    ),
    "float booleans": (Column("b", LogicalType.BOOLEAN), [1.0, None, 0.0, -0.0, 1]),
    "T and Z timestamps": (
        TS,
        ["2026-01-01 10:00:00", None, "2026-01-01T10:00:00Z", "2026-01-01T10:00:00.5+02:00"],
    ),
    "timestamps with spaces, dates and epochs": (
        TS,
        [" 2026-01-01 10:00:00 ", None, "2026-01-01", "20260101T1000", 86400, 1.5, "bad"],
    ),
    "timestamptz without an offset or another one": (
        TSTZ,
        ["2026-01-01 10:00:00+00:00", None, "2026-01-01 10:00:00", "2026-01-01 12:00:00+02:00"],
    ),
    "timestamptz Z and -00:00": (TSTZ, ["2026-01-01 10:00:00Z", "2026-01-01 10:00:00-00:00"]),
    "dates with times and other forms": (
        Column("d", LogicalType.DATE),
        ["2026-01-01", None, "2026-01-01 12:00:00", "20260101", "2026-W01-1", 20260101, "x"],
    ),
    "times with offsets": (
        Column("t", LogicalType.TIME),
        ["10:00:00", None, "10:00:00+01:00", "T10:00", 36000, " 10:00"],
    ),
    "text in a binary column": (Column("bin", LogicalType.BINARY), [b"\x01", None, "text", 5]),
    "numbers in a json column": (Column("j", LogicalType.JSON), ['{"a": 1}', None, 1, 1.5, 2**70]),
}


@pytest.mark.parametrize("name", ODD)
def test_odd_values_convert_as_the_value_converter_does(name: str) -> None:
    column, values = ODD[name]
    assert _keys(_fast(column, values)) == _keys(_reference(column, values))


def test_a_negative_zero_keeps_its_sign() -> None:
    assert str(_fast(DEC, [-0.0, 0.0, 0, None])[0]) == "-0.00"


def test_decimal_shortcut_matches_the_value_converter_on_random_numbers() -> None:
    rng = random.Random(20261124)
    for scale in range(7):
        column = Column("d", LogicalType.DECIMAL, precision=15, scale=scale)
        for _ in range(60):
            # The shortcut is taken or refused per chunk: mostly canonical chunks, with at most
            # one other number, exercise the guards; fully random ones the refusals.
            values = [_canonical_number(rng, scale) for _ in range(100)]
            if rng.random() < 0.7:
                values[rng.randrange(100)] = _other_number(rng)
            elif rng.random() < 0.5:
                values = [_other_number(rng) for _ in range(100)]
            assert _keys(_fast(column, values)) == _keys(_reference(column, values))


def _canonical_number(rng: random.Random, scale: int) -> Any:
    """A decimal of at most 15 digits at the scale, as numeric affinity stores it."""
    digits = rng.randint(1, 15)
    number = Decimal(f"{rng.randrange(-(10**digits), 10**digits)}E-{scale}")
    return int(number) if number == int(number) else float(number)


def _other_number(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.2:
        return rng.randrange(-(10**18), 10**18)
    if pick < 0.4:  # 16 to 20 digits: exact as a double or not, never safe for the shortcut
        return float(Decimal(f"{rng.randrange(10**15, 10**20)}E-{rng.randint(0, 20)}"))
    if pick < 0.6:  # a large integral double, whose repr is shorter than its digits
        return float(rng.randrange(2**53, 2**70))
    if pick < 0.9:  # any finite double
        (value,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        return value if math.isfinite(value) else 0.5
    return rng.choice([None, 0, 0.0, -0.0, 5e-324, 1e15, 1e-15, 0.125, 1.015])


# --- through the connector -----------------------------------------------------------------------

SCHEMA = TableSchema(
    "fast",
    (
        Column("id", LogicalType.BIGINT, nullable=False, is_primary_key=True),
        Column("n", LogicalType.INT),
        Column("v", LogicalType.VARCHAR, length=32),
        Column("amount", LogicalType.DECIMAL, precision=12, scale=2),
        Column("wide", LogicalType.DECIMAL, precision=30, scale=10),
        Column("x", LogicalType.DOUBLE),
        Column("b", LogicalType.BOOLEAN),
        Column("day", LogicalType.DATE),
        Column("tm", LogicalType.TIME),
        Column("ts", LogicalType.TIMESTAMP),
        Column("tz", LogicalType.TIMESTAMPTZ),
        Column("bin", LogicalType.BINARY),
        Column("j", LogicalType.JSON),
    ),
    ("id",),
)


def _rows(n: int) -> list[Row]:
    rng = random.Random(11)
    rows: list[Row] = []
    for i in range(n):
        row = (
            i + 1,
            rng.randint(-(2**31), 2**31 - 1),
            "v" * rng.randint(0, 32),
            Decimal(f"{rng.randrange(-(10**12), 10**12)}E-2"),
            Decimal(f"{rng.randrange(-(10**30), 10**30)}E-10"),  # exact: no context rounding
            struct.unpack("<d", struct.pack("<q", rng.getrandbits(62)))[0],
            rng.random() < 0.5,
            date(1, 1, 1) + timedelta(days=rng.randrange(3_652_059)),
            time(rng.randrange(24), rng.randrange(60), rng.randrange(60), rng.randrange(10**6)),
            datetime(1, 1, 1) + timedelta(microseconds=rng.getrandbits(57)),
            datetime(1, 1, 2, tzinfo=UTC) + timedelta(microseconds=rng.getrandbits(57)),
            rng.randbytes(rng.randint(0, 8)),
            f'{{"k": {i}}}',
        )
        # Each value NULL now and then, so NULLs land mid-chunk in every column.
        rows.append(tuple(None if j and rng.random() < 0.02 else v for j, v in enumerate(row)))
    return rows


@pytest.fixture
def connector(tmp_path: Path) -> Any:
    conn = SqliteConnector({"database_name": str(tmp_path / "fast.db")})
    yield conn
    conn.close()


def test_every_value_written_comes_back_exactly(connector: SqliteConnector) -> None:
    rows = _rows(5_000)  # several fetched chunks
    plan = WritePlan("fast", source_schema=SCHEMA)
    connector.prepare_target(plan)
    assert connector.write(Batch.of(SCHEMA.names, rows), plan).rejected == []
    connector.commit()
    back = [r for b in connector.read(ReadPlan("fast", batch_rows=1_500)) for r in b.rows]
    assert [_keys(r) for r in back] == [_keys(r) for r in rows]


def test_odd_stored_values_read_back_as_before(connector: SqliteConnector, tmp_path: Path) -> None:
    # Canonical and odd values interleaved in every column of one table, as another program
    # writing the file might leave them; the incremental read also covers a hidden column.
    odd = {
        "n": [7, 3.0, "12", None],
        "amount": ["1.5", 1.005, 7, None, -0.0, "abc"],
        "x": [2, "nan?", None, 1.5],
        "b": ["true", 2, None, 1, 0],
        "day": ["2026-01-01 12:00:00", 20260101, None, "2026-02-03"],
        "tm": ["10:00:00+01:00", None, "10:00"],
        "ts": ["2026-01-01T10:00:00Z", 0, None, "2026-01-01 10:00:00.5"],
        "tz": ["2026-01-01 10:00:00", "2026-01-01 12:00:00+02:00", None, 1.5],
        "bin": ["text", None, b"\x00"],
        "j": [1, 2.5, None, "{}"],
    }
    plan = WritePlan("fast", source_schema=SCHEMA)
    connector.prepare_target(plan)
    connector.commit()
    admin = sqlite3.connect(tmp_path / "fast.db")
    names = ["id", *odd]
    with admin:
        admin.executemany(
            f"INSERT INTO fast ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
            [(i, *(values[i % len(values)] for values in odd.values())) for i in range(1, 3_000)],
        )
    stored = admin.execute(f"SELECT {', '.join(names)} FROM fast ORDER BY id").fetchall()
    admin.close()
    columns = [SCHEMA.column(n) for n in names]
    expected = [_keys(_reference_row(columns, row)) for row in stored]

    for read in (
        ReadPlan("fast", columns=tuple(names)),
        ReadPlan("fast", columns=tuple(names[1:]), incremental_column="id"),
    ):
        back = [r for b in connector.read(read) for r in b.rows]
        skip = 0 if read.incremental_column is None else 1
        assert [_keys(r) for r in back] == [k[skip:] for k in expected]


def _reference_row(columns: Sequence[Column], row: Row) -> Row:
    return tuple(_reference(c, [v])[0] for c, v in zip(columns, row, strict=True))


def test_an_empty_chunk_and_text_only_columns() -> None:
    text = [Column("a", LogicalType.TEXT), Column("b", LogicalType.VARCHAR)]
    assert columnar.rows_reader(text) is None
    read = columnar.rows_reader([Column("a", LogicalType.DATE)])
    assert read is not None
    assert read([]) == []
