"""JSON text with exact numbers (layer: connectors): a `Decimal` is written as its own digits, a
float as the shortest text that reads back to the same double. `json` cannot do that by itself
(a Decimal would go through float, or be quoted as a string), hence this small writer, shared by
every end that writes JSON: message payloads' json and text columns, HTTP API targets.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Iterable
from typing import Any

from openfdi.connectors._values import format_interval

__all__ = [
    "ENCODE_STR",
    "exact_json",
    "finite_double",
    "lone_surrogate",
    "printable",
    "unencodable_text",
]

ENCODE_STR = json.JSONEncoder(ensure_ascii=False).encode
"""A str as a JSON string literal."""


def _number_text(value: Any, as_string: bool) -> str:
    if isinstance(value, decimal.Decimal):
        text = str(value)
        return ENCODE_STR(text) if as_string or not value.is_finite() else text
    if isinstance(value, float):
        text = repr(value)  # the shortest text that reads back to the same double
        return text if math.isfinite(value) else ENCODE_STR(text)
    return str(int(value))


def exact_json(value: Any, *, decimals_as_strings: bool = False) -> str:
    """`value` as JSON text, numbers exact: Decimals keep their digits, floats their shortest
    round-trip text; times as ISO-8601, intervals as MySQL TIME text, bytes as hex."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return ENCODE_STR(value)
    if isinstance(value, int | float | decimal.Decimal):
        return _number_text(value, decimals_as_strings)
    if isinstance(value, dict):
        items = (
            f"{ENCODE_STR(str(k))}:{exact_json(v, decimals_as_strings=decimals_as_strings)}"
            for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        inner = (exact_json(v, decimals_as_strings=decimals_as_strings) for v in value)
        return "[" + ",".join(inner) + "]"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return ENCODE_STR(value.isoformat())
    if isinstance(value, dt.timedelta):
        return ENCODE_STR(format_interval(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return ENCODE_STR(bytes(value).hex())
    return ENCODE_STR(str(value))


def lone_surrogate(values: Iterable[Any]) -> tuple[int, str] | None:
    """The first text among `values` that UTF-8 cannot encode, as (its index, why), or None.

    Such text holds a lone surrogate (U+D800 to U+DFFF): JSON's `"\\ud800"` escape makes one,
    and so does a byte that is not valid in the file's encoding read with `surrogateescape`.
    No target can store it (PostgreSQL, MySQL, SQLite and files all take UTF-8), and the
    target's encoder fails its whole batch, so a source refuses the record instead."""
    for i, value in enumerate(values):
        if type(value) is str and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                code = ord(value[exc.start])
                return i, f"U+{code:04X} at character {exc.start} is a lone surrogate, not text"
    return None


def unencodable_text(exc: UnicodeEncodeError) -> str:
    """Why a row a driver or encoder refused with UnicodeEncodeError cannot be written: its text
    holds a lone surrogate, which UTF-8 cannot encode (named by code point, as the reason is
    stored and shown)."""
    code = ord(exc.object[exc.start]) if isinstance(exc.object, str) else 0
    return f"a text value holds U+{code:04X}, a lone surrogate, which UTF-8 cannot encode"


def printable(text: str) -> str:
    """`text` with any lone surrogate written as a `\\udXXX` escape: safe to store and show."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_INFINITE = frozenset({"inf", "infinity"})


def finite_double(value: Any, double: float) -> float:
    """`double`, the double `value` converted to, unless `value` is a finite number too large for
    one (`1e400`): that became Infinity, silently, in every target. ValueError then, so the
    record is refused. NaN and Infinity written as such stay what they are."""
    if math.isinf(double) and not isinstance(value, float):
        text = str(value).strip().lower().lstrip("+-")
        if text not in _INFINITE:
            raise ValueError(f"{str(value)[:40]} is out of range for a double")
    return double
