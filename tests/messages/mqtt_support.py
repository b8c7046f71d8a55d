"""Mosquitto (127.0.0.1:1883, anonymous) for the MQTT tests: a unique topic per test, a publisher
and a subscriber beside the connector, and the removal of every session a test leaves."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.services import require

MQTT: dict[str, Any] = {"host": "127.0.0.1", "port": "1883"}


def _client(client_id: str = "") -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", 1883, clean_start=True)
    client.loop_start()
    return client


def _leave(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def publish(topic: str, bodies: list[bytes], *, retain: bool = False) -> None:
    """Publish each body with QoS 1 and wait for every PUBACK."""
    client = _client()
    try:
        infos = [client.publish(topic, body, qos=1, retain=retain) for body in bodies]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        _leave(client)


def forget_session(client_id: str) -> None:
    """End a persistent session the broker keeps for `client_id` (clean start, no expiry)."""
    _leave(_client(client_id))


class Subscriber:
    """Collects what is published to a filter from the moment it is subscribed."""

    def __init__(self, topic: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_message = lambda _c, _u, m: self._add(m)
        self._client.on_subscribe = lambda *_a: subscribed.set()
        # Without a Receive Maximum, Mosquitto keeps 20 messages in flight and queues 1000 more
        # for a slow subscriber, dropping the rest: this one takes them all at once.
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = 65535
        self._client.connect("127.0.0.1", 1883, clean_start=True, properties=props)
        self._client.loop_start()
        self._client.subscribe(topic, options=SubscribeOptions(qos=1))
        assert subscribed.wait(10)

    def _add(self, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def wait_for(self, count: int, timeout: float = 30) -> list[bytes]:
        end = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < end:
            time.sleep(0.02)
        with self._lock:
            return [bytes(m.payload) for m in self.messages]

    def close(self) -> None:
        _leave(self._client)


@pytest.fixture
def mqtt_topic() -> Iterator[str]:
    """A topic no other test uses; retained messages on it are cleared afterwards."""
    require("mosquitto")
    topic = f"openfdi/t/{uuid.uuid4().hex[:12]}"
    yield topic
    publish(topic, [b""], retain=True)  # an empty retained message clears the retained one


@pytest.fixture
def mqtt_sessions() -> Iterator[list[str]]:
    """Client ids whose persistent sessions the test leaves on the broker; ended afterwards."""
    ids: list[str] = []
    yield ids
    for client_id in ids:
        forget_session(client_id)


@pytest.fixture
def subscriber() -> Iterator[Any]:
    """`subscriber(topic)` -> a Subscriber, closed after the test."""
    made: list[Subscriber] = []

    def make(topic: str) -> Subscriber:
        made.append(Subscriber(topic))
        return made[-1]

    yield make
    for sub in made:
        sub.close()
