"""The NATS JetStream server of this machine for the NATS tests: a fresh stream per test (deleted
afterwards), publishing and reading behind the connector's back, and a private server with a
password for the credential tests. A missing server skips, or fails under CI=true."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
from nats.js import api

from tests.services import require

NATS = {"host": "127.0.0.1", "port": "4222"}
SERVER = "nats://127.0.0.1:4222"


async def _with_js(work: Any) -> Any:
    nc = await nats.connect(SERVER, allow_reconnect=False)
    try:
        return await work(nc.jetstream())
    finally:
        await nc.close()


def run_js(work: Any) -> Any:
    """Run `await work(js)` on a new connection to the test server."""
    return asyncio.run(_with_js(work))


@pytest.fixture
def nats_stream() -> Iterator[str]:
    """A fresh stream name (created by the test or the connector), deleted afterwards."""
    require("nats")
    name = f"openfdi_t_{uuid.uuid4().hex[:12]}"
    yield name

    async def delete(js: Any) -> None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)

    run_js(delete)


def make_stream(stream: str, subjects: list[str] | None = None) -> None:
    async def add(js: Any) -> None:
        await js.add_stream(name=stream, subjects=subjects or [stream])

    run_js(add)


def publish(subject: str, bodies: list[bytes], headers: dict[str, str] | None = None) -> None:
    """Publish `bodies` to `subject`, each acknowledged by JetStream."""

    async def send(js: Any) -> None:
        for body in bodies:
            await js.publish(subject, body, headers=headers)

    run_js(send)


def stream_messages(stream: str) -> list[bytes]:
    """Every message the stream holds, in order (read by sequence, no consumer)."""

    async def read(js: Any) -> list[bytes]:
        state = (await js.stream_info(stream)).state
        if not state.messages:
            return []
        seqs = range(state.first_seq, state.last_seq + 1)
        return [(await js.get_msg(stream, seq)).data or b"" for seq in seqs]

    return list(run_js(read))


def consumer_info(stream: str, durable: str) -> api.ConsumerInfo:
    async def info(js: Any) -> api.ConsumerInfo:
        return await js.consumer_info(stream, durable)

    return run_js(info)  # type: ignore[no-any-return]


def fetch_without_ack(stream: str, durable: str, most: int, ack_wait: float) -> list[bytes]:
    """What a run that crashed before its commit did: fetch messages through the durable
    consumer and never acknowledge them."""

    async def fetch(js: Any) -> list[bytes]:
        config = api.ConsumerConfig(
            name=durable,
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_ack_pending=1000,
        )
        await js.add_consumer(stream, config)
        sub = await js.pull_subscribe_bind(consumer=durable, stream=stream)
        return [m.data for m in await sub.fetch(most, timeout=2)]

    return list(run_js(fetch))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateServer:
    """A nats-server of this test only (the machine's binary) on a free port."""

    def __init__(self, *args: str) -> None:
        binary = shutil.which("nats-server") or next(
            (p for p in ("/usr/sbin/nats-server", "/usr/local/bin/nats-server")
             if os.path.exists(p)),
            None,
        )  # fmt: skip
        if binary is None:
            pytest.skip("no nats-server binary to start a private server")
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    pytest.fail("the private nats-server did not start")
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def nats_with_password() -> Iterator[dict[str, str]]:
    """A private server that wants user `openfdi`, password `right-pass` (no JetStream); its
    content, stopped afterwards."""
    server = PrivateServer("--user", "openfdi", "--pass", "right-pass")
    try:
        yield {"host": "127.0.0.1", "port": str(server.port), "user_name": "openfdi",
               "password": "right-pass"}  # fmt: skip
    finally:
        server.kill()


@pytest.fixture
def private_jetstream(tmp_path: Path) -> Iterator[PrivateServer]:
    """A private server with JetStream (its store under tmp_path), to be killed by the test."""
    server = PrivateServer("-js", "-sd", str(tmp_path / "jetstream"))
    try:
        yield server
    finally:
        server.kill()
