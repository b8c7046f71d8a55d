"""Mosquitto (127.0.0.1:1883, anonymous) for the MQTT tests: a unique topic per test, a publisher
and a subscriber beside the connector, and the removal of every session a test leaves."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.services import require

MQTT: dict[str, Any] = {"host": "127.0.0.1", "port": "1883"}


def _client(client_id: str = "", port: int = 1883) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port, clean_start=True)
    client.loop_start()
    return client


def _leave(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def publish(topic: str, bodies: list[bytes], *, retain: bool = False, port: int = 1883) -> None:
    """Publish each body with QoS 1 and wait for every PUBACK."""
    client = _client(port=port)
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def private_broker() -> Iterator[dict[str, Any]]:
    """A Mosquitto of this test's own that wants a password, and lets user `reader` read only."""
    require("mosquitto")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists() or not shutil.which("mosquitto_passwd"):
        pytest.skip("the mosquitto binary is not installed")
    with tempfile.TemporaryDirectory(prefix="openfdi-mosquitto-") as where:
        yield from _broker(binary, Path(where))


@contextlib.contextmanager
def queueing_broker() -> Iterator[dict[str, Any]]:
    """A Mosquitto of the caller's own, anonymous, that queues any number of messages for an
    offline persistent session (the machine's keeps 1000 and drops the rest, max_queued_messages):
    for a test that publishes while its subscriber is down. Its content; stopped afterwards."""
    require("mosquitto")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("the mosquitto binary is not installed")
    with tempfile.TemporaryDirectory(prefix="openfdi-mosquitto-") as where:
        home = Path(where)
        home.chmod(0o755)
        port = _free_port()
        conf = home / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\n"
        )
        conf.chmod(0o644)
        broker = _started(binary, conf, port)
        try:
            yield {"host": "127.0.0.1", "port": str(port)}
        finally:
            broker.terminate()
            broker.wait(10)


def _started(binary: str, conf: Path, port: int) -> subprocess.Popen[bytes]:
    broker = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.PIPE)
    end = time.monotonic() + 10
    while time.monotonic() < end and broker.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return broker
        time.sleep(0.05)
    broker.kill()
    pytest.fail(f"mosquitto did not start: {broker.communicate()[1].decode()}")


def _broker(binary: str, home: Path) -> Iterator[dict[str, Any]]:
    # Started as root, mosquitto drops to its own user: its files must be readable by others.
    home.chmod(0o755)
    passwords, acl = home / "passwd", home / "acl"
    for user in ("writer", "reader"):
        subprocess.run(
            ["mosquitto_passwd", "-b", *(["-c"] if user == "writer" else []), str(passwords),
             user, "right-pass"],
            check=True,
        )  # fmt: skip
    acl.write_text("user writer\ntopic readwrite #\nuser reader\ntopic read #\n")
    passwords.chmod(0o644)
    acl.chmod(0o644)
    port = _free_port()
    conf = home / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        f"acl_file {acl}\npersistence false\n"
    )
    broker = _started(binary, conf, port)
    try:
        yield {"host": "127.0.0.1", "port": str(port), "user_name": "writer",
               "password": "right-pass"}  # fmt: skip
    finally:
        broker.terminate()
        broker.wait(10)
