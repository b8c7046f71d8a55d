"""Every MariaDB column type a composite task carries, through the SDK, into a PostgreSQL and a
MariaDB target: the same values copied by the snapshot and streamed from the binlog (insert,
update, delete) arrive exactly, and the two paths give the target the same values.

The values are the awkward ones: negative and > 24 h times with fractions, the year 0000, bits
of every width, the empty set apart from NULL, binary(n) ending in zero bytes, 65-digit
decimals, timestamps with microseconds, JSON text with exponents and emoji, every byte value,
4-byte UTF-8, geometry with and without an SRID, NULL in every column."""

from __future__ import annotations

import ipaddress
import struct
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.cdc.conftest import Ends, start_stop, wait_for
from tests.cdc.mariaserver import BinlogMariaDB
from tests.cdc.test_mariadb import _datasource, _task_between

COLUMNS = (
    "id int PRIMARY KEY, e enum('a','b','ü 𝄞'), s set('z','x','y'), b1 bit(1), b12 bit(12),"
    " b64 bit(64), y year, tm time, tm6 time(6), tm3 time(3), dt6 datetime(6), dt3 datetime(3),"
    " ts6 timestamp(6) NULL, dec65 decimal(65,30), dec0 decimal(10,0), j json, bl blob,"
    " bn binary(4), vb varbinary(300), txt text, ch char(5), g geometry, f float, db double,"
    " ub bigint unsigned, tm1 time(1), tm4 time(4)"
)
PG_COLUMNS = (
    "id int PRIMARY KEY, e text, s text, b1 bit(1), b12 bit(12), b64 bit(64), y smallint,"
    " tm interval, tm6 interval, tm3 interval, dt6 timestamp(6), dt3 timestamp(3),"
    " ts6 timestamp(6), dec65 numeric(65,30), dec0 numeric(10,0), j json, bl bytea, bn bytea,"
    " vb bytea, txt text, ch text, g bytea, f real, db double precision, ub numeric(20,0),"
    " tm1 interval, tm4 interval"
)
NAMES = [c.split()[0] for c in PG_COLUMNS.split(", ")]
EVERY_BYTE = "x'" + bytes(range(256)).hex() + "'"
ROWS = (
    # the far ends of each type
    "('ü 𝄞', 'x,z', b'1', b'101010101010', 18446744073709551615, 2155, '-838:59:59',"
    " '-12:34:56.000001', '838:59:58.999', '2026-01-02 03:04:05.123456',"
    " '0001-01-01 00:00:00.001', '2038-01-19 03:14:07.999999',"
    " '-12345678901234567890123456789012345.123456789012345678901234567891', 9999999999,"
    ' \'{"a": 1.50, "b": [true, null, "😀"], "c": 1e400}\', '
    + EVERY_BYTE
    + ", x'61000000', x'00ff00', 'emoji 😀 𝄞 and ü', 'ab', ST_GeomFromText('POLYGON((0 0,1 0,1"
    " 1,0 0))'), 0.1, 0.1, 18446744073709551615, '-00:00:00.1', '-838:59:58.9999')",
    # zeros and empties, apart from NULL
    "('a', '', b'0', b'0', 0, 0, '00:00:00', '-00:00:00.5', '100:00:00',"
    " '1000-01-01 00:00:00', '9999-12-31 23:59:59.999', '1970-01-01 00:00:01',"
    " 0.000000000000000000000000000001, -9999999999, '[]', '', x'00000000', '', '', '',"
    " POINT(0, 0), -3.4e38, 1e308, 0, '12:00:00.5', '00:00:00.0001')",
    # NULL in every column
    "(" + ", ".join(["NULL"] * (len(NAMES) - 1)) + ")",
    # odd ones: an SRID, the smallest steps, 4-byte UTF-8 throughout
    "('b', 'z,x,y', b'0', b'000000000001', 1, 1901, '-00:00:01', '23:59:59.999999',"
    " '-838:59:58.999', '2026-06-07 08:09:10', '2026-06-07 08:09:10.1',"
    " '2026-06-07 08:09:10.000001', 1.5, 12, '\"𝄞\"', x'c3', x'00', x'e282', '😀', 'é',"
    " ST_GeomFromText('LINESTRING(1.5 -2, 3 4)', 4326), 1.17549e-38, -1.5e-300, 1,"
    " '-1:00:00.9', '-00:00:01.0001')",
)
SNAPSHOT_IDS = range(1, len(ROWS) + 1)
STREAM_BASE = 100
"""The stream's rows are the snapshot's values again, ids + 100: both paths must agree."""


@pytest.fixture
def source_db(maria: BinlogMariaDB) -> Iterator[str]:
    yield from _database(maria, "src")


@pytest.fixture
def target_db(maria: BinlogMariaDB) -> Iterator[str]:
    yield from _database(maria, "dst")


def _database(maria: BinlogMariaDB, prefix: str) -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with maria.root() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    yield name
    with maria.root() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")


def _run(maria: BinlogMariaDB, db: str, *statements: str) -> None:
    with maria.connect(db) as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        for statement in statements:
            cur.execute(statement)


def _insert(maria: BinlogMariaDB, db: str, base: int) -> None:
    _run(maria, db, *(f"INSERT INTO t VALUES ({base + i}, {row[1:]}" for i, row in
                      zip(SNAPSHOT_IDS, ROWS, strict=True)))  # fmt: skip


def _changes(maria: BinlogMariaDB, db: str) -> None:
    """Updates that move every column of one stream row to another's values (and to NULL and
    back), a key change, and deletes, some in one transaction."""
    first, second, nulls, odd = (STREAM_BASE + i for i in SNAPSHOT_IDS)
    cols = ", ".join(f"a.{n} = b.{n}" for n in NAMES[1:])
    _run(
        maria,
        db,
        f"UPDATE t a JOIN t b ON b.id = {first} SET {cols} WHERE a.id = {second}",
        f"UPDATE t a JOIN t b ON b.id = {odd} SET {cols} WHERE a.id = {first}",
        f"UPDATE t a JOIN t b ON b.id = {nulls} SET {cols} WHERE a.id = {odd}",
        f"UPDATE t SET id = 500 WHERE id = {nulls}",
        "UPDATE t SET s = '', y = 0, b64 = 0, tm6 = '-00:00:00.000001' WHERE id = 500",
        "START TRANSACTION",
        "DELETE FROM t WHERE id = 2",
        f"INSERT INTO t SELECT 600, {', '.join(NAMES[1:])} FROM t WHERE id = 1",
        "DELETE FROM t WHERE id = 3",
        "COMMIT",
    )


# --- reading both ends ---------------------------------------------------------------------------


def _maria_rows(maria: BinlogMariaDB, db: str) -> dict[int, tuple[Any, ...]]:
    """The rows as MariaDB holds them, the geometry as WKB plus its SRID."""
    select = ", ".join(
        "ST_AsBinary(g), ST_SRID(g)" if n == "g" else "CAST(j AS CHAR)" if n == "j" else n
        for n in NAMES
    )
    with maria.connect(db) as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(f"SELECT {select} FROM t ORDER BY id")
        return {r[0]: tuple(r[1:]) for r in cur.fetchall()}


def _bits(value: Any, width: int) -> Any:
    return None if value is None else format(int.from_bytes(value, "big"), f"0{width}b")


def _as_postgres(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A MariaDB row as its PostgreSQL target holds it (the documented type map): bits as
    their digits, year as a number, float as real, geometry as WKB or, with an SRID, EWKB."""
    at = NAMES.index("g")
    values = dict(zip([*NAMES[1:at], "g", "srid", *NAMES[at + 1 :]], row, strict=True))
    out = []
    for name in NAMES[1:]:
        value = values[name]
        if name.startswith("b") and name[1:].isdigit():
            value = _bits(value, int(name[1:]))
        elif name == "g" and value is not None and values["srid"]:
            kind = struct.unpack("<I", value[1:5])[0] | 0x2000_0000
            value = value[:1] + struct.pack("<II", kind, values["srid"]) + value[5:]
        elif name == "f" and value is not None:
            value = struct.unpack("<f", struct.pack("<f", value))[0]
        elif name == "ub" and value is not None:
            value = Decimal(value)
        out.append(value)
    return tuple(out)


def _pg_rows(ends: Ends) -> dict[int, tuple[Any, ...]]:
    with ends.dst_conn() as dst:
        rows = dst.execute(f"SELECT {', '.join(NAMES)}, j::text FROM t ORDER BY id").fetchall()
    out = {}
    for r in rows:
        values = [bytes(v) if isinstance(v, memoryview) else v for v in r[1:-1]]
        values[NAMES.index("j") - 1] = r[-1]  # the JSON's text, not its parse
        if values[NAMES.index("f") - 1] is not None:  # real, as its 4 bytes
            f = values[NAMES.index("f") - 1]
            values[NAMES.index("f") - 1] = struct.unpack("<f", struct.pack("<f", f))[0]
        out[r[0]] = tuple(values)
    return out


def _paths_agree(rows: dict[int, tuple[Any, ...]]) -> None:
    """Rows copied by the snapshot and the same values streamed hold the same values."""
    for i in SNAPSHOT_IDS:
        assert rows[i] == rows[STREAM_BASE + i], f"row {i}: snapshot and stream differ"


# --- the tests ---------------------------------------------------------------------------------


def test_every_type_from_mariadb_into_postgresql_is_exact_by_snapshot_and_stream(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, source_db: str
) -> None:
    _run(maria, source_db, f"CREATE TABLE t ({COLUMNS})")
    _insert(maria, source_db, 0)
    with ends.dst_conn() as dst:
        dst.execute(f"CREATE TABLE t ({PG_COLUMNS})")
    task_id, _ = _task_between(
        sdk,
        creds,
        _datasource(sdk, creds, "MYSQL", maria.content(source_db)),
        _datasource(sdk, creds, "POSTGRESQL", ends.pg.content(ends.dst)),
    )
    start_stop(sdk, creds, task_id, "start")
    try:

        def expected() -> dict[int, tuple[Any, ...]]:
            return {k: _as_postgres(v) for k, v in _maria_rows(maria, source_db).items()}

        wait_for(lambda: len(_pg_rows(ends)) == len(ROWS))
        assert _pg_rows(ends) == expected()
        _insert(maria, source_db, STREAM_BASE)
        wait_for(lambda: len(_pg_rows(ends)) == 2 * len(ROWS))
        got = _pg_rows(ends)
        assert got == expected()
        _paths_agree(got)
        # Spot checks against the literals themselves, not only against MariaDB's reading.
        first = dict(zip(NAMES[1:], got[STREAM_BASE + 1], strict=True))
        assert str(first["tm6"]) == "-1 day, 11:25:03.999999"  # -12:34:56.000001
        assert str(first["tm1"]) == "-1 day, 23:59:59.900000"  # -00:00:00.1
        assert first["dec65"] == Decimal(
            "-12345678901234567890123456789012345.123456789012345678901234567891"
        )
        assert first["bl"] == bytes(range(256))
        assert first["bn"] == b"a\0\0\0"
        assert first["txt"] == "emoji 😀 𝄞 and ü"
        assert first["s"] == "z,x"  # definition order, as MariaDB prints it
        zeros = dict(zip(NAMES[1:], got[STREAM_BASE + 2], strict=True))
        assert (zeros["s"], zeros["y"], zeros["bn"]) == ("", 0, b"\0\0\0\0")
        assert all(v is None for v in got[STREAM_BASE + 3])
        _changes(maria, source_db)
        wait_for(lambda: 500 in _pg_rows(ends) and 3 not in _pg_rows(ends))
        assert _pg_rows(ends) == expected()
    finally:
        start_stop(sdk, creds, task_id, "stop")


def test_every_type_from_mariadb_into_mariadb_is_exact_by_snapshot_and_stream(  # type: ignore[no-untyped-def]
    sdk, creds, maria: BinlogMariaDB, source_db: str, target_db: str
) -> None:
    for db in (source_db, target_db):
        _run(maria, db, f"CREATE TABLE t ({COLUMNS})")
    _insert(maria, source_db, 0)
    task_id, _ = _task_between(
        sdk,
        creds,
        _datasource(sdk, creds, "MYSQL", maria.content(source_db)),
        _datasource(sdk, creds, "MYSQL", maria.content(target_db)),
    )
    start_stop(sdk, creds, task_id, "start")
    try:
        wait_for(lambda: len(_maria_rows(maria, target_db)) == len(ROWS))
        assert _maria_rows(maria, target_db) == _maria_rows(maria, source_db)
        _insert(maria, source_db, STREAM_BASE)
        wait_for(lambda: len(_maria_rows(maria, target_db)) == 2 * len(ROWS))
        got = _maria_rows(maria, target_db)
        assert got == _maria_rows(maria, source_db)
        _paths_agree(got)
        _changes(maria, source_db)
        wait_for(lambda: 500 in _maria_rows(maria, target_db))
        wait_for(lambda: _maria_rows(maria, target_db) == _maria_rows(maria, source_db))
    finally:
        start_stop(sdk, creds, task_id, "stop")


ADDRESSES = (
    ("'ffffffff-ffff-ffff-ffff-ffffffffffff'", "'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'",
     "'255.255.255.255'"),
    ("'00000000-0000-0000-0000-000000000000'", "'::'", "'0.0.0.0'"),
    ("'12345678-1234-1234-8234-123456789000'", "'::ffff:1.2.3.4'", "'10.0.0.0'"),
    ("'6ccd780c-baba-1026-9564-5b8c656024db'", "'1:0:2:3:4:5:6:0'", "'0.0.0.1'"),
    ("NULL", "'::1.2.3.4'", "NULL"),
)  # fmt: skip
"""UUIDs (a version 1 among them, which MariaDB stores reordered) and addresses whose stored
bytes end in zeros (the binlog drops them), IPv4-mapped and -compatible ones."""


def test_uuid_inet6_and_inet4_arrive_as_their_values_by_snapshot_and_stream(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, source_db: str
) -> None:
    """The binlog carries these MariaDB types as their stored bytes, a SELECT as their text:
    both paths give PostgreSQL's uuid and inet the same values, MariaDB's own."""
    _run(maria, source_db, "CREATE TABLE a (id int PRIMARY KEY, u uuid, ip inet6, ip4 inet4)")
    _run(maria, source_db, *(f"INSERT INTO a VALUES ({i}, {', '.join(r)})"
                             for i, r in enumerate(ADDRESSES, 1)))  # fmt: skip
    with ends.dst_conn() as dst:
        dst.execute("CREATE TABLE a (id int PRIMARY KEY, u uuid, ip inet, ip4 inet)")
    task_id, _ = _task_between(
        sdk,
        creds,
        _datasource(sdk, creds, "MYSQL", maria.content(source_db)),
        _datasource(sdk, creds, "POSTGRESQL", ends.pg.content(ends.dst)),
    )

    def source() -> dict[int, tuple[Any, ...]]:
        with maria.connect(source_db) as conn, conn.cursor() as cur:
            cur.execute("SELECT id, u, ip, ip4 FROM a ORDER BY id")
            return {
                r[0]: (
                    None if r[1] is None else uuid.UUID(r[1]),
                    ipaddress.ip_address(r[2]),
                    None if r[3] is None else ipaddress.ip_address(r[3]),
                )
                for r in cur.fetchall()
            }

    def target() -> dict[int, tuple[Any, ...]]:
        with ends.dst_conn() as dst:
            rows = dst.execute("SELECT id, u, ip, ip4 FROM a ORDER BY id").fetchall()
        return {r[0]: tuple(r[1:]) for r in rows}

    start_stop(sdk, creds, task_id, "start")
    try:
        wait_for(lambda: len(target()) == len(ADDRESSES))
        _run(maria, source_db, "INSERT INTO a SELECT id + 100, u, ip, ip4 FROM a")
        wait_for(lambda: len(target()) == 2 * len(ADDRESSES))
        got, want = target(), source()
        assert got == want
        for i in range(1, len(ADDRESSES) + 1):
            assert got[i] == got[100 + i], f"row {i}: snapshot and stream differ"
        assert str(got[104][1]) == "1:0:2:3:4:5:6:0"
    finally:
        start_stop(sdk, creds, task_id, "stop")


def test_zero_dates_arrive_as_null_by_snapshot_and_stream(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, source_db: str
) -> None:
    """'0000-00-00' and '2020-00-00' (a lax sql_mode lets them in) have no PostgreSQL value:
    NULL from either path, not the text one path gave nor the epoch the other gave."""
    zeros = "'0000-00-00', '2020-01-00 00:00:00.5', '0000-00-00 00:00:00'"
    _run(
        maria,
        source_db,
        "CREATE TABLE z (id int PRIMARY KEY, d date, dt datetime(6), ts timestamp NULL)",
        "SET SESSION sql_mode = ''",
        f"INSERT INTO z VALUES (1, {zeros}), (2, '2020-02-29', NULL, '1970-01-01 00:00:01')",
    )
    with ends.dst_conn() as dst:
        dst.execute("CREATE TABLE z (id int PRIMARY KEY, d date, dt timestamp(6), ts timestamp)")
    task_id, _ = _task_between(
        sdk,
        creds,
        _datasource(sdk, creds, "MYSQL", maria.content(source_db)),
        _datasource(sdk, creds, "POSTGRESQL", ends.pg.content(ends.dst)),
    )
    start_stop(sdk, creds, task_id, "start")
    try:

        def rows() -> list[tuple[Any, ...]]:
            with ends.dst_conn() as dst:
                found = dst.execute("SELECT id, d::text, dt::text, ts::text FROM z ORDER BY id")
                return [tuple(r) for r in found]

        wait_for(lambda: len(rows()) == 2)
        later = "(102, '2020-02-29', NULL, '1970-01-01 00:00:01')"
        _run(maria, source_db, "SET SESSION sql_mode = ''",
             f"INSERT INTO z VALUES (101, {zeros}), {later}")  # fmt: skip
        wait_for(lambda: len(rows()) == 4)
        assert rows() == [
            (1, None, None, None),
            (2, "2020-02-29", None, "1970-01-01 00:00:01"),
            (101, None, None, None),
            (102, "2020-02-29", None, "1970-01-01 00:00:01"),
        ]
    finally:
        start_stop(sdk, creds, task_id, "stop")


def _wkb_point(x: float, y: float, srid: int = 0) -> bytes:
    """A point's WKB, or its EWKB (PostGIS' form) with an SRID."""
    if srid:
        return struct.pack("<BIIdd", 1, 1 | 0x2000_0000, srid, x, y)
    return struct.pack("<BIdd", 1, 1, x, y)


def test_bits_and_wkb_from_postgresql_into_mariadb_bit_and_geometry_columns(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, target_db: str
) -> None:
    """The other way: PostgreSQL's bit text becomes the number a BIT column takes, and WKB or
    EWKB bytes the stored form of a geometry column (the EWKB's SRID kept), by snapshot and by
    stream."""
    with ends.src_conn() as src:
        src.execute("CREATE TABLE g (id int PRIMARY KEY, b bit(12), p bytea)")
        src.execute(
            "INSERT INTO g VALUES (1, B'101010101010', %s), (2, B'000000000001', %s),"
            " (3, NULL, NULL)",
            (_wkb_point(1.5, -2), _wkb_point(3, 4, 4326)),
        )
    _run(maria, target_db, "CREATE TABLE g (id int PRIMARY KEY, b bit(12), p geometry)")
    task_id, _ = _task_between(
        sdk,
        creds,
        _datasource(sdk, creds, "POSTGRESQL", ends.pg.content(ends.src)),
        _datasource(sdk, creds, "MYSQL", maria.content(target_db)),
    )
    start_stop(sdk, creds, task_id, "start")
    try:

        def rows() -> list[tuple[Any, ...]]:
            with maria.connect(target_db) as conn, conn.cursor() as cur:
                cur.execute("SELECT id, BIN(b), ST_AsText(p), ST_SRID(p) FROM g ORDER BY id")
                return [tuple(r) for r in cur.fetchall()]

        snapshot = [
            (1, "101010101010", "POINT(1.5 -2)", 0),
            (2, "1", "POINT(3 4)", 4326),
            (3, None, None, None),
        ]
        wait_for(lambda: rows() == snapshot)
        with ends.src_conn() as src, src.transaction():  # one transaction: seen at once
            src.execute("INSERT INTO g SELECT id + 100, b, p FROM g WHERE id < 100")
            src.execute(
                "UPDATE g SET b = B'111111111111', p = %s WHERE id = 3",
                (_wkb_point(-1, 0.25, 3857),),
            )
        wait_for(lambda: len(rows()) == 6)
        got = rows()
        assert got[:2] == snapshot[:2]
        assert got[2] == (3, "111111111111", "POINT(-1 0.25)", 3857)
        assert [r[1:] for r in got[3:]] == [r[1:] for r in snapshot]  # stream = snapshot
    finally:
        start_stop(sdk, creds, task_id, "stop")
