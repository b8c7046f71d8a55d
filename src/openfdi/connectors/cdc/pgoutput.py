"""A decoder of PostgreSQL's built-in `pgoutput` logical replication messages (protocol 1).

Hand-written on purpose: the Python decoders on PyPI are unmaintained (pypgoutput 0.0.3, 2022)
or a first release (pgoutput-decoder 0.1.0); the format is small, fixed and documented
("Logical Replication Message Formats" in the PostgreSQL manual), and decoding it here keeps
values as the server's text form, which the apply step hands back to PostgreSQL unchanged
(numeric, timestamptz, json, bytea exact).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from openfdi.connectors.errors import TerminalConnectorError

UNCHANGED = object()
"""A TOASTed value the update did not change: pgoutput does not send it, the target keeps it."""

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">bQQq")
PG_EPOCH_US = 946_684_800_000_000
"""PostgreSQL timestamps count microseconds from 2000-01-01; Unix time from 1970."""


@dataclass(frozen=True, slots=True)
class Relation:
    relid: int
    schema: str
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    type_oids: tuple[int, ...]
    type_mods: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_time_us: int
    """Unix microseconds."""
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_time_us: int


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "INSERT" | "UPDATE" | "DELETE" (and "TRUNCATE", made by the apply step)
    relid: int
    new: tuple[object, ...] | None
    """Column values as text, None for NULL, UNCHANGED for a TOASTed value not sent."""
    old: tuple[object, ...] | None = None
    """The old key (or whole old row with REPLICA IDENTITY FULL), when the server sent it."""


@dataclass(frozen=True, slots=True)
class Truncate:
    relids: tuple[int, ...]


@dataclass
class Decoder:
    """Turns the payloads of one replication stream into messages, keeping its relations."""

    relations: dict[int, Relation] = field(default_factory=dict)

    def decode(self, payload: bytes) -> Begin | Commit | Change | Relation | Truncate | None:
        kind = payload[:1]
        body = memoryview(payload)[1:]
        if kind == b"B":
            lsn, ts, xid = _BEGIN.unpack_from(body)
            return Begin(lsn, ts + PG_EPOCH_US, xid)
        if kind == b"C":
            _flags, commit_lsn, end_lsn, ts = _COMMIT.unpack_from(body)
            return Commit(commit_lsn, end_lsn, ts + PG_EPOCH_US)
        if kind == b"R":
            relation = _relation(body)
            self.relations[relation.relid] = relation
            return relation
        if kind == b"I":
            relid = _U32.unpack_from(body)[0]
            values, _ = _tuple(body, 5)  # 4 bytes relid, then 'N'
            return Change("INSERT", relid, values)
        if kind == b"U":
            relid = _U32.unpack_from(body)[0]
            pos, old = 4, None
            if bytes(body[pos : pos + 1]) in (b"K", b"O"):
                old, pos = _tuple(body, pos + 1)
            new, _ = _tuple(body, pos + 1)  # skip 'N'
            return Change("UPDATE", relid, new, old)
        if kind == b"D":
            relid = _U32.unpack_from(body)[0]
            old, _ = _tuple(body, 5)  # 'K' or 'O'
            return Change("DELETE", relid, None, old)
        if kind == b"T":
            count = _U32.unpack_from(body)[0]
            relids = struct.unpack_from(f">{count}I", body, 5)
            return Truncate(tuple(relids))
        if kind in (b"Y", b"O", b"M"):  # types, origins, logical messages: nothing to apply
            return None
        raise TerminalConnectorError(f"unknown pgoutput message {bytes(kind)!r}")


def _cstring(body: memoryview, pos: int) -> tuple[str, int]:
    end = bytes(body[pos:]).index(b"\0") + pos
    return bytes(body[pos:end]).decode(), end + 1


def _relation(body: memoryview) -> Relation:
    relid = _U32.unpack_from(body)[0]
    schema, pos = _cstring(body, 4)
    name, pos = _cstring(body, pos)
    pos += 1  # replica identity setting
    ncols = _I16.unpack_from(body, pos)[0]
    pos += 2
    columns: list[str] = []
    key: list[str] = []
    oids: list[int] = []
    mods: list[int] = []
    for _ in range(ncols):
        flags = body[pos]
        column, pos = _cstring(body, pos + 1)
        oids.append(_U32.unpack_from(body, pos)[0])
        mods.append(_I32.unpack_from(body, pos + 4)[0])
        pos += 8
        columns.append(column)
        if flags & 1:
            key.append(column)
    return Relation(relid, schema, name, tuple(columns), tuple(key), tuple(oids), tuple(mods))


def _tuple(body: memoryview, pos: int) -> tuple[tuple[object, ...], int]:
    ncols = _I16.unpack_from(body, pos)[0]
    pos += 2
    values: list[object] = []
    for _ in range(ncols):
        kind = body[pos]
        pos += 1
        if kind == 0x74:  # 't': text
            size = _I32.unpack_from(body, pos)[0]
            pos += 4
            values.append(bytes(body[pos : pos + size]).decode())
            pos += size
        elif kind == 0x6E:  # 'n': NULL
            values.append(None)
        elif kind == 0x75:  # 'u': unchanged TOASTed value
            values.append(UNCHANGED)
        else:
            raise TerminalConnectorError(f"unknown pgoutput column kind {chr(kind)!r}")
    return tuple(values), pos


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL prints it (`16/B374D848`)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)
