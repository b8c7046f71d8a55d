"""NATS JetStream through nats-py, run on the connector's own event-loop thread.

Source: a durable pull consumer on the stream `plan.table` (filtered on `message.subject` when
given), with explicit acknowledgement of each message. Messages are fetched in slices of at most
0.1 s, so a stop is seen within that while the stream is idle. A batch's messages are
acknowledged only once the engine committed them (target, then checkpoint); until then the server
holds them as pending, and delivers them again `ack_wait` seconds after a crash. A TIMING read
ends once it received the stream's last message at its start, or when nothing more comes.

Why explicit and not "ack all" (one ack per batch): an ack-all acknowledges every earlier
message of the stream, including one a crashed run read and never committed that the server has
not redelivered yet; it would be lost.

Target: each row is published to `message.subject` (default: the stream's name) with the stream
expected, so a subject captured by another stream is refused instead of landing there. Publishes
are pipelined (each returns a future for its JetStream ack) and a batch is written only once
every ack arrived.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import time
from collections.abc import Coroutine, Iterator, Mapping
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from openfdi.connectors._messages import Delivery, MessageConnector
from openfdi.connectors._sqlbase import port_of, require
from openfdi.connectors.errors import (
    InvalidContentError,
    QueryCancelledError,
    TableNotFoundError,
    TerminalConnectorError,
    TransientConnectorError,
)
from openfdi.connectors.nats import (
    DEFAULT_ACK_WAIT_S,
    EXTRA_KEYS,
    NAME,
    SPEC,
    check_options,
    valid_subject,
)
from openfdi.connectors.nats.errors import map_driver_errors
from openfdi.connectors.nats.loop import SLICE_S, LoopThread
from openfdi.connectors.spi import ReadPlan, Row, WritePlan

T = TypeVar("T")

CONNECT_TIMEOUT_S = 3.0
API_TIMEOUT_S = 5.0
"""A JetStream API request (stream and consumer info, create) or a flush."""
PUBLISH_TIMEOUT_S = 60.0
"""Longest wait for a batch's publish acks before the batch fails (and is retried)."""
_CONNECTION_CHECK_S = 0.5
"""How often a wait for publish acks looks whether the connection is still there."""
_STREAM_EXISTS = 10058  # JetStream's err_code: "stream name already in use"


class _Meta(Mapping[str, Any]):
    """A message's metadata for `meta` fields, read from the message only when asked (parsing
    the ack subject of every message would cost more than decoding most payloads)."""

    __slots__ = ("_msg",)
    KEYS = (
        "subject",
        "stream",
        "sequence",
        "consumer_sequence",
        "timestamp",
        "num_delivered",
        "redelivered",
        "headers",
    )

    def __init__(self, msg: Msg) -> None:
        self._msg = msg

    def __getitem__(self, key: str) -> Any:
        msg = self._msg
        if key == "subject":
            return msg.subject
        if key == "headers":
            return msg.headers
        if key not in self.KEYS:
            raise KeyError(key)
        meta = msg.metadata
        return {
            "stream": meta.stream,
            "sequence": meta.sequence.stream,
            "consumer_sequence": meta.sequence.consumer,
            "timestamp": meta.timestamp,
            "num_delivered": meta.num_delivered,
            "redelivered": meta.num_delivered > 1,
        }[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)


_API_ERRORS: dict[int, type[nats.js.errors.APIError]] = {
    400: nats.js.errors.BadRequestError,
    404: nats.js.errors.NotFoundError,
    500: nats.js.errors.ServerError,
    503: nats.js.errors.ServiceUnavailableError,
}


class _PublishAcks:
    """Pipelined JetStream publishes: every message is sent with its own reply subject under
    one inbox, and a future per message is resolved by the server's ack (or error).

    nats-py's own `publish_async` is not used: its reply handler raises a JetStream error (a
    subject of another stream, a full stream) instead of setting it on the future, so the
    publish would wait forever instead of failing.
    """

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._next = 0

    async def open(self) -> None:
        await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject[len(self._prefix) + 1 :], None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(nats.js.errors.NoStreamResponseError())
            return
        try:
            answer = json.loads(msg.data)
        except ValueError:
            future.set_exception(nats.js.errors.APIError(description="an unreadable publish ack"))
            return
        error = answer.get("error") if isinstance(answer, dict) else None
        if error:
            code = int(error.get("code") or 0)
            future.set_exception(
                _API_ERRORS.get(code, nats.js.errors.APIError)(
                    code=code, description=error.get("description"), err_code=error.get("err_code")
                )
            )
        else:
            future.set_result(None)

    async def publish(self, subject: str, stream: str, payloads: list[bytes]) -> None:
        """Publish every payload to `subject`, expecting `stream` to capture it, and return once
        the server acknowledged them all; raise the first refusal."""
        loop = asyncio.get_running_loop()
        headers = {"Nats-Expected-Stream": stream}
        futures: list[asyncio.Future[None]] = []
        try:
            for payload in payloads:
                token = str(self._next)
                self._next += 1
                future: asyncio.Future[None] = loop.create_future()
                self._waiting[token] = future
                futures.append(future)
                await self._nc.publish(
                    subject, payload, reply=f"{self._prefix}.{token}", headers=headers
                )
            pending: set[asyncio.Future[None]] = set(futures)
            while pending:
                _, pending = await asyncio.wait(pending, timeout=_CONNECTION_CHECK_S)
                if pending and not self._nc.is_connected:  # its acks will never come
                    raise nats.errors.ConnectionClosedError()
            # Every ack is awaited (each failure retrieved) before the first failure is raised.
            for result in await asyncio.gather(*futures, return_exceptions=True):
                if isinstance(result, BaseException):
                    raise result
        finally:
            if any(not f.done() for f in futures):  # cancelled or timed out: forget the rest
                self._waiting.clear()


class NatsConnector(MessageConnector):
    EXTRA_KEYS = EXTRA_KEYS

    def __init__(self, content: Mapping[str, Any]) -> None:
        super().__init__(content)
        require(content, *SPEC.required_content)
        host = str(content["host"]).strip()
        if "://" in host or "/" in host:
            raise InvalidContentError(f"host {host!r} must be a name or an address", field="host")
        self._where = f"[{host}]:" if ":" in host else f"{host}:"  # an IPv6 address in brackets
        self._where += str(port_of(content, 4222))
        self._user = str(content.get("user_name") or "").strip() or None
        self._secret = str(content.get("password") or "")
        self._loop: LoopThread | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._consumer: tuple[str, str] | None = None
        """(stream, durable) of the source's consumer, once subscribed."""
        self._until = 0
        self._high = 0
        self._stream = ""
        self._subject = ""
        self._acks: _PublishAcks | None = None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        check_options(options)

    def configure(self, options: Mapping[str, Any] | None) -> None:
        check_options(options or {})
        super().configure(options)

    # --- the loop and the connection ------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout_s: float, *, stoppable: bool = True) -> T:
        """Run `coro` on the connector's loop with nats-py errors mapped; a cancel interrupts
        the wait when `stoppable`."""
        if self._loop is None:
            self._loop = LoopThread(f"openfdi-nats-{self._where}")
        with map_driver_errors([self._secret]):
            try:
                return self._loop.run(
                    coro, timeout_s, self.cancelled.is_set if stoppable else lambda: False
                )
            except concurrent.futures.CancelledError:
                raise QueryCancelledError("the read or write was cancelled") from None

    async def _connect(self) -> Client:
        failures: list[BaseException] = []

        async def on_error(exc: Exception) -> None:
            failures.append(exc)

        try:
            # No reconnection: a lost connection fails the work in hand with a transient error
            # (the engine retries the run, which reads again what was not acknowledged).
            # max_reconnect_attempts bounds the first connect too: two attempts, not sixty.
            return await nats.connect(
                servers=[f"nats://{self._where}"],
                user=self._user,
                password=self._secret if self._user else None,
                name="openfdi",
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                connect_timeout=int(CONNECT_TIMEOUT_S),
                error_cb=on_error,
            )
        except nats.errors.NoServersError:
            last = failures[-1] if failures else None
            reason = f"{type(last).__name__}: {last}" if last is not None else "no answer"
            raise TransientConnectorError(
                f"NATS: cannot connect to {self._where}: {reason}"
            ) from None

    def _client(self) -> JetStreamContext:
        self.live()
        if self._js is None:
            self._nc = self._run(self._connect(), 2 * CONNECT_TIMEOUT_S + API_TIMEOUT_S)
            self._js = self._nc.jetstream(timeout=API_TIMEOUT_S)
        return self._js

    async def _account(self, js: JetStreamContext) -> None:
        try:
            await js.account_info()
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
            raise TerminalConnectorError(
                f"NATS: JetStream is not enabled on {self._where}"
            ) from None

    def check(self) -> None:
        js = self._client()
        self._run(self._account(js), API_TIMEOUT_S)

    async def _stream_names(self, js: JetStreamContext) -> list[str]:
        names: list[str] = []
        offset = 0
        while True:  # the server answers a page at a time
            page = await js.streams_info(offset=offset)
            if not page:
                return sorted(names)
            offset += len(page)
            names.extend(info.config.name for info in page if info.config.name)

    def list_tables(self) -> list[str]:
        """The account's streams."""
        js = self._client()
        self._run(self._account(js), API_TIMEOUT_S)
        return self._run(self._stream_names(js), 4 * API_TIMEOUT_S)

    @staticmethod
    def _stream_of(table: str) -> str:
        stream = table.strip()
        if not NAME.match(stream):
            raise TerminalConnectorError(
                f"NATS: {table!r} is not a stream name (letters, digits, _ and -)"
            )
        return stream

    async def _ensure_stream(self, js: JetStreamContext, stream: str, subject: str) -> int:
        """The stream's last sequence, creating the stream when missing and `message.create`."""
        try:
            return (await js.stream_info(stream)).state.last_seq
        except nats.js.errors.NotFoundError:
            if not self.options.get("create"):
                raise TableNotFoundError(f"NATS: stream {stream!r} not found") from None
        try:
            await js.add_stream(name=stream, subjects=[subject])
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != _STREAM_EXISTS:  # another run created it meanwhile: fine
                raise
        return (await js.stream_info(stream)).state.last_seq

    # --- source ---------------------------------------------------------------------------

    def open_source(self, plan: ReadPlan) -> None:
        js = self._client()
        stream = self._stream_of(plan.table)
        subject = self.options.get("subject") or None
        durable = str(self.options.get("durable") or f"openfdi-{stream}")
        ack_wait = float(self.options.get("ack_wait") or DEFAULT_ACK_WAIT_S)
        # The server stops delivering once this many messages wait for their ack; a batch is
        # acknowledged only after its commit, so the window must hold two batches.
        window = max(1000, 2 * plan.batch_rows)
        self._sub = self._run(
            self._subscribe(js, stream, subject, durable, ack_wait, window), 3 * API_TIMEOUT_S
        )
        self._consumer = (stream, durable)

    async def _subscribe(
        self,
        js: JetStreamContext,
        stream: str,
        subject: str | None,
        durable: str,
        ack_wait: float,
        window: int,
    ) -> JetStreamContext.PullSubscription:
        last_seq = await self._ensure_stream(js, stream, subject or stream)
        wanted: dict[str, Any] = {
            "filter_subject": subject,
            "ack_wait": ack_wait,
            "max_ack_pending": window,
        }
        try:
            found = await js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            config = api.ConsumerConfig(
                name=durable,
                durable_name=durable,
                ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL,
                **wanted,
            )
            found = await js.add_consumer(stream, config)
        else:
            if found.config.deliver_subject:
                raise TerminalConnectorError(
                    f"NATS: consumer {durable!r} of stream {stream!r} is a push consumer"
                )
            if found.config.ack_policy != api.AckPolicy.EXPLICIT:
                raise TerminalConnectorError(
                    f"NATS: consumer {durable!r} acknowledges {found.config.ack_policy}; "
                    "openfdi needs explicit acknowledgement (name another message.durable)"
                )
            current = {key: getattr(found.config, key) for key in wanted}
            if current != wanted:  # the task's settings changed: update the durable consumer
                found = await js.add_consumer(stream, found.config.evolve(**wanted))
        # A read that ends stops at the stream's last message at its start; with nothing
        # pending for this consumer it ends at its first empty fetch.
        self._until = last_seq if found.num_pending else 0
        self._high = 0
        return await js.pull_subscribe_bind(consumer=durable, stream=stream)

    async def _fetch(self, most: int, wait_s: float) -> list[Msg]:
        assert self._sub is not None
        try:
            return await self._sub.fetch(most, timeout=wait_s)
        except TimeoutError:  # nothing came within the slice
            return []

    def receive(self, most: int, timeout_s: float) -> list[Delivery]:
        end = time.monotonic() + timeout_s
        msgs: list[Msg] = []
        while not msgs and not self.cancelled.is_set():
            wait = min(SLICE_S, end - time.monotonic())
            if wait < 0.005:
                break
            msgs = self._run(self._fetch(most, wait), wait + API_TIMEOUT_S)
        if msgs:
            # The last message is almost always the highest; a redelivered one out of order
            # only makes a read that ends wait for its first empty fetch.
            self._high = max(self._high, msgs[-1].metadata.sequence.stream)
        return [(msg.data, _Meta(msg), msg) for msg in msgs]

    def drained(self) -> bool:
        return self._high >= self._until

    async def _pending(self, stream: str, durable: str) -> int:
        assert self._js is not None
        return int((await self._js.consumer_info(stream, durable)).num_pending)

    def backlog(self) -> int | None:
        """The durable consumer's num_pending: messages of its stream (and filter) not yet
        delivered to it; those delivered and waiting for their ack are not among them."""
        if self._consumer is None or self._js is None:
            return None
        return self._run(self._pending(*self._consumer), API_TIMEOUT_S)

    async def _ack(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            await msg.ack()
        assert self._nc is not None
        await self._nc.flush(timeout=int(API_TIMEOUT_S))  # the server has every ack

    def acknowledge(self, tokens: list[Any]) -> None:
        # Not stoppable: the batch is committed, and an ack lost to a stop would only make the
        # server deliver it again.
        self._run(self._ack(tokens), 2 * API_TIMEOUT_S, stoppable=False)

    # --- target ---------------------------------------------------------------------------

    def open_target(self, plan: WritePlan) -> None:
        js = self._client()
        stream = self._stream_of(plan.table)
        subject = str(self.options.get("subject") or stream)
        if not valid_subject(subject, wildcards=False):
            raise InvalidContentError(
                f"NATS: a target publishes to one subject, not to the pattern {subject!r}",
                field="message.subject",
            )
        self._run(self._ensure_stream(js, stream, subject), 3 * API_TIMEOUT_S)
        self._stream, self._subject = stream, subject

    async def _publish(self, payloads: list[bytes]) -> None:
        if self._acks is None:
            assert self._nc is not None
            self._acks = _PublishAcks(self._nc)
            await self._acks.open()
        await self._acks.publish(self._subject, self._stream, payloads)

    def publish(self, payloads: list[bytes], rows: list[Row], plan: WritePlan) -> None:
        self._run(self._publish(payloads), PUBLISH_TIMEOUT_S)

    def close(self) -> None:
        nc, loop = self._nc, self._loop
        self._nc = self._js = self._sub = self._acks = None
        self._loop = None
        if loop is None:
            return
        if nc is not None:
            with contextlib.suppress(Exception):
                # Closing drops this run's fetched but unacknowledged messages: the server
                # delivers them again after ack_wait.
                loop.run(nc.close(), API_TIMEOUT_S)
        loop.stop()
