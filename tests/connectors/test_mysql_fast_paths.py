"""The MySQL fast paths: LOAD DATA LOCAL from memory (writes) and asyncmy read ahead (reads).

Value by value: what goes in through LOAD DATA comes back identical through the asyncmy reader,
refused rows are still told apart one by one, and a read abandoned half way frees the server.
"""

from __future__ import annotations

import random
import struct
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import asyncmy.errors
import pytest

from openfdi.connectors.errors import TerminalConnectorError, TransientConnectorError
from openfdi.connectors.mysql import errors as mysql_errors
from openfdi.connectors.mysql import infile, reader
from openfdi.connectors.mysql.infile import InfileConnection, encode_rows
from openfdi.connectors.spi import (
    Batch,
    Column,
    LogicalType,
    ReadPlan,
    TableSchema,
    WriteMode,
    WritePlan,
)

from .test_connector_errors import _driver_classes

Row = tuple[Any, ...]

TRICKY_TEXT = [
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "back\\slash",
    "\\N",
    "NULL",
    "",
    "nul\0byte",
    "ends with backslash\\",
    "ünïcödé 中文 🎉 'quotes' \"double\" ,;",
]

SCHEMA = TableSchema(
    "fast",
    (
        Column("id", LogicalType.BIGINT, nullable=False, is_primary_key=True),
        Column("n", LogicalType.INT),
        Column("v", LogicalType.VARCHAR, length=64),
        Column("d", LogicalType.DECIMAL, precision=38, scale=10),
        Column("x", LogicalType.DOUBLE),
        Column("b", LogicalType.BOOLEAN),
        Column("day", LogicalType.DATE),
        Column("tm", LogicalType.TIME),
        Column("ts", LogicalType.TIMESTAMP),
        Column("tz", LogicalType.TIMESTAMPTZ),
        Column("bin", LogicalType.BINARY),
    ),
    ("id",),
)


def _doubles(rng: random.Random, n: int) -> list[float]:
    # Random bit patterns (finite only) plus the extremes: every one must come back bit-exact.
    out = [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1 + 0.2, 1 / 3, -1e-300]
    while len(out) < n:
        (value,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if value == value and abs(value) != float("inf") and value != 0:
            out.append(value)
    return out


def _rows(n: int) -> list[Row]:
    rng = random.Random(7)
    doubles = _doubles(rng, n)
    rows: list[Row] = []
    for i in range(n):
        null = i % 7 == 3
        rows.append(
            (
                i + 1,
                None if null else rng.randint(-(2**31), 2**31 - 1),
                None if null else TRICKY_TEXT[i % len(TRICKY_TEXT)] + str(i),
                None
                if null
                else Decimal(f"{rng.randint(-(10**27), 10**27)}.{rng.randrange(10**10):010d}"),
                None if null else doubles[i],
                None if null else bool(i % 2),
                None if null else date(1000 + i % 8000, 1 + i % 12, 1 + i % 28),
                None if null else time(i % 24, i % 60, i % 60, rng.randrange(1_000_000)),
                None
                if null
                else datetime(2000, 1, 1) + timedelta(microseconds=rng.getrandbits(48)),
                None
                if null
                else datetime(1971, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.getrandbits(48)),
                None if null else bytes(rng.getrandbits(8) for _ in range(i % 40)),
            )
        )
    return rows


def _same(a: Row, b: Row) -> bool:
    """Equal, types included, doubles bit for bit."""
    for x, y in zip(a, b, strict=True):
        if type(x) is not type(y):
            return False
        if isinstance(x, float) and struct.pack("<d", x) != struct.pack("<d", y):
            return False
        if x != y or (isinstance(x, Decimal) and str(x) != str(y)):
            return False
    return True


@pytest.fixture
def mysql(make_harness: Any) -> Any:
    return make_harness("mysql")


pytestmark = pytest.mark.mysql


def _plan(mode: WriteMode = WriteMode.INSERT) -> WritePlan:
    return WritePlan("fast", columns=SCHEMA.names, write_mode=mode, source_schema=SCHEMA)


def test_load_data_and_the_fast_reader_round_trip_every_value_exactly(mysql: Any) -> None:
    rows = _rows(2_500)  # several LOAD DATA chunks and several read-ahead chunks
    conn = mysql.connector()
    conn.prepare_target(_plan())
    result = conn.write(Batch.of(SCHEMA.names, rows), _plan())
    conn.commit()
    assert (result.rows_written, result.rejected) == (len(rows), [])

    back = [r for b in conn.read(ReadPlan("fast", incremental_column="id")) for r in b.rows]

    assert len(back) == len(rows)
    wrong = [(want, got) for want, got in zip(rows, back, strict=True) if not _same(want, got)]
    assert wrong == []


def test_a_new_reader_sees_what_a_writer_committed_in_another_session(mysql: Any) -> None:
    writer, reader = mysql.connector(), mysql.connector()
    writer.prepare_target(_plan())
    writer.write(Batch.of(SCHEMA.names, _rows(10)), _plan())
    writer.commit()
    assert sum(len(b) for b in reader.read(ReadPlan("fast"))) == 10
    writer.write(Batch.of(SCHEMA.names, _rows(20)[10:]), _plan())
    writer.commit()
    assert sum(len(b) for b in reader.read(ReadPlan("fast"))) == 20  # each read: a new snapshot


def test_refused_rows_among_many_chunks_are_isolated_and_notes_are_not_refusals(
    mysql: Any,
) -> None:
    conn = mysql.connector()
    conn.prepare_target(_plan())
    rows = _rows(2_300)
    bad = {
        17: (17, 1, "x" * 65, None, None, None, None, None, None, None, None),  # too long
        1_500: (1, 1, "dup", None, None, None, None, None, None, None, None),  # duplicate key
        2_299: (2_299, "many", "x", None, None, None, None, None, None, None, None),  # not int
    }
    for index, row in bad.items():
        rows[index] = row
    # Zeros past the column's decimals: MariaDB drops them with a note, which refuses nothing.
    rows.append((9_999, 1, "zeros", Decimal("1.123456789000000"), *([None] * 7)))
    # Non-zero digits past them would be rounded: refused, never stored rounded.
    bad[len(rows)] = (10_000, 1, "rounded", Decimal("1.123456789012"), *([None] * 7))
    rows.append(bad[len(rows)])

    result = conn.write(Batch.of(SCHEMA.names, rows), _plan())
    conn.commit()

    assert [r.row for r in result.rejected] == list(bad.values())
    reasons = [r.reason for r in result.rejected]
    assert "Data truncated" in reasons[0] or "too long" in reasons[0]
    assert "Duplicate entry" in reasons[1]
    assert "many" in reasons[2]
    assert reasons[3] == (
        "column 'd': 1.123456789012 has more decimals than decimal(38,10) keeps: "
        "it would be rounded"
    )
    assert result.rows_written == len(rows) - len(bad)
    stored = mysql.query("SELECT count(*), max(d) FROM fast WHERE id >= 9999")
    assert stored == [(1, Decimal("1.1234567890"))]


def test_truncate_insert_goes_through_load_data_inside_the_transaction(mysql: Any) -> None:
    conn = mysql.connector()
    conn.prepare_target(_plan())
    conn.write(Batch.of(SCHEMA.names, _rows(5)), _plan())
    conn.commit()
    plan = _plan(WriteMode.TRUNCATE_INSERT)
    conn.prepare_target(plan)
    conn.write(Batch.of(SCHEMA.names, _rows(3)), plan)
    assert mysql.query("SELECT count(*) FROM fast") == [(5,)]  # old rows until commit
    conn.commit()
    assert mysql.query("SELECT count(*) FROM fast") == [(3,)]


def test_an_abandoned_read_frees_the_server_session_at_once(mysql: Any) -> None:
    conn = mysql.connector()
    conn.prepare_target(_plan())
    conn.write(Batch.of(SCHEMA.names, _rows(3_000)), _plan())
    conn.commit()
    for _ in range(3):
        stream = conn.read(ReadPlan("fast", batch_rows=10))
        assert len(next(iter(stream))) == 10
        stream.close()  # type: ignore[attr-defined]
    # The abandoned query's transaction would hold a metadata lock: DROP would wait for it.
    mysql.execute("SET SESSION lock_wait_timeout = 5")
    mysql.execute("DROP TABLE fast")


def test_the_read_ahead_holds_at_most_its_bytes_of_rows_whatever_the_rows(
    mysql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wide rows (about 2 KiB each in memory): a bound in chunks or rows would let the queue
    # hold far more than its bytes.
    schema = TableSchema(
        "wide",
        (
            Column("id", LogicalType.BIGINT, nullable=False, is_primary_key=True),
            Column("t", LogicalType.TEXT),
        ),
        ("id",),
    )
    plan = WritePlan(
        "wide", columns=schema.names, write_mode=WriteMode.INSERT, source_schema=schema
    )
    conn = mysql.connector()
    conn.prepare_target(plan)
    rows = [(i, f"{i:04d}" + "x" * 1996) for i in range(3_000)]
    conn.write(Batch.of(schema.names, rows), plan)
    conn.commit()
    monkeypatch.setattr(reader, "CHUNK_BYTES", 16 << 10)
    monkeypatch.setattr(reader, "AHEAD_BYTES", 96 << 10)  # above the first, unsized chunk

    batches = conn.read(ReadPlan("wide", batch_rows=100, batch_seconds=60))
    first = next(iter(batches))
    stream = conn._prefetching
    assert isinstance(stream, reader.PrefetchStream)
    clock.sleep(0.5)  # a slow consumer: the producer runs ahead as far as it may
    back = [*first.rows, *(r for b in batches for r in b.rows)]

    assert back == rows
    assert reader.rows_memory(rows[:1]) > 2_000
    assert (96 - 16) << 10 < stream.peak_queued_bytes <= 96 << 10


def test_load_data_chunks_are_sized_in_bytes_and_sent_without_joining_them_all() -> None:
    rows = [(i, "x" * 500) for i in range(2_000)]  # about 510 bytes a line
    chunks = list(encode_rows(rows))
    assert b"".join(chunks) == b"".join(f"{i}\t{'x' * 500}\n".encode() for i in range(2_000))
    assert len(chunks[0]) <= infile.FIRST_CHUNK_ROWS * 520
    assert max(len(c) for c in chunks) <= infile.CHUNK_BYTES + 520

    class Conn:
        packets: list[bytes] = []

        def write_packet(self, payload: bytes | memoryview) -> None:
            self.packets.append(bytes(payload))

    small = [b"a" * 1000] * 100  # joined up to SEND_BYTES
    large = [b"b" * (infile.PACKET_BYTES * 2 + 10)]  # split into packets of PACKET_BYTES
    conn = Conn()
    infile._send(conn, [*small, *large, b"c"])  # type: ignore[arg-type]
    assert b"".join(conn.packets) == b"".join([*small, *large, b"c"])
    assert max(len(p) for p in conn.packets) <= infile.PACKET_BYTES
    first_joined = conn.packets[0]
    assert infile.SEND_BYTES <= len(first_joined) < infile.SEND_BYTES + 1000


def test_the_infile_connection_serves_only_the_name_it_registered() -> None:
    conn = object.__new__(InfileConnection)
    conn._infile = (b"openfdi-1234.tsv", [b"1\n"])
    assert conn.take_infile(b"/etc/passwd") is None  # what a hostile server would ask for
    assert conn.take_infile(b"openfdi-1234.tsv") is None  # and the registration is gone
    conn._infile = (b"openfdi-1234.tsv", [b"1\n"])
    assert conn.take_infile(b"openfdi-1234.tsv") == [b"1\n"]


def test_rows_encode_as_load_data_text() -> None:
    rows = [
        (1, "a\tb\\c\nd", None, True, 1.5, Decimal("1E+2"), b"\x00\xff"),
        (2, "\\N", "", False, 5e-324, Decimal("-0.10"), None),
        (3, 7, "plain", None, None, None, b""),  # a mixed column (int among text)
    ]
    text = b"".join(encode_rows(rows, binary=[6])).decode()
    assert text.split("\n") == [
        "1\ta\\tb\\\\c\\nd\t\\N\t1\t1.5\t1E+2\t00ff",
        "2\t\\\\N\t\t0\t5e-324\t-0.10\t\\N",
        "3\t7\tplain\t\\N\t\\N\t\\N\t",
        "",
    ]
    aware = datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    stamps = b"".join(encode_rows([(aware, time(1, 2)), (None, time(3, 4, 5, 6))])).decode()
    assert stamps == "2020-01-02 03:04:05.000006\t01:02:00\n\\N\t03:04:05.000006\n"


def test_load_data_names_binary_columns_through_unhex() -> None:
    sql = infile.load_data_sql("f.tsv", "`t`", ["`a`", "`b`"], binary=[1])
    assert sql.startswith("LOAD DATA LOCAL INFILE 'f.tsv' INTO TABLE `t` CHARACTER SET utf8mb4")
    assert sql.endswith("(`a`, @openfdi_1) SET `b` = UNHEX(@openfdi_1)")


def test_every_asyncmy_exception_class_is_mapped() -> None:
    classes = _driver_classes(asyncmy.errors, asyncmy.errors.MySQLError)
    assert classes
    for cls in classes:
        mapped = mysql_errors.translate(cls(1064, "boom"), cancelled=False)
        assert isinstance(mapped, TransientConnectorError | TerminalConnectorError), cls
    lost = mysql_errors.translate(asyncmy.errors.OperationalError(2013, "lost"), cancelled=False)
    assert isinstance(lost, TransientConnectorError)
    assert mysql_errors.is_row_error(asyncmy.errors.DataError(1406, "too long"))
