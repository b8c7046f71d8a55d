"""The consumer's deliveries decoded straight from the socket's bytes (hand-written for speed).

pika decodes every frame into objects (a method, its properties, a body frame), trims its input
buffer by copying the rest after each frame, and routes each through callbacks: about 20 µs per
message here, four fifths of a RabbitMQ → PostgreSQL run's time (profiled: pika's
`decode_frame`, `_process_frame` and `_trim_frame_buffer` lead). A delivery is always the same
three frames on the consumer's channel (Basic.Deliver, a content header, the body in one or more
body frames), so this decoder reads exactly those with `struct` at an offset and hands
(body, meta, delivery tag) to the connector; every other frame (a heartbeat, Basic.Cancel, the
answer of a passive declare) and everything after it in that read is handed to pika unchanged.
It reads pika 1.4's connection internals (`_frame_buffer`, `_on_data_available`,
`bytes_received`, `frames_received`): pika is pinned below 1.5 in pyproject.toml for that.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pika.exceptions
import pika.spec

from openfdi.connectors._messages import Meta

_FRAME = struct.Struct(">BHL")  # frame type, channel, payload size
_METHOD_ID = struct.Struct(">I")
_TAG_REDELIVERED = struct.Struct(">QB")
_BODY_SIZE = struct.Struct(">Q")
_METHOD, _HEADER, _BODY = 1, 2, 3
_DELIVER = 0x003C003C  # Basic.Deliver: class 60, method 60
_FRAME_END = 0xCE
_NO_META: Meta = {}

Sink = Callable[[tuple[bytes, Meta, int]], None]
"""Takes one delivery: (its body, its metadata (empty unless asked for), its delivery tag)."""


class DeliveryDecoder:
    """Installed on one pika connection for one consumer (its channel and consumer tag)."""

    def __init__(
        self,
        impl: Any,
        channel: int,
        consumer_tag: str,
        sink: Sink,
        wake: Callable[[], None],
        *,
        needs_meta: bool,
    ) -> None:
        self._impl = impl
        self._wake = wake
        self._channel = channel
        self._consumer_tag = consumer_tag.encode()
        self._sink = sink
        self._needs_meta = needs_meta
        self._pika_feed: Callable[[bytes], None] = impl._on_data_available
        # the delivery whose content frames are being read: (tag, meta), body size, parts
        self._pending: tuple[int, Meta] | None = None
        self._left = -1
        self._parts: list[bytes] = []
        self.delivered = 0

    def install(self) -> None:
        # pika's transport calls `connection._on_data_available(data)` for every read.
        self._impl._on_data_available = self.feed

    def feed(self, data_in: bytes) -> None:
        impl = self._impl
        data = impl._frame_buffer + data_in if impl._frame_buffer else data_in
        impl._frame_buffer = b""
        pos, end, frames = 0, len(data), 0
        before = self.delivered
        try:
            while end - pos >= 8:
                kind, channel, size = _FRAME.unpack_from(data, pos)
                stop = pos + 8 + size
                if stop > end:
                    break  # the rest of this frame is in a later read
                if data[stop - 1] != _FRAME_END:
                    raise pika.exceptions.InvalidFrameError("Invalid FRAME_END marker")
                if channel != self._channel or not self._take(kind, data, pos + 7, stop - 1):
                    if self._pending is not None:
                        raise pika.exceptions.InvalidFrameError(
                            "a frame inside a delivery's content frames"
                        )
                    impl.bytes_received += pos
                    impl.frames_received += frames
                    self._pika_feed(data[pos:])  # pika takes this frame and all after it
                    return
                pos = stop
                frames += 1
            impl.bytes_received += pos
            impl.frames_received += frames
            impl._frame_buffer = data[pos:]
        finally:
            if self.delivered != before:
                self._wake()  # ends the blocking connection's wait: messages are there

    def _take(self, kind: int, data: bytes, start: int, stop: int) -> bool:
        """Decode one frame of a delivery to this consumer; False when it is not one."""
        if kind == _BODY:
            if self._left <= 0:
                return False
            part = data[start:stop]
            self._left -= len(part)
            if self._left > 0:
                self._parts.append(part)
            elif self._left == 0:
                if self._parts:
                    self._parts.append(part)
                    part = b"".join(self._parts)
                    self._parts = []
                self._deliver(part)
            else:
                raise pika.exceptions.InvalidFrameError("a body larger than its header said")
            return True
        if kind == _HEADER:
            if self._pending is None or self._left >= 0:
                return False
            (size,) = _BODY_SIZE.unpack_from(data, start + 4)
            if self._needs_meta:
                props = pika.spec.BasicProperties()
                props.decode(data[start + 12 : stop])
                tag, meta = self._pending
                self._pending = (tag, {**meta, "timestamp": props.timestamp,
                                       "message_id": props.message_id,
                                       "headers": props.headers})  # fmt: skip
            self._left = size
            if size == 0:
                self._deliver(b"")
            return True
        if kind != _METHOD or self._pending is not None:
            return False
        if _METHOD_ID.unpack_from(data, start)[0] != _DELIVER:
            return False
        at = start + 4
        length = data[at]
        if data[at + 1 : at + 1 + length] != self._consumer_tag:
            return False
        at += 1 + length
        tag, redelivered = _TAG_REDELIVERED.unpack_from(data, at)
        meta = _NO_META
        if self._needs_meta:
            at += 9
            length = data[at]
            exchange = data[at + 1 : at + 1 + length].decode()
            at += 1 + length
            length = data[at]
            routing_key = data[at + 1 : at + 1 + length].decode()
            meta = {"routing_key": routing_key, "exchange": exchange,
                    "redelivered": bool(redelivered & 1)}  # fmt: skip
        self._pending = (tag, meta)
        self._left = -1
        return True

    def _deliver(self, body: bytes) -> None:
        assert self._pending is not None
        tag, meta = self._pending
        self._pending = None
        self._left = -1
        self.delivered += 1
        self._sink((body, meta, tag))
