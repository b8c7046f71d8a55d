"""Identifier formats of the FDI API: 32 lowercase hex, and hyphenated UUIDs for instances."""

from __future__ import annotations

import re
import uuid

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def new_hex_id() -> str:
    return uuid.uuid4().hex


def new_instance_id() -> str:
    return str(uuid.uuid4())


def is_hex_id(value: str) -> bool:
    return bool(_HEX32.match(value))


def is_instance_id(value: str) -> bool:
    return bool(_UUID.match(value))
