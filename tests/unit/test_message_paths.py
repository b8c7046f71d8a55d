"""JSON paths of a message end's fields (connectors/_messages.py): keys, indexes, quoted keys."""

from __future__ import annotations

from openfdi.connectors._messages import parse_options


def test_a_path_walks_keys_indexes_and_quoted_keys() -> None:
    fields = [
        {"name": "sku", "path": "$.items[1].sku", "type": "text"},
        {"name": "odd", "path": "$['a b'][0]", "type": "bigint"},
        {"name": "gone", "path": "$.items[5].sku", "type": "text"},
    ]
    decode = parse_options({"fields": fields}).decoder()
    payload = b'{"items": [{"sku": "x"}, {"sku": "y"}], "a b": [7]}'
    assert decode(payload, {}) == ("y", 7, None)
