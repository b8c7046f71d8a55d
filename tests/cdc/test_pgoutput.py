"""The pgoutput decoder on hand-built messages (the format of the PostgreSQL manual's "Logical
Replication Message Formats"), with no server: every message kind and column kind."""

from __future__ import annotations

import struct

import pytest

from openfdi.connectors.cdc.pgoutput import (
    PG_EPOCH_US,
    UNCHANGED,
    Begin,
    Change,
    Commit,
    Decoder,
    Relation,
    Truncate,
    lsn_text,
    parse_lsn,
)
from openfdi.connectors.errors import TerminalConnectorError


def _relation() -> bytes:
    body = struct.pack(">I", 16384) + b"public\0orders\0" + b"d" + struct.pack(">h", 3)
    for flags, name, oid in ((1, b"id", 23), (0, b"note", 25), (0, b"blob", 17)):
        body += struct.pack(">b", flags) + name + b"\0" + struct.pack(">Ii", oid, -1)
    return b"R" + body


def _tuple(*values: object) -> bytes:
    out = struct.pack(">h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v is UNCHANGED:
            out += b"u"
        else:
            data = str(v).encode()
            out += b"t" + struct.pack(">i", len(data)) + data
    return out


def test_every_message_kind_decodes() -> None:
    d = Decoder()
    begin = d.decode(b"B" + struct.pack(">QqI", 0x16_B374D848, 1_000_000, 42))
    assert begin == Begin(0x16_B374D848, 1_000_000 + PG_EPOCH_US, 42)
    relation = d.decode(_relation())
    assert relation == Relation(16384, "public", "orders", ("id", "note", "blob"), ("id",),
                                (23, 25, 17), (-1, -1, -1))  # fmt: skip
    assert d.relations[16384] is relation
    insert = d.decode(b"I" + struct.pack(">I", 16384) + b"N" + _tuple(1, "héllo", None))
    assert insert == Change("INSERT", 16384, ("1", "héllo", None))
    update = d.decode(
        b"U" + struct.pack(">I", 16384) + b"K" + _tuple(1, None, None)
        + b"N" + _tuple(2, "x", UNCHANGED)
    )  # fmt: skip
    assert update == Change("UPDATE", 16384, ("2", "x", UNCHANGED), ("1", None, None))
    plain = d.decode(b"U" + struct.pack(">I", 16384) + b"N" + _tuple(2, "y", ""))
    assert plain == Change("UPDATE", 16384, ("2", "y", ""), None)
    delete = d.decode(b"D" + struct.pack(">I", 16384) + b"K" + _tuple(2, None, None))
    assert delete == Change("DELETE", 16384, None, ("2", None, None))
    truncate = d.decode(b"T" + struct.pack(">IbII", 2, 0, 16384, 16390))
    assert truncate == Truncate((16384, 16390))
    commit = d.decode(b"C" + struct.pack(">bQQq", 0, 100, 180, 5))
    assert commit == Commit(100, 180, 5 + PG_EPOCH_US)
    assert d.decode(b"Y" + struct.pack(">I", 1) + b"public\0mytype\0") is None


def test_unknown_kinds_are_refused_with_a_reason() -> None:
    with pytest.raises(TerminalConnectorError, match="unknown pgoutput message"):
        Decoder().decode(b"Z123")
    with pytest.raises(TerminalConnectorError, match="column kind 'b'"):
        Decoder().decode(b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"b")


def test_lsn_text_round_trips() -> None:
    assert lsn_text(0x16_B374D848) == "16/B374D848"
    assert parse_lsn("16/B374D848") == 0x16_B374D848
    assert parse_lsn(lsn_text(0)) == 0
