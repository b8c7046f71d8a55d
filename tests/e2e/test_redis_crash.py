"""kill -9 of the server while a REALTIME task reads a Redis stream through its consumer group
into PostgreSQL, 20,000 messages in flight (tests/e2e/message_crash.py): the restarted run reads
its consumer's pending entries first (read, never acknowledged), then goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.message_crash import MessageSource, kill_mid_run_and_resume
from tests.engine.conftest import pg_schema  # noqa: F401 - a fixture
from tests.messages.redis_support import admin, pending, redis_ns  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow


def _append(stream: str, bodies: list[bytes]) -> None:
    client = admin()
    pipe = client.pipeline(transaction=False)
    for body in bodies:
        pipe.xadd(stream, {"payload": body})
    pipe.execute()
    client.close()


def test_kill_9_mid_stream_then_restart_writes_every_message_once(
    tmp_path: Path,
    pg_schema: str,  # noqa: F811 - the fixture imported above
    redis_ns: str,  # noqa: F811 - the fixture imported above
) -> None:
    stream = redis_ns
    source = MessageSource(
        "REDIS",
        {"host": "127.0.0.1", "port": "6379"},
        stream,
        lambda bodies: _append(stream, bodies),
        settled=lambda: pending(stream) == 0,
    )
    kill_mid_run_and_resume(tmp_path, pg_schema, source)
