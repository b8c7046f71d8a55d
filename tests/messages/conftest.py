"""Real brokers of this machine for the message connector tests; each test makes and deletes its
own queue, stream or topic. A missing broker skips, or fails under CI=true."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.engine.conftest import pg_schema  # noqa: F401 - a fixture
from tests.messages.mqtt_support import (  # noqa: F401 - fixtures
    mqtt_sessions,
    mqtt_topic,
    private_broker,
    subscriber,
)
from tests.services import require

RABBIT = {"host": "127.0.0.1", "port": "5672", "user_name": "guest", "password": "guest"}
REDIS = {"host": "127.0.0.1", "port": "6379"}


@pytest.fixture
def engine_enabled() -> bool:
    return True


@pytest.fixture
def rabbit_queue() -> Iterator[str]:
    """A fresh durable queue name (declared by the test or the connector), deleted afterwards."""
    require("rabbitmq")
    import pika

    name = f"openfdi_t_{uuid.uuid4().hex[:12]}"
    yield name
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    conn.channel().queue_delete(name)
    conn.close()


def rabbit_publish(queue: str, bodies: list[bytes], **props: Any) -> None:
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    # In a transaction: its commit returns once the queue holds every message. Without it the
    # last messages could still be on their way to the queue when a test's reader counted it
    # (a TIMING read, which takes what the queue held at its start, then read 19,999 of 20,000).
    ch.tx_select()
    for body in bodies:
        ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2, **props))
    ch.tx_commit()
    conn.close()


def rabbit_drain(queue: str) -> list[bytes]:
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    ch = conn.channel()
    out = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            break
        out.append(body)
    conn.close()
    return out


from tests.messages.nats_support import (  # noqa: E402, F401 - fixtures
    nats_stream,
    nats_with_password,
    private_jetstream,
)
