"""The control loops' base: steps repeat at the interval or when asked, a failing step does not
end the loop, an overrun is logged, and close ends it promptly."""

from __future__ import annotations

import itertools
import logging
import threading
import time

import pytest

from openfdi.engine import loops
from openfdi.engine.loops import LoopService


def test_a_failing_step_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[float] = []

    def step() -> None:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise RuntimeError("database hiccup")
        return None

    loop = LoopService("probe", step, 0.01)
    loop.start()
    deadline = time.monotonic() + 5
    while len(calls) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.close()
    assert len(calls) >= 5
    assert [r.message for r in caplog.records if r.levelno == logging.ERROR][:2] == [
        "probe pass failed",
        "probe pass failed",
    ]
    assert not loop.alive()


def test_the_step_says_when_it_wants_the_next() -> None:
    calls: list[float] = []

    def step() -> float:
        calls.append(time.monotonic())
        return 0.2  # longer than the interval

    loop = LoopService("probe", step, 0.01, first_wait_s=0.0)
    loop.start()
    time.sleep(0.5)
    loop.close()
    assert 2 <= len(calls) <= 4, calls
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= 0.19


def test_an_overrun_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loops, "OVERRUN_FACTOR", 1)
    closing = threading.Event()

    def step() -> None:
        time.sleep(1.1)  # the floor of an overrun is a second
        closing.set()

    LoopService("probe", step, 0.01, first_wait_s=0.0, closing=closing).run()
    assert any("probe pass took 1.1 s" in r.message for r in caplog.records), caplog.text


def test_close_ends_a_long_wait_at_once() -> None:
    loop = LoopService("probe", lambda: None, 3600.0)
    loop.start()
    began = time.monotonic()
    loop.close()
    assert time.monotonic() - began < 1
    assert not loop.alive()
