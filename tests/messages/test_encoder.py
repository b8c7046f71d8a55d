"""A message target's payloads: every value type as JSON (decimals as strings, times ISO-8601,
intervals as MySQL TIME text, binary as hex), subclasses like their base type, nested paths and
json columns, `meta` fields left out; no broker needed."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from openfdi.connectors._messages import parse_options

ROW: tuple[Any, ...] = (
    12345678901234567890,
    "ünï 🎉",
    Decimal("12345678901234567890.123456789"),
    1.5,
    True,
    None,
    dt.datetime(2026, 12, 5, 23, 59, 58, 123456),
    dt.datetime(2026, 12, 5, 23, 59, 58, tzinfo=dt.UTC),
    dt.date(2026, 12, 5),
    dt.time(23, 59, 58, 5),
    dt.timedelta(hours=-838, minutes=-59, seconds=-59),
    b"\x00\xff",
    bytearray(b"\x01"),
    memoryview(b"\x02"),
)
EXPECTED = {
    "big": 12345678901234567890,
    "text": "ünï 🎉",
    "dec": "12345678901234567890.123456789",
    "dbl": 1.5,
    "flag": True,
    "nothing": None,
    "ts": "2026-12-05T23:59:58.123456",
    "tstz": "2026-12-05T23:59:58+00:00",
    "day": "2026-12-05",
    "clock": "23:59:58.000005",
    "span": "-838:59:59",
    "bin": "00ff",
    "ba": "01",
    "mv": "02",
}
COLUMNS = list(EXPECTED)


class Stamp(dt.datetime):
    """A datetime subclass (as some drivers return): encoded as its base type."""


class Amount(Decimal):
    pass


def test_every_value_type_becomes_exact_json() -> None:
    encode = parse_options(None).encoder(COLUMNS)
    assert json.loads(encode(ROW)) == EXPECTED


def test_subclasses_are_encoded_like_their_base_type() -> None:
    encode = parse_options(None).encoder(["a", "b", "c"])
    row = (Stamp(2026, 1, 2, 3, 4, 5), Amount("1.10"), True)
    assert json.loads(encode(row)) == {"a": "2026-01-02T03:04:05", "b": "1.10", "c": True}


def test_nested_paths_and_json_columns_build_one_document() -> None:
    fields = [
        {"name": "id", "path": "$.order.id", "type": "bigint"},
        {"name": "amount", "path": "$.order.amount", "type": "decimal"},
        {"name": "at", "path": "$.at", "type": "timestamp"},
        {"name": "tags", "path": "$.meta.tags", "type": "json"},
        {"name": "rk", "meta": "routing_key", "type": "varchar"},
    ]
    encode = parse_options({"fields": fields}).encoder(["id", "amount", "at", "tags", "rk"])
    row = (7, Decimal("0.10"), dt.datetime(2026, 1, 1), '["a",{"b":1}]', "ignored")
    assert json.loads(encode(row)) == {
        "order": {"id": 7, "amount": "0.10"},
        "at": "2026-01-01T00:00:00",
        "meta": {"tags": ["a", {"b": 1}]},
    }  # a `meta` field is the system's to set: not sent


def test_a_sub_document_read_into_a_json_or_text_column_keeps_every_digit() -> None:
    """Read side: a json column gets the sub-document with its numbers as sent (they went
    through float: 0.1000000000000000055511151231257827 became 0.1), and a text column gets
    numbers as numbers (they were quoted as strings)."""
    fields = [
        {"name": "doc", "path": "$.doc", "type": "json"},
        {"name": "as_text", "path": "$.doc", "type": "text"},
    ]
    decode = parse_options({"fields": fields}).decoder()
    payload = b'{"doc": {"p": 0.1000000000000000055511151231257827, "n": [1, 2.50], "s": "x"}}'
    doc, as_text = decode(payload, {})
    exact = '{"p":0.1000000000000000055511151231257827,"n":[1,2.50],"s":"x"}'
    assert doc == exact
    assert as_text == exact
    assert json.loads(doc, parse_float=Decimal)["p"] == Decimal(
        "0.1000000000000000055511151231257827"
    )
