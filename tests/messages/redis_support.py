"""Redis helpers of the message tests: a fresh key namespace per test, deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.services import require


def admin() -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=6379)


@pytest.fixture
def redis_ns() -> Iterator[str]:
    """A unique key prefix; every key under it (streams, hashes, strings) is deleted after."""
    require("redis")
    name = f"openfdi_t_{uuid.uuid4().hex[:12]}"
    yield name
    client = admin()
    keys = list(client.scan_iter(match=f"{name}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def pending(stream: str, group: str = "openfdi") -> int:
    """Entries handed to the group's consumers and not acknowledged."""
    return int(admin().xpending(stream, group)["pending"])
