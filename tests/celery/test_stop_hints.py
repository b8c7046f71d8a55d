"""Stop hints (engine/stop_hints.py) on the real brokers: a hint reaches every listening process
at once, a listener survives hostile bodies, and hints sent while nobody listens are dropped,
not queued for a listener that comes later (a stale hint would only cost a database read, but
a queue of them would grow on the broker without bound)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from huaweicloudsdkroma.v2 import StopTaskRequest

from openfdi.engine.celery_queue import celery_app
from openfdi.engine.stop_hints import StopHintListener, StopHintPublisher, hint_exchange
from openfdi.services.runtime import Runtime
from openfdi.settings import Settings
from tests.celery.conftest import BROKERS, Workers
from tests.celery.support import (
    copy_task,
    datasource,
    ended,
    fill,
    run,
    run_rows,
    slow_target,
    wait_for,
)
from tests.conftest import make_settings


class Heard:
    def __init__(self) -> None:
        self.run_ids: list[str] = []
        self.changed = threading.Condition()

    def __call__(self, run_ids: list[str]) -> None:
        with self.changed:
            self.run_ids.extend(run_ids)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout_s: float) -> list[str]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.run_ids) >= count, timeout_s)
            return list(self.run_ids)


@pytest.fixture
def app(broker: str, queue: str, tmp_path: Path) -> object:
    return celery_app(_settings(tmp_path, BROKERS[broker], queue))


def _settings(tmp_path: Path, broker_url: str, queue: str) -> Settings:
    return make_settings(tmp_path).model_copy(
        update={"celery_broker_url": broker_url, "celery_queue": queue}
    )


def _listening(listener: StopHintListener) -> StopHintListener:
    assert listener.listening.wait(10), "the listener did not bind its queue"
    return listener


@pytest.mark.parametrize("broker", ["amqp", "redis"])
def test_a_hint_reaches_every_listening_process_at_once(app: object, queue: str) -> None:
    heard = [Heard(), Heard()]
    listeners = [_listening(StopHintListener(app, queue, h)) for h in heard]  # type: ignore[arg-type]
    publisher = StopHintPublisher(app, queue)  # type: ignore[arg-type]
    try:
        time.sleep(0.2)  # Redis: the PUB/SUB subscription is made by the first drain
        sent = time.monotonic()
        publisher.hint("run-1")
        publisher.hint("run-2")
        for h in heard:
            assert sorted(h.wait_for(2, 5)) == ["run-1", "run-2"]
        assert time.monotonic() - sent < 1.0
    finally:
        publisher.close()
        for listener in listeners:
            listener.close()


@pytest.mark.parametrize("broker", ["amqp", "redis"])
def test_a_listener_ignores_hostile_bodies_and_goes_on(app: object, queue: str) -> None:
    heard = Heard()
    listener = _listening(StopHintListener(app, queue, heard))  # type: ignore[arg-type]
    try:
        time.sleep(0.2)
        with app.producer_or_acquire() as producer:  # type: ignore[attr-defined]
            for body in ([1, 2], {"run_ids": "nope"}, "text", {"other": 1}, {"run_ids": ["ok"]}):
                producer.publish(body, exchange=hint_exchange(queue), routing_key="",
                                 declare=[hint_exchange(queue)], serializer="json")  # fmt: skip
        assert heard.wait_for(1, 5) == ["ok"]
    finally:
        listener.close()


@pytest.mark.parametrize("broker", ["amqp", "redis"])
def test_hints_sent_while_nobody_listens_are_not_kept_for_later(app: object, queue: str) -> None:
    publisher = StopHintPublisher(app, queue)  # type: ignore[arg-type]
    publisher.hint("old")
    publisher.close()
    heard = Heard()
    listener = _listening(StopHintListener(app, queue, heard))  # type: ignore[arg-type]
    try:
        time.sleep(0.2)
        late = StopHintPublisher(app, queue)  # type: ignore[arg-type]
        late.hint("new")
        late.close()
        assert heard.wait_for(1, 5) == ["new"]
        time.sleep(0.3)
        assert heard.run_ids == ["new"]
    finally:
        listener.close()


def test_a_publisher_without_a_broker_loses_hints_and_answers_at_once(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "amqp://guest:guest@127.0.0.1:1//", "nowhere")
    publisher = StopHintPublisher(celery_app(settings), "nowhere")
    began = time.monotonic()
    publisher.hint("r")  # answers at once: sending is the publisher thread's
    publisher.hint("s")
    assert time.monotonic() - began < 0.1
    publisher.close(timeout_s=15)
    assert time.monotonic() - began < 15, "a broker out of reach held the publisher"


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("broker", ["amqp", "redis"])
def test_a_stop_reaches_the_executing_worker_through_the_hint(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema, monkeypatch
) -> None:
    """The worker's own check of the database is set to once a minute: only the hint can end
    the run within the deadline."""
    monkeypatch.setenv("OPENFDI_CELERY_STOP_CHECK_SECONDS", "60")
    workers.start(1, concurrency=1)
    fill(pg_schema, 20_000)
    slow_target(pg_schema, "dst", 0.3)  # 10 slices: 3 s or more
    task = copy_task(sdk, creds, datasource(signed, base_path, pg_schema), "dst")
    time.sleep(1.0)  # the pool process builds its runtime (and its listener) on its first run
    run(sdk, creds, task)
    wait_for(lambda: [r for r in run_rows(runtime, [task]) if r.state == "running"])
    time.sleep(0.5)

    asked = time.time()
    sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=task))
    (row,) = wait_for(lambda: ended(runtime, [task]), timeout=30)
    assert (row.state, row.remarks) == ("cancelled", "stopped")
    assert row.ended_at / 1000 - asked < runtime.settings.stop_deadline_seconds + 0.5
