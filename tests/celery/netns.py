"""Test hosts for the partition test: a network namespace each, joined to this machine by a veth
pair. The machine's PostgreSQL and RabbitMQ listen on loopback only, so a forwarder inside the
namespace (its own 127.0.0.1) reaches one on this side of the veth, which reaches loopback: a
worker in the namespace uses the same URLs as any other, and `cut()` takes its link down."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORTS = (5432, 5672)  # PostgreSQL (metadata and data sources), RabbitMQ


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Host:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns = f"ofdi-{tag}"
        self.outer, self.inner = f"vo{tag}", f"vi{tag}"
        subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        last = random.randrange(0, 256, 4)
        self.outer_ip, self.inner_ip = f"{subnet}.{last + 1}", f"{subnet}.{last + 2}"
        self._forwarders: list[subprocess.Popen[str]] = []

    def up(self) -> None:
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        _ip("link", "set", self.inner, "netns", self.ns)
        _ip("addr", "add", f"{self.outer_ip}/30", "dev", self.outer)
        _ip("link", "set", self.outer, "up")
        inside = ("netns", "exec", self.ns, "ip")
        _ip(*inside, "addr", "add", f"{self.inner_ip}/30", "dev", self.inner)
        _ip(*inside, "link", "set", self.inner, "up")
        _ip(*inside, "link", "set", "lo", "up")
        outer_pairs = [a for p in PORTS for a in (f"{self.outer_ip}:{p}", f"127.0.0.1:{p}")]
        inner_pairs = [a for p in PORTS for a in (f"127.0.0.1:{p}", f"{self.outer_ip}:{p}")]
        self._outer = self._forward(outer_pairs)
        self._forward(inner_pairs, self.ns)

    def _forward(self, pairs: list[str], ns: str | None = None) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "tests.celery.forward", *pairs]
        if ns is not None:
            command = ["ip", "netns", "exec", ns, *command]
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self._forwarders.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "forwarding":
            raise RuntimeError(f"the forwarder {pairs} did not start")
        return proc

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace (same process: `ip netns exec` execs it)."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def cut(self) -> None:
        """Take the host's link down. The servers' side of its connections closes at once (the
        forwarder on this side goes), as a server notices a lost client with TCP keepalives or
        PostgreSQL's idle_in_transaction_session_timeout: else the cut worker's open target
        transaction would hold its row locks, and the run taken over would wait for them. The
        worker's own side just hangs."""
        _ip("link", "set", self.outer, "down")
        self._outer.kill()
        self._outer.wait()

    def restore(self) -> None:
        _ip("link", "set", self.outer, "up")
        self._outer = self._forward(list(self._outer.args[3:]))  # type: ignore[index]

    def close(self) -> None:
        for proc in self._forwarders:
            proc.kill()
            proc.wait()
        # Whatever still runs inside (a worker the test left) would keep the namespace alive.
        pids = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True,
                              text=True, check=False).stdout.split()  # fmt: skip
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True, check=False)


def make_hosts(count: int) -> list[Host]:
    """`count` hosts, up; a skip (a fail under CI=true) where namespaces cannot be made."""
    probe_name = f"ofdi-probe-{os.getpid()}"
    if shutil.which("ip") is None:
        failed = "the `ip` command (iproute2) is missing"
    else:
        probe = subprocess.run(["ip", "netns", "add", probe_name],
                               capture_output=True, text=True, check=False)  # fmt: skip
        subprocess.run(["ip", "netns", "del", probe_name], capture_output=True, check=False)
        failed = probe.stderr.strip() if probe.returncode else ""
    if failed:
        message = f"cannot make a network namespace: {failed}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: the partition test must run)")
        pytest.skip(message)
    hosts: list[Host] = []
    try:
        for _ in range(count):
            hosts.append(Host())
            hosts[-1].up()
    except Exception:
        for host in hosts:
            host.close()
        raise
    return hosts
