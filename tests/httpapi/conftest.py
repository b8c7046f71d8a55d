"""A fake HTTP API per test (tests/httpapi/fake_api.py), and the served openfdi with its engine for
the task tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.conftest import pg_schema  # noqa: F401 - a fixture
from tests.httpapi.fake_api import FakeApi


@pytest.fixture
def engine_enabled() -> bool:
    return True


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi() as served:
        yield served
