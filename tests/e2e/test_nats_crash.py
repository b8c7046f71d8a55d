"""kill -9 of the server while a REALTIME task reads a NATS JetStream stream through its durable
consumer into PostgreSQL, 20,000 messages in flight (tests/e2e/message_crash.py): what the killed
run fetched and never acknowledged is delivered again after `ack_wait` (2 s here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.message_crash import MessageSource, kill_mid_run_and_resume
from tests.engine.conftest import pg_schema  # noqa: F401 - a fixture
from tests.messages.nats_support import (  # noqa: F401 - nats_stream is a fixture
    NATS,
    consumer_info,
    make_stream,
    nats_stream,
    publish,
)

pytestmark = pytest.mark.slow


def _unacknowledged(stream: str) -> int:
    return int(consumer_info(stream, f"openfdi-{stream}").num_ack_pending)


def test_kill_9_mid_stream_then_restart_writes_every_message_once(
    tmp_path: Path,
    pg_schema: str,  # noqa: F811 - the fixture imported above
    nats_stream: str,  # noqa: F811 - the fixture imported above
) -> None:
    make_stream(nats_stream)
    source = MessageSource(
        "NATS",
        NATS,
        nats_stream,
        lambda bodies: publish(nats_stream, bodies),
        options={"ack_wait": 2},
        settled=lambda: _unacknowledged(nats_stream) == 0,
    )
    kill_mid_run_and_resume(tmp_path, pg_schema, source)
