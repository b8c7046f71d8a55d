"""The hand-written delivery decoder against pika's own encoding of the frames: every way the
socket can cut the bytes, bodies in several frames, empty bodies, metadata, and frames that are
not deliveries to this consumer handed to pika in order with everything after them."""

from __future__ import annotations

import itertools
from typing import Any

import pika.exceptions
import pika.frame
import pika.spec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openfdi.connectors.rabbitmq.deliveries import DeliveryDecoder

CHANNEL = 1
TAG = "ctag1.abc"


class Connection:
    """The three attributes of pika's connection the decoder reads, and pika's feed, which
    records what it is given (the decoder's contract with pika)."""

    def __init__(self) -> None:
        self._frame_buffer = b""
        self.bytes_received = 0
        self.frames_received = 0
        self.to_pika: list[bytes] = []

    def _on_data_available(self, data: bytes) -> None:
        self.to_pika.append(data)


def deliver(
    tag: int,
    body: bytes,
    *,
    consumer: str = TAG,
    channel: int = CHANNEL,
    props: pika.spec.BasicProperties | None = None,
    frame_max: int = 131072,
) -> bytes:
    method = pika.spec.Basic.Deliver(consumer, tag, tag % 2 == 0, "ex", f"rk{tag}")
    out = [pika.frame.Method(channel, method).marshal()]
    out.append(
        pika.frame.Header(channel, len(body), props or pika.spec.BasicProperties()).marshal()
    )
    step = frame_max - 8
    out += [
        pika.frame.Body(channel, body[i : i + step]).marshal() for i in range(0, len(body), step)
    ]
    return b"".join(out)


def decoder(needs_meta: bool = False) -> tuple[DeliveryDecoder, Connection, list[Any], list[int]]:
    conn = Connection()
    got: list[Any] = []
    woken: list[int] = []
    dec = DeliveryDecoder(
        conn,
        CHANNEL,
        TAG,
        lambda delivery: got.append((delivery[0], dict(delivery[1]), delivery[2])),
        lambda: woken.append(1),
        needs_meta=needs_meta,
    )
    dec.install()
    return dec, conn, got, woken


BODIES = [b'{"id": 1}', b"", b"x" * 300_000, "ünï 🎉".encode()]
STREAM = b"".join(deliver(i + 1, body, frame_max=4096) for i, body in enumerate(BODIES))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_every_cut_of_the_socket_bytes_gives_the_same_deliveries(cuts: list[int]) -> None:
    dec, conn, got, _ = decoder()
    points = [0, *sorted(cuts), len(STREAM)]
    for a, b in itertools.pairwise(points):
        if b > a:
            conn._on_data_available(STREAM[a:b])  # the installed decoder, as pika's transport calls
    assert [(body, tag) for body, _, tag in got] == [(b, i + 1) for i, b in enumerate(BODIES)]
    assert conn.to_pika == []
    assert conn._frame_buffer == b""
    assert conn.bytes_received == len(STREAM)
    assert dec.delivered == len(BODIES)


def test_metadata_is_what_pika_decodes() -> None:
    props = pika.spec.BasicProperties(timestamp=1700000000, message_id="m-1",
                                      headers={"k": "v", "n": 7})  # fmt: skip
    _, conn, got, woken = decoder(needs_meta=True)
    conn._on_data_available(deliver(2, b"{}", props=props))
    body, meta, tag = got[0]
    assert (body, tag) == (b"{}", 2)
    assert meta == {"routing_key": "rk2", "exchange": "ex", "redelivered": True,
                    "timestamp": 1700000000, "message_id": "m-1",
                    "headers": {"k": "v", "n": 7}}  # fmt: skip
    assert woken == [1]


@pytest.mark.parametrize(
    "other",
    [
        pika.frame.Heartbeat().marshal(),
        pika.frame.Method(CHANNEL, pika.spec.Basic.Cancel("ctag1.abc")).marshal(),
        pika.frame.Method(CHANNEL, pika.spec.Queue.DeclareOk("q", 5, 0)).marshal(),
        deliver(9, b"to another consumer", consumer="ctag1.other"),
        deliver(9, b"on another channel", channel=2),
    ],
    ids=["heartbeat", "cancel", "declare-ok", "other-consumer", "other-channel"],
)
def test_other_frames_go_to_pika_with_all_that_follows(other: bytes) -> None:
    _, conn, got, _ = decoder()
    before, after = deliver(1, b"a"), deliver(2, b"b")
    conn._on_data_available(before + other + after)
    assert [tag for _, _, tag in got] == [1]
    assert conn.to_pika == [other + after]
    assert conn.bytes_received == len(before)  # pika counts what it is given


def test_a_frame_inside_a_delivery_or_a_bad_frame_end_is_refused() -> None:
    _, conn, _, _ = decoder()
    whole = deliver(1, b"abc")
    method_and_header = whole[: -len(pika.frame.Body(CHANNEL, b"abc").marshal())]
    with pytest.raises(pika.exceptions.InvalidFrameError):
        conn._on_data_available(method_and_header + pika.frame.Heartbeat().marshal())
    _, conn, _, _ = decoder()
    with pytest.raises(pika.exceptions.InvalidFrameError):
        conn._on_data_available(whole[:-1] + b"\x00")
