"""MQTT through paho-mqtt 2, protocol version 5 (its network loop on a thread of its own).

Source: subscribes to a topic filter (wildcards allowed) with QoS 1 on a persistent session: a
client id that stays the same across the runs of one task and one filter, clean start off, and
a session expiry interval, so messages published while no run is connected wait on the broker.
PUBACKs are sent by hand (paho's `manual_ack`) only when the engine committed the batch and its
checkpoint; what a run received but never acknowledged is sent again at the next connection.
The client's Receive Maximum (two batches) bounds the unacknowledged messages in flight.

MQTT has no queue depth to drain to, so a TIMING read takes what arrives (queued messages come
first, right after the connection) and ends once nothing arrived for `idle_seconds`. A REALTIME
read waits for messages in slices of 0.1 s so a stop is seen within the deadline.

Target: publishes each row with QoS 1 on a clean session; a batch is written only when every
PUBACK has come back, and fails if one carries a failure reason code or the connection drops.

The connection is never re-established inside a run: a packet id means nothing on another
connection, so a lost connection fails the batch (transient) and the engine retries the run on
fresh connectors, where the broker redelivers what was not acknowledged.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import hashlib
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from openfdi.connectors._messages import Delivery, MessageConnector
from openfdi.connectors._sqlbase import port_of, require
from openfdi.connectors.errors import TransientConnectorError
from openfdi.connectors.mqtt import EXTRA_KEYS, IDLE_S, SESSION_EXPIRY_S, SPEC, check_topic
from openfdi.connectors.mqtt.errors import failed, map_driver_errors, refused
from openfdi.connectors.spi import ReadPlan, Row, WritePlan

_TICK_S = 0.1
"""Longest wait between two looks at `cancel()` and at the connection's state."""
_CONNECT_S = 10.0
"""How long a CONNACK or SUBACK may take before the attempt counts as failed."""
_KEEPALIVE_S = 30


class _Meta(Mapping[str, Any]):
    """A message's metadata for the `meta` fields (the timestamp built only when asked). It
    keeps a few plain values, not paho's message: that holds an MQTT 5 Properties object of
    about 7 KiB, and a run holds up to a Receive Maximum of messages."""

    __slots__ = ("_at", "_content_type", "_dup", "_qos", "_retain", "_topic", "_user")
    KEYS = ("topic", "qos", "retain", "redelivered", "timestamp", "content_type", "headers")

    def __init__(self, msg: mqtt.MQTTMessage, at: float) -> None:
        props = msg.properties
        self._topic, self._qos = msg.topic, msg.qos
        self._retain, self._dup, self._at = bool(msg.retain), bool(msg.dup), at
        self._content_type = getattr(props, "ContentType", None)
        self._user = getattr(props, "UserProperty", None)

    def __getitem__(self, key: str) -> Any:
        if key == "topic":
            return self._topic
        if key == "qos":
            return self._qos
        if key == "retain":
            return self._retain
        if key == "redelivered":
            return self._dup
        if key == "timestamp":
            # When openfdi received it: MQTT carries no time of its own.
            return dt.datetime.fromtimestamp(self._at, dt.UTC)
        if key == "content_type":
            return self._content_type
        if key == "headers":
            return dict(self._user or ())
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)


class MqttConnector(MessageConnector):
    EXTRA_KEYS = EXTRA_KEYS

    def __init__(self, content: Mapping[str, Any]) -> None:
        super().__init__(content)
        require(content, *SPEC.required_content)
        self._host = str(content["host"]).strip()
        self._port = port_of(content, 1883)
        self._user = str(content.get("user_name") or "") or None
        self._secret = str(content.get("password") or "")
        self._client: mqtt.Client | None = None
        # Everything below is shared with paho's loop thread, guarded by _cond.
        self._cond = threading.Condition()
        self._connack: ReasonCode | None = None
        self._gone: str | None = None
        """Why the connection ended (None while it is up)."""
        self._suback: list[ReasonCode] | None = None
        self._inbox: collections.deque[Delivery] = collections.deque()
        self._last_arrival = 0.0
        self._refusals: list[ReasonCode] = []
        self._pubacks = 0
        self._wanted = 0
        self._follow = False
        self._topic = ""
        self._retain = False
        self._idle_s = IDLE_S

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return map_driver_errors(f"{self._host}:{self._port}", [self._secret])

    # --- the connection -------------------------------------------------------------------

    def _connect(
        self, client_id: str, *, persistent: bool, expiry: int = 0, receive_max: int = 65535
    ) -> mqtt.Client:
        """Connect and wait for a successful CONNACK; raise the broker's reason otherwise."""
        self.live()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        if self._user is not None:
            client.username_pw_set(self._user, self._secret or None)
        client.connect_timeout = 5.0
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = expiry if persistent else 0
        props.ReceiveMaximum = receive_max
        with self._cond:
            self._connack, self._gone = None, None
        with self._errors():
            client.connect(
                self._host,
                self._port,
                keepalive=_KEEPALIVE_S,
                clean_start=not persistent,
                properties=props,
            )
        self._client = client
        client.loop_start()
        end = time.monotonic() + _CONNECT_S
        with self._cond:
            while self._connack is None and self._gone is None:
                self.live()
                if time.monotonic() > end:
                    raise TransientConnectorError(
                        f"MQTT: {self._host}:{self._port} sent no CONNACK within {_CONNECT_S:g} s"
                    )
                self._cond.wait(_TICK_S)
            connack, gone = self._connack, self._gone
        if connack is not None and connack.is_failure:
            raise refused("the broker refused the connection", connack)
        if connack is None:
            raise TransientConnectorError(f"MQTT: the connection closed before CONNACK: {gone}")
        return client

    def _on_connect(
        self, _c: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        with self._cond:
            self._connack = reason
            self._cond.notify_all()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        with self._cond:
            self._gone = reason.getName() if reason is not None else "closed"
            self._cond.notify_all()

    def _alive(self) -> mqtt.Client:
        """The client, if its connection is still up; the caller holds `_cond`."""
        self.live()
        if self._gone is not None or self._client is None:
            raise TransientConnectorError(f"MQTT: the connection was lost: {self._gone}")
        return self._client

    def check(self) -> None:
        """Connect (a throw-away clean session, so no task's session is touched) and leave."""
        try:
            self._connect(f"openfdi-check-{uuid.uuid4().hex[:12]}", persistent=False)
        finally:
            self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                # DISCONNECT is queued after any PUBACK not yet written, so those reach the
                # broker; the session (and its subscription) stays for the next run.
                client.disconnect()
            with contextlib.suppress(Exception):
                client.loop_stop()
        with self._cond:
            self._inbox.clear()

    # --- source ---------------------------------------------------------------------------

    def _session_id(self, plan: ReadPlan) -> str:
        if self.options.get("client_id"):
            return str(self.options["client_id"])
        owner = plan.consumer or f"{self._host}:{self._port}:{self._user or ''}"
        return session_client_id(owner, self._topic)

    def open_source(self, plan: ReadPlan) -> None:
        self._topic = check_topic(self.options.get("topic") or plan.table, wildcards=True)
        self._follow = plan.follow
        self._idle_s = float(self.options.get("idle_seconds") or IDLE_S)
        expiry = self.options.get("session_expiry")
        client = self._connect(
            self._session_id(plan),
            persistent=True,
            expiry=int(SESSION_EXPIRY_S if expiry is None else expiry),
            # Unacknowledged messages the broker may send (MQTT 5 Receive Maximum): two
            # batches, so one is read while the last one is written. What a slow session is
            # not sent waits in the broker's bounded queue (Mosquitto: 1000, then dropped).
            receive_max=min(65535, max(1000, plan.batch_rows * 2)),
        )
        with self._cond:
            self._suback = None
        with self._errors():
            rc, _mid = client.subscribe(self._topic, options=SubscribeOptions(qos=1))
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise failed(f"subscribing to {self._topic}", rc)
        end = time.monotonic() + _CONNECT_S
        with self._cond:
            while self._suback is None:
                self._alive()
                if time.monotonic() > end:
                    raise TransientConnectorError(f"MQTT: no SUBACK for {self._topic}")
                self._cond.wait(_TICK_S)
            granted = self._suback[0]
            # A TIMING read's quiet time counts from here: queued messages came already.
            self._last_arrival = time.monotonic()
        if granted.is_failure:
            raise refused(f"subscribing to {self._topic}", granted)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[ReasonCode], _props: Any
    ) -> None:
        with self._cond:
            self._suback = reasons
            self._cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        delivery = (msg.payload, _Meta(msg, time.time()), (msg.mid, msg.qos))
        with self._cond:
            inbox = self._inbox
            inbox.append(delivery)  # type: ignore[arg-type]  # payload is bytes off the wire
            self._last_arrival = time.monotonic()
            if len(inbox) == 1:  # the reader waits only on an empty inbox
                self._cond.notify_all()

    def receive(self, most: int, timeout_s: float) -> list[Delivery]:
        end = time.monotonic() + timeout_s
        inbox = self._inbox
        with self._cond:
            while not inbox:
                self._alive()
                # A TIMING read returns nothing (which ends it) only after `idle_seconds` with
                # no message; a REALTIME one after `timeout_s`, to let its caller look at a stop.
                until = end if self._follow else self._last_arrival + self._idle_s
                left = until - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(min(left, _TICK_S))
            take = min(most, len(inbox))
            return [inbox.popleft() for _ in range(take)]

    def acknowledge(self, tokens: list[Any]) -> None:
        """PUBACK each message (MQTT acknowledges one packet id at a time; QoS 0 needs none)."""
        with self._cond:
            client = self._alive()
            # The broker sends what it held back for want of in-flight room only once these
            # arrive: a TIMING read's quiet time starts again.
            self._last_arrival = time.monotonic()
        for mid, qos in tokens:
            rc = client.ack(mid, qos)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise failed("acknowledging a committed batch (the broker redelivers it)", rc)

    # --- target ---------------------------------------------------------------------------

    def open_target(self, plan: WritePlan) -> None:
        self._topic = check_topic(self.options.get("topic") or plan.table, wildcards=False)
        self._retain = bool(self.options.get("retain"))
        self._connect(f"openfdi-pub-{uuid.uuid4().hex[:16]}", persistent=False)

    def _on_publish(
        self, _c: mqtt.Client, _u: Any, _mid: int, reason: ReasonCode, _props: Any
    ) -> None:
        with self._cond:
            self._pubacks += 1
            if reason is not None and reason.is_failure:
                self._refusals.append(reason)
            if self._pubacks >= self._wanted or self._refusals:
                self._cond.notify_all()

    def publish(self, payloads: list[bytes], rows: list[Row], plan: WritePlan) -> None:
        with self._cond:
            client = self._alive()
            # Every earlier batch was confirmed whole, so PUBACKs from here on are this batch's.
            self._wanted = self._pubacks + len(payloads)
        topic, retain = self._topic, self._retain
        for body in payloads:
            rc = client.publish(topic, body, qos=1, retain=retain).rc
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise failed(f"publishing to {topic}", rc)
        with self._cond:
            while self._pubacks < self._wanted and not self._refusals:
                self._alive()
                self._cond.wait(_TICK_S)
            refusals, self._refusals = self._refusals, []
        if refusals:
            raise refused(f"the broker refused a message to {topic}", refusals[0])


def session_client_id(owner: str, topic: str) -> str:
    """The client id of a source's persistent session when the task names none: its owner's
    (the task id) and a digest of the filter. A changed filter starts a new session rather than
    adding a subscription to the old one, since a session's subscriptions cannot be listed."""
    digest = hashlib.sha256(f"{owner}\n{topic}".encode()).hexdigest()[:10]
    safe = "".join(c for c in owner if c.isalnum() or c in "-_")[:64]
    return f"openfdi-{safe}-{digest}"
