"""Text no metadata database can store is refused where it enters: in the request models.

JSON can carry NUL (`\\u0000`) and a lone surrogate (`\\ud800`) in any string. PostgreSQL refuses
NUL in text, and no UTF-8 encoder (SQLite's binding, the secret box, a file path) takes a lone
surrogate: each of these once surfaced as a 500 deep inside a handler. Checking every string of a
request body here, with the field's dotted path in the message, turns them into a 400 naming the
field before anything is stored or opened.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# Decoded JSON holds a surrogate code point only when it was lone: a valid pair decodes to one
# character outside the BMP.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

MAX_DEPTH = 64
"""Deepest nesting of objects and arrays a request field may have (FDI bodies need about 4)."""


def _strings(value: Any, path: str) -> Iterator[tuple[str, str | None]]:
    """Yield (path, text) for every string in `value`; text is None where it is nested too deep.

    Iterative, so hostile nesting cannot exhaust the stack.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            yield where, None
            return
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, inner in item.items():
                yield f"{where}.{key}", str(key)
                stack.append((inner, f"{where}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((inner, f"{where}[{i}]", depth + 1) for i, inner in enumerate(item))


def problem(value: Any, field: str) -> str | None:
    """Why `value` (a field's raw input) cannot be stored, naming where; None if it can."""
    for where, text in _strings(value, field):
        if text is None:
            return f"{where} is nested more than {MAX_DEPTH} levels deep"
        found = _UNSTORABLE.search(text)
        if found:
            kind = "NUL" if found.group() == "\x00" else "a lone surrogate"
            return f"{where} contains {kind}, which cannot be stored"
    return None
