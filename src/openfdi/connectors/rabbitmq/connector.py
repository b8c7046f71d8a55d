"""RabbitMQ through pika's blocking connection (one thread: the run's).

Source: consumes `plan.table` with a bounded prefetch (twice a batch) and no auto-ack; a batch's
messages are acknowledged with one `basic_ack(multiple=True)` once the engine committed them, so
a crash redelivers them. A TIMING read ends once it received what the queue held at its start.
Deliveries are decoded from the socket's bytes by `deliveries.DeliveryDecoder` (pika's own
decoding was four fifths of a run's time); pika still handles every other frame.

Target: publishes each row, persistent and mandatory, on a channel in confirm mode. Confirms
are pipelined (pika's blocking channel would wait for each message in turn): a batch is written
when every one of its messages is confirmed, and fails on a nack or a returned message.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import pika
import pika.spec

from openfdi.connectors._messages import Delivery, MessageConnector, Meta
from openfdi.connectors._sqlbase import port_of, require
from openfdi.connectors.errors import TerminalConnectorError, TransientConnectorError
from openfdi.connectors.rabbitmq import EXTRA_KEYS, SPEC
from openfdi.connectors.rabbitmq.deliveries import DeliveryDecoder
from openfdi.connectors.rabbitmq.errors import map_driver_errors
from openfdi.connectors.spi import ReadPlan, Row, WritePlan

_TICK_S = 0.1
"""Longest wait inside pika between two looks at `cancel()`."""


_NO_META: Meta = {}
"""A message's metadata when no field reads it (not built per message)."""


def _nothing() -> None:
    return None


class RabbitConnector(MessageConnector):
    EXTRA_KEYS = EXTRA_KEYS

    def __init__(self, content: Mapping[str, Any]) -> None:
        super().__init__(content)
        require(content, *SPEC.required_content)
        self._secret = str(content.get("password") or "")
        self._host = str(content["host"]).strip()
        self._params = pika.ConnectionParameters(
            host=self._host,
            port=port_of(content, 5672),
            virtual_host=str(content.get("rabbitmq_virtual_host") or content.get("vhost") or "/"),
            credentials=pika.PlainCredentials(str(content["user_name"]), self._secret),
            connection_attempts=1,
            socket_timeout=5,
            stack_timeout=10,
            blocked_connection_timeout=60,
            heartbeat=60,
        )
        self._conn: Any = None
        self._ch: Any = None
        self._buffer: collections.deque[Delivery] = collections.deque()
        self._queue: str | None = None
        self._expected = 0
        self._received = 0
        # publisher confirms: every tag below _low is confirmed, and those in _singles
        self._tag = 0
        self._low = 1
        self._singles: set[int] = set()
        self._refusals: list[str] = []
        self._wake: Callable[[], None] = _nothing
        self._broker_cancelled = False

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return map_driver_errors([self._secret])

    def _channel(self) -> Any:
        self.live()
        if self._ch is None:
            with self._errors():
                self._conn = pika.BlockingConnection(self._params)
                self._ch = self._conn.channel()
        return self._ch

    def check(self) -> None:
        self._channel()

    def list_tables(self) -> list[str]:
        """The vhost's queues, from the management plugin's API when it answers (15672)."""
        self._channel()
        vhost = quote(self._params.virtual_host, safe="")
        try:
            answer = httpx.get(
                f"http://{self._host}:15672/api/queues/{vhost}",
                params={"columns": "name"},
                auth=(self._params.credentials.username, self._secret),
                timeout=3,
            )
            answer.raise_for_status()
            return sorted(str(q["name"]) for q in answer.json())
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return []  # no management plugin: queues cannot be listed over AMQP

    # --- source ---------------------------------------------------------------------------

    def open_source(self, plan: ReadPlan) -> None:
        ch = self._channel()
        queue = plan.table
        with self._errors():
            if self.options.get("declare"):
                ch.queue_declare(queue, durable=True)
                exchange = self.options.get("exchange")
                if exchange:
                    ch.queue_bind(queue, exchange, self.options.get("routing_key") or queue)
            declared = ch.queue_declare(queue, passive=True)
            self._queue = queue
            self._expected = declared.method.message_count
            self._received = 0
            ch.basic_qos(prefetch_count=min(65535, max(100, plan.batch_rows * 2)))
            # The consumer sits on the async channel under the blocking one: a delivery goes
            # straight into the buffer, not through the blocking channel's queue of events
            # and its dispatch (a fifth of the read's time per message).
            self._wake = functools.partial(self._conn._request_channel_dispatch, -ch.channel_number)
            impl = ch._impl
            # The blocking channel's own handler of a broker's Basic.Cancel (the queue was
            # deleted) knows only its consumers: it would fail on ours with a KeyError.
            impl.callbacks.remove(
                impl.channel_number, pika.spec.Basic.Cancel, ch._on_consumer_cancelled_by_broker
            )
            impl.add_on_cancel_callback(self._on_broker_cancel)
            consuming: list[Any] = []
            tag = impl.basic_consume(
                queue, self._on_message, auto_ack=False, callback=consuming.append
            )
            while not consuming:
                self.live()
                if ch.is_closed:
                    raise TerminalConnectorError(f"RabbitMQ: cannot consume {queue}")
                self._conn.process_data_events(time_limit=_TICK_S)
            DeliveryDecoder(
                self._conn._impl,
                ch.channel_number,
                tag,
                self._buffer.append,
                self._wake,
                needs_meta=self.needs_meta,
            ).install()

    def _on_broker_cancel(self, _frame: Any) -> None:
        self._broker_cancelled = True
        self._wake()

    def _on_message(
        self, _ch: Any, method: Any, props: pika.spec.BasicProperties, body: bytes
    ) -> None:
        if self.needs_meta:
            meta: Meta = {
                "routing_key": method.routing_key,
                "exchange": method.exchange,
                "redelivered": method.redelivered,
                "timestamp": props.timestamp,
                "message_id": props.message_id,
                "headers": props.headers,
            }
        else:
            meta = _NO_META
        self._buffer.append((body, meta, method.delivery_tag))
        self._wake()  # ends the blocking connection's wait: a message is there

    def receive(self, most: int, timeout_s: float) -> list[Delivery]:
        end = time.monotonic() + timeout_s
        buffer = self._buffer
        with self._errors():
            while not buffer and not self.cancelled.is_set():
                if self._broker_cancelled:
                    raise TransientConnectorError(
                        f"RabbitMQ: the broker cancelled the consumer of {self._queue}"
                    )
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._conn.process_data_events(time_limit=min(left, _TICK_S))
        take = min(most, len(buffer))
        self._received += take
        return [buffer.popleft() for _ in range(take)]

    def drained(self) -> bool:
        return self._received >= self._expected

    def backlog(self) -> int | None:
        """The queue's ready messages (a passive declare): those prefetched to this consumer
        and not yet acknowledged are not among them."""
        if self._queue is None or self._ch is None:
            return None
        with self._errors():
            return int(self._ch.queue_declare(self._queue, passive=True).method.message_count)

    def acknowledge(self, tokens: list[Any]) -> None:
        with self._errors():
            self._ch.basic_ack(delivery_tag=tokens[-1], multiple=True)

    # --- target ---------------------------------------------------------------------------

    def open_target(self, plan: WritePlan) -> None:
        ch = self._channel()
        self._exchange = str(self.options.get("exchange") or "")
        self._routing_key = str(self.options.get("routing_key") or plan.table)
        ready: list[bool] = []
        with self._errors():
            if self.options.get("declare") and not self._exchange:
                ch.queue_declare(plan.table, durable=True)
            impl = ch._impl  # the async channel: confirms pipelined, not one round trip each
            impl.add_on_return_callback(self._on_return)
            impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=ready.append)
            while not ready:
                self.live()
                self._conn.process_data_events(time_limit=_TICK_S)
        self._props = pika.BasicProperties(delivery_mode=2, content_type="application/json")

    def _on_return(self, _ch: Any, method: Any, _props: Any, _body: bytes) -> None:
        self._refusals.append(f"returned unroutable ({method.reply_code} {method.reply_text})")

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            self._refusals.append("the broker refused (nacked) a message")
        if method.multiple:
            self._low = max(self._low, method.delivery_tag + 1)
        else:
            self._singles.add(method.delivery_tag)
        while self._low in self._singles:
            self._singles.discard(self._low)
            self._low += 1
        if self._low > self._tag and self._conn is not None:
            # Confirms run inside the async channel, unseen by the blocking connection's wait:
            # this wakes it at once instead of at the end of its time slice.
            self._conn.add_callback_threadsafe(_nothing)

    def publish(self, payloads: list[bytes], rows: list[Row], plan: WritePlan) -> None:
        impl = self._ch._impl
        exchange, key, props = self._exchange, self._routing_key, self._props
        with self._errors():
            for body in payloads:
                impl.basic_publish(exchange, key, body, props, mandatory=True)
            self._tag += len(payloads)
            while self._low <= self._tag:
                self.live()
                if not self._conn.is_open:
                    raise TerminalConnectorError("RabbitMQ: the connection closed")
                self._conn.process_data_events(time_limit=_TICK_S)
        if self._refusals:
            reason, self._refusals = self._refusals[0], []
            raise TerminalConnectorError(f"RabbitMQ: {reason}")

    def close(self) -> None:
        conn, self._conn, self._ch = self._conn, None, None
        self._buffer.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
