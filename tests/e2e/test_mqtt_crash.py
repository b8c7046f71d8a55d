"""kill -9 of the server while a REALTIME task reads an MQTT topic into PostgreSQL, 20,000
messages in flight (tests/e2e/message_crash.py): the task resumes on its persistent session and
the broker sends again what was never acknowledged.

MQTT QoS 1 is at-least-once by the protocol: a message whose PUBACK the killed process never
sent comes again (DUP), and nothing tells it from a new one (QoS 2's exactly-once handshake
would not help either: the PUBACK/PUBCOMP can only follow the target's commit, so a kill between
the two still resends). The guarantee is no loss, and exactly once in an upsert target, which
is what the harness asserts.

The broker is a private Mosquitto that queues without limit for the offline session: the
machine's keeps max_queued_messages (1000) for a disconnected client and drops the rest, which
would be the broker's configured loss, not openfdi's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.message_crash import MessageSource, kill_mid_run_and_resume
from tests.engine.conftest import pg_schema  # noqa: F401 - a fixture
from tests.messages.mqtt_support import publish, queueing_broker

pytestmark = pytest.mark.slow


def test_kill_9_with_messages_in_flight_then_restart_writes_each_once(
    tmp_path: Path,
    pg_schema: str,  # noqa: F811 - the fixture imported above
) -> None:
    topic = "openfdi/crash/orders"  # the broker is this test's own
    with queueing_broker() as broker:
        port = int(broker["port"])
        source = MessageSource(
            "MQTT",
            broker,
            "orders",
            lambda bodies: publish(topic, bodies, port=port),
            options={"topic": topic},
        )
        kill_mid_run_and_resume(tmp_path, pg_schema, source)
