"""openfdi's binlog decoder (connectors/cdc/my_binlog.py) on events built here byte by byte:
what a server sends that it must refuse says which setting to change, a damaged or truncated
event is a TerminalConnectorError (never another exception), a table map is decoded once per
shape, and the state a stream keeps (file, GTID, table ids) follows the events.

Every value type is proven against a real MariaDB elsewhere (test_mariadb_types.py end to
end; test_binlog_decoder_diff.py beside python-mysql-replication and MariaDB's own SELECT)."""

from __future__ import annotations

import struct
import zlib
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openfdi.connectors.cdc import my_binlog
from openfdi.connectors.cdc.my_binlog import BinlogDecoder, Gtid, RowChange, TxnCommit
from openfdi.connectors.errors import TerminalConnectorError
from openfdi.domain.cdc import TableName

TABLE_ID = 77


def lenenc(value: int) -> bytes:
    if value < 0xFB:
        return bytes([value])
    if value < 1 << 16:
        return b"\xfc" + struct.pack("<H", value)
    return b"\xfe" + struct.pack("<Q", value)


def event(kind: int, body: bytes, *, checksum: bool = False, log_pos: int = 1000) -> bytes:
    """The OK byte, the common header, the body (and its CRC32 when `checksum`)."""
    size = 19 + len(body) + (4 if checksum else 0)
    raw = struct.pack("<IBIIIH", 1_700_000_000, kind, 7, size, log_pos, 0) + body
    if checksum:
        raw += struct.pack("<I", zlib.crc32(raw))
    return b"\x00" + raw


def table_map(
    schema: str = "s",
    table: str = "t",
    *,
    names: tuple[str, ...] | None = ("id", "v"),
    table_id: int = TABLE_ID,
) -> bytes:
    """A table map of (id int unsigned, v varchar(20) utf8mb4), with its optional metadata:
    signedness, charset, and (unless `names` is None) the column names."""
    types = bytes([my_binlog.LONG, my_binlog.VARCHAR])
    metadata = struct.pack("<H", 80)  # v: 80 bytes at most
    optional = b"\x01" + lenenc(1) + b"\x80"  # SIGNEDNESS: id unsigned
    optional += b"\x02" + lenenc(1) + lenenc(45)  # DEFAULT_CHARSET: utf8mb4_general_ci
    if names is not None:
        listed = b"".join(lenenc(len(n)) + n.encode() for n in names)
        optional += b"\x04" + lenenc(len(listed)) + listed
    body = table_id.to_bytes(6, "little") + b"\x00\x00"
    body += bytes([len(schema)]) + schema.encode() + b"\x00"
    body += bytes([len(table)]) + table.encode() + b"\x00"
    body += lenenc(2) + types + lenenc(len(metadata)) + metadata + b"\x02" + optional
    return event(my_binlog.TABLE_MAP, body)


def row_image(id_: int, v: str | None) -> bytes:
    if v is None:
        return b"\x02" + struct.pack("<I", id_)
    text = v.encode()
    return b"\x00" + struct.pack("<I", id_) + bytes([len(text)]) + text


def rows(kind: int, *images: bytes, present: bytes = b"\x03", table_id: int = TABLE_ID) -> bytes:
    body = table_id.to_bytes(6, "little") + b"\x01\x00" + lenenc(2) + present
    if kind in (my_binlog.UPDATE_V1, my_binlog.UPDATE_V2):
        body += present
    return event(kind, body + b"".join(images))


def xid(log_pos: int) -> bytes:
    return event(my_binlog.XID, struct.pack("<Q", 42), log_pos=log_pos)


def query(text: str, schema: str = "s", log_pos: int = 2000) -> bytes:
    post = struct.pack("<IIBHH", 1, 0, len(schema), 0, 0)
    return event(my_binlog.QUERY, post + schema.encode() + b"\x00" + text.encode(), log_pos=log_pos)


def decoder(*schemas: str) -> BinlogDecoder:
    return BinlogDecoder(schemas or ("s",), "binlog.000003", checksum=False)


T = TableName("s", "t")


# --- what it decodes ---------------------------------------------------------------------------


def test_a_transaction_is_its_changes_then_its_commit_at_the_next_position() -> None:
    d = decoder()
    gtid = struct.pack("<QIB", 9, 0, 0) + b"\x00" * 6
    assert d.feed(event(my_binlog.MARIADB_GTID, gtid)) == []
    assert d.feed(table_map()) == []
    assert d.feed(rows(my_binlog.WRITE_V1, row_image(1, "ü 𝄞"), row_image(2, None))) == [
        RowChange("INSERT", T, ("id", "v"), (1, "ü 𝄞"), None),
        RowChange("INSERT", T, ("id", "v"), (2, None), None),
    ]
    assert d.feed(rows(my_binlog.UPDATE_V1, row_image(1, "a"), row_image(1, "b"))) == [
        RowChange("UPDATE", T, ("id", "v"), (1, "b"), (1, "a"))
    ]
    assert d.feed(rows(my_binlog.DELETE_V1, row_image(4_294_967_295, "x"))) == [
        RowChange("DELETE", T, ("id", "v"), None, (4_294_967_295, "x"))
    ]
    assert d.feed(xid(5000)) == [
        TxnCommit(my_binlog.encode_position("binlog.000003", 5000), 1_700_000_000_000_000,
                  Gtid(0, 7, 9))
    ]  # fmt: skip
    assert d.position == (3 << 32) | 5000


def test_rows_events_v2_skip_their_extra_data() -> None:
    d = decoder()
    d.feed(table_map())
    body = TABLE_ID.to_bytes(6, "little") + b"\x01\x00" + struct.pack("<H", 5) + b"abc"
    body += lenenc(2) + b"\x03" + row_image(7, "v2")
    assert d.feed(event(my_binlog.WRITE_V2, body)) == [
        RowChange("INSERT", T, ("id", "v"), (7, "v2"), None)
    ]


def test_tables_of_other_schemas_and_their_rows_are_skipped() -> None:
    d = decoder("other")
    d.feed(table_map())
    assert d.feed(rows(my_binlog.WRITE_V1, row_image(1, "a"))) == []


def test_a_commit_statement_ends_a_transaction_and_truncate_is_a_change_of_its_schema() -> None:
    d = decoder()
    assert d.feed(query("COMMIT", log_pos=3000)) == [
        TxnCommit((3 << 32) | 3000, 1_700_000_000_000_000, None)
    ]
    assert d.feed(query("TRUNCATE TABLE `t`")) == [RowChange("TRUNCATE", T, (), None, None)]
    assert d.feed(query("truncate other.t")) == []
    assert d.feed(query("ALTER TABLE t ADD c int")) == []


def test_a_rotate_names_the_next_file_and_forgets_the_table_ids() -> None:
    d = decoder()
    d.feed(table_map())
    d.feed(event(my_binlog.ROTATE, struct.pack("<Q", 4) + b"binlog.000004"))
    assert d.log_file == "binlog.000004"
    with pytest.raises(TerminalConnectorError, match="table id 77"):
        d.feed(rows(my_binlog.WRITE_V1, row_image(1, "a")))
    d.feed(xid(120))
    assert d.position == (4 << 32) | 120


def test_a_table_map_is_decoded_once_per_shape() -> None:
    d = decoder()
    d.feed(table_map(table_id=1))
    d.feed(table_map(table_id=2))
    assert d._tables[1] is d._tables[2]
    d.feed(table_map(table_id=3, names=("id", "renamed")))
    assert d._tables[3] is not d._tables[1]
    assert d.feed(rows(my_binlog.WRITE_V1, row_image(1, "a"), table_id=3))[0].columns == (
        "id",
        "renamed",
    )


def test_checksums_are_verified() -> None:
    d = BinlogDecoder(("s",), "binlog.000003", checksum=True)
    good = event(my_binlog.XID, struct.pack("<Q", 1), checksum=True, log_pos=77)
    assert d.feed(good) == [TxnCommit((3 << 32) | 77, 1_700_000_000_000_000, None)]
    bad = good[:-5] + bytes([good[-5] ^ 1]) + good[-4:]
    with pytest.raises(TerminalConnectorError, match="failed its checksum"):
        d.feed(bad)


# --- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("precision", "scale", "stored", "value"),
    [
        # MySQL's examples (strings/decimal.cc, decimal2bin): 1234567890.1234 as DECIMAL(14,4)
        (14, 4, "810DFB38D204D2", "1234567890.1234"),
        (14, 4, "7EF204C72DFB2D", "-1234567890.1234"),
        (5, 2, "807B2D", "123.45"),
        (10, 0, "8000000000", "0"),
        (4, 4, "8000", "0.0000"),
        (4, 2, "7EFE", "-1.01"),
    ],
)
def test_decimals_keep_their_digits(precision: int, scale: int, stored: str, value: str) -> None:
    read = my_binlog._decimal(precision, scale)
    raw = bytes.fromhex(stored)
    assert read(raw, 0) == (Decimal(value), len(raw))
    assert str(read(raw, 0)[0]) == value


def test_times_with_fractions_negate_as_one_number() -> None:
    read = my_binlog._time2(6)
    # -00:00:00.000001 is the bias minus one: 0x7FFFFFFFFFFF.
    assert str(read(bytes.fromhex("7fffffffffff"), 0)[0]) == "-1 day, 23:59:59.999999"
    assert read(bytes.fromhex("800000000001"), 0)[0].total_seconds() == pytest.approx(1e-6)


def test_zero_and_partial_dates_are_none() -> None:
    assert my_binlog._date(b"\x00\x00\x00", 0) == (None, 3)
    assert my_binlog._datetime2(0)(bytes.fromhex("8000000000"), 0) == (None, 5)
    assert my_binlog._timestamp2(3)(bytes(6), 0) == (None, 6)


# --- what it refuses -----------------------------------------------------------------------------


def test_a_minimal_row_image_is_refused_naming_the_setting() -> None:
    d = decoder()
    d.feed(table_map())
    with pytest.raises(TerminalConnectorError, match="binlog_row_image = FULL"):
        d.feed(rows(my_binlog.WRITE_V1, b"\x00" + struct.pack("<I", 1), present=b"\x01"))


def test_a_table_map_without_names_is_refused_naming_the_setting() -> None:
    with pytest.raises(TerminalConnectorError, match="binlog_row_metadata = FULL"):
        decoder().feed(table_map(names=None))


@pytest.mark.parametrize(
    ("kind", "setting"),
    [
        (167, "log_bin_compress = OFF"),
        (my_binlog.MARIADB_START_ENCRYPTION, "encrypt_binlog"),
        (my_binlog.PARTIAL_UPDATE_ROWS, "binlog_row_value_options"),
    ],
)
def test_logs_it_cannot_read_exactly_are_refused_naming_the_setting(
    kind: int, setting: str
) -> None:
    with pytest.raises(TerminalConnectorError, match=setting):
        decoder().feed(event(kind, b"\x00" * 12))


def test_a_column_type_it_does_not_know_is_refused_naming_the_column() -> None:
    d = decoder()
    good = table_map()
    at = good.index(bytes([my_binlog.LONG, my_binlog.VARCHAR]))
    unknown = good[:at] + bytes([20, my_binlog.VARCHAR]) + good[at + 2 :]  # 20: MySQL's typed array
    with pytest.raises(TerminalConnectorError, match=r"column id of s\.t .*type code 20"):
        d.feed(unknown)


# --- hostile bytes -------------------------------------------------------------------------------

_STREAM = [
    table_map(),
    rows(my_binlog.WRITE_V1, row_image(1, "abc"), row_image(2, None)),
    rows(my_binlog.UPDATE_V1, row_image(1, "abc"), row_image(1, "é")),
    query("TRUNCATE t"),
    xid(4000),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(_STREAM) - 1),
    cut=st.integers(0, 200),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=4),
)
def test_damaged_events_give_a_terminal_error_or_items_never_another_exception(
    which: int, cut: int, flips: list[tuple[int, int]]
) -> None:
    d = decoder()
    for packet in _STREAM[:which]:
        d.feed(packet)
    damaged = bytearray(_STREAM[which])
    for at, mask in flips:
        if 1 <= at < len(damaged):
            damaged[at] ^= mask
    damaged = damaged[: max(1, len(damaged) - cut)] if cut else damaged
    try:
        out: Any = d.feed(bytes(damaged))
    except TerminalConnectorError:
        return
    assert isinstance(out, list)
