"""kill -9 of the server while a REALTIME task moves a RabbitMQ queue into PostgreSQL, 20,000
messages in flight: the broker requeues what the killed connection never acknowledged, and the
upsert target holds every message exactly once (tests/e2e/message_crash.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.message_crash import MessageSource, kill_mid_run_and_resume
from tests.engine.conftest import pg_schema  # noqa: F401 - a fixture
from tests.messages.conftest import RABBIT, rabbit_publish, rabbit_queue  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


def _unacknowledged(queue: str) -> int:
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    try:
        # message_count counts ready messages only; with the run's consumer attached and up to
        # date, none is ready and none is waiting for an ack either once the batch is acked.
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def test_kill_9_mid_queue_then_restart_writes_every_message_once(
    tmp_path: Path,
    pg_schema: str,  # noqa: F811 - the fixture imported above
    rabbit_queue: str,  # noqa: F811 - the fixture imported above
) -> None:
    source = MessageSource(
        "RABBITMQ",
        RABBIT,
        rabbit_queue,
        lambda bodies: rabbit_publish(rabbit_queue, bodies),
        options={"declare": True},
        settled=lambda: _unacknowledged(rabbit_queue) == 0,
    )
    kill_mid_run_and_resume(tmp_path, pg_schema, source)
