"""JSON paths of a message end's fields (connectors/_messages.py): keys, indexes, quoted keys."""

from __future__ import annotations

from decimal import Decimal

import pytest

from openfdi.connectors._messages import DecodeError, parse_options


def test_a_path_walks_keys_indexes_and_quoted_keys() -> None:
    fields = [
        {"name": "sku", "path": "$.items[1].sku", "type": "text"},
        {"name": "odd", "path": "$['a b'][0]", "type": "bigint"},
        {"name": "gone", "path": "$.items[5].sku", "type": "text"},
    ]
    decode = parse_options({"fields": fields}).decoder()
    payload = b'{"items": [{"sku": "x"}, {"sku": "y"}], "a b": [7]}'
    assert decode(payload, {}) == ("y", 7, None)


def test_a_field_that_does_not_convert_is_named_and_the_others_decode_exactly() -> None:
    fields = [
        {"name": "id", "path": "$.order.id", "type": "bigint"},
        {"name": "amount", "path": "$.amount", "type": "decimal"},
        {"name": "note", "path": "$.note", "type": "text"},
        {"name": "rk", "meta": "routing_key", "type": "varchar"},
    ]
    decode = parse_options({"fields": fields}).decoder()
    good = b'{"order": {"id": 12345678901234567890}, "amount": "0.10", "note": null}'
    assert decode(good, {"routing_key": "k"}) == (
        12345678901234567890,
        Decimal("0.10"),
        None,
        "k",
    )
    with pytest.raises(DecodeError, match="field amount"):
        decode(b'{"order": {"id": 1}, "amount": "ten"}', {})
    with pytest.raises(DecodeError, match="field id"):
        decode(b'{"order": {"id": "x1"}, "amount": "1"}', {})
