"""`Connector.backlog()` on the real brokers (messages the system holds for a read and has not
delivered yet), and the bookkeeping behind the `openfdi_source_backlog` gauge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import Batch, Connector, ReadPlan
from openfdi.engine import metrics
from openfdi.engine.metrics import Backlogs, BacklogSampler, shared_backlogs
from tests.messages.conftest import RABBIT, REDIS, rabbit_publish
from tests.messages.mqtt_support import MQTT
from tests.messages.mqtt_support import publish as mqtt_publish
from tests.messages.nats_support import NATS, make_stream
from tests.messages.nats_support import publish as nats_publish
from tests.messages.redis_support import admin, redis_ns

__all__ = ["redis_ns"]  # a fixture

COUNT = 300
FIELDS = {"fields": [{"name": "id", "path": "$.id", "type": "bigint"}]}


def _bodies(n: int) -> list[bytes]:
    return [json.dumps({"id": i}).encode() for i in range(n)]


def _read(conn: Connector, table: str) -> Iterator[Batch]:
    """A following read of batches of 10, each acknowledged before the next is read."""
    plan = ReadPlan(table, batch_rows=10, batch_seconds=0.5, follow=True, consumer="backlog")
    for batch in conn.read(plan):
        yield batch
        if batch.acknowledge is not None:
            batch.acknowledge()


def _backlog_after_one_batch_and_at_the_end(conn: Connector, table: str) -> tuple[int, int]:
    assert conn.backlog() is None  # nothing read yet: nothing to tell
    reader = _read(conn, table)
    first = next(reader)
    assert len(first) == 10
    during = conn.backlog()
    got = len(first)
    while got < COUNT:
        got += len(next(reader))
    next(reader)  # the last batch acknowledged
    after = conn.backlog()
    reader.close()
    assert during is not None
    assert after is not None
    return during, after


def test_rabbitmq_backlog_is_the_queue_ready_count(rabbit_queue: str) -> None:
    rabbit_publish(rabbit_queue, _bodies(COUNT))
    with Registry.discover().open("RABBITMQ", RABBIT) as conn:
        conn.configure(FIELDS)
        during, after = _backlog_after_one_batch_and_at_the_end(conn, rabbit_queue)
    # The prefetch (100 for batches of 10) is delivered ahead, so not ready any more.
    assert COUNT - 10 - 100 <= during <= COUNT - 10, during
    assert after == 0


def test_redis_backlog_is_the_group_lag(redis_ns: str) -> None:
    client = admin()
    for body in _bodies(COUNT):
        client.xadd(redis_ns, {"payload": body})
    with Registry.discover().open("REDIS", REDIS) as conn:
        conn.configure(FIELDS)
        during, after = _backlog_after_one_batch_and_at_the_end(conn, redis_ns)
    assert (during, after) == (COUNT - 10, 0)


def test_redis_without_a_lag_counts_the_stream_until_the_group_reads(redis_ns: str) -> None:
    client = admin()
    ids = [client.xadd(redis_ns, {"payload": body}) for body in _bodies(5)]
    client.xdel(redis_ns, ids[1])  # a deletion in the unread range: Redis cannot tell the lag
    with Registry.discover().open("REDIS", REDIS) as conn:
        conn.configure(FIELDS)
        conn.open_source(ReadPlan(redis_ns))  # type: ignore[attr-defined]
        assert conn.backlog() == 4  # the group read nothing yet: all of the stream
        conn.receive(2, 1.0)  # type: ignore[attr-defined]
        assert conn.backlog() is None  # read some: the rest is unknown


def test_nats_backlog_is_the_consumer_num_pending(nats_stream: str) -> None:
    make_stream(nats_stream)
    nats_publish(nats_stream, _bodies(COUNT))
    with Registry.discover().open("NATS", NATS) as conn:
        conn.configure(FIELDS)
        during, after = _backlog_after_one_batch_and_at_the_end(conn, nats_stream)
    assert (during, after) == (COUNT - 10, 0)


def test_mqtt_cannot_tell_its_backlog(mqtt_topic: str, mqtt_sessions: list[str]) -> None:
    from openfdi.connectors.mqtt.connector import session_client_id

    mqtt_sessions.append(session_client_id("backlog", mqtt_topic))
    with Registry.discover().open("MQTT", MQTT) as conn:
        conn.configure({**FIELDS, "topic": mqtt_topic})
        reader = _read(conn, "events")
        next(reader)  # subscribed
        mqtt_publish(mqtt_topic, _bodies(20))
        assert len(next(reader)) > 0
        assert conn.backlog() is None
        reader.close()


# --- the gauge's bookkeeping ------------------------------------------------------------------


def test_a_sampler_asks_at_most_once_a_second_and_forget_drops_the_series() -> None:
    backlogs, now, asked = Backlogs(), [100.0], []

    def read() -> int | None:
        asked.append(now[0])
        return 7 * len(asked)

    sampler = BacklogSampler(backlogs, "t1", "REDIS", clock=lambda: now[0])
    sampler.sample(read)
    now[0] += 0.5
    sampler.sample(read)
    assert asked == [100.0]
    assert backlogs.values() == {("t1", "REDIS"): 7}
    now[0] += 0.6
    sampler.sample(read)
    assert backlogs.values() == {("t1", "REDIS"): 14}
    backlogs.set("t2", "NATS", 3)
    backlogs.forget("t1")
    assert backlogs.values() == {("t2", "NATS"): 3}
    backlogs.set("t2", "NATS", None)  # the source cannot tell any more
    assert backlogs.values() == {}


def test_a_failing_backlog_removes_the_series_and_never_raises() -> None:
    backlogs = Backlogs()
    backlogs.set("t1", "RABBITMQ", 5)

    def broken() -> int | None:
        raise ConnectionError("gone")

    BacklogSampler(backlogs, "t1", "RABBITMQ").sample(broken)
    assert backlogs.values() == {}


def test_worker_processes_share_their_backlogs_and_a_dead_one_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(metrics.MULTIPROCESS_ENV, str(tmp_path))
    Backlogs().set("t1", "REDIS", 42)  # this process: alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (tmp_path / f"backlog-{int(dead.stdout)}.json").write_text(json.dumps([["t2", "NATS", 9]]))
    (tmp_path / "backlog-junk.json").write_text("not json")
    assert shared_backlogs(tmp_path) == {("t1", "REDIS"): 42}
    assert (tmp_path / f"backlog-{os.getpid()}.json").exists()
