"""The MQTT connector on the real broker: exact values, poison messages, PUBACK only when told,
the persistent session across connections, wildcards, stop while idle, confirmed publishing, and
the broker's reason on a bad connection (password never shown)."""

from __future__ import annotations

import collections
import json
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from openfdi.connectors.errors import (
    ConnectorError,
    InvalidContentError,
    QueryCancelledError,
    TerminalConnectorError,
    TransientConnectorError,
)
from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import Batch, Connector, ReadPlan, Row, WritePlan
from tests.messages.mqtt_support import MQTT, forget_session, publish

FIELDS: list[dict[str, Any]] = [
    {"name": "id", "path": "$.order.id", "type": "bigint"},
    {"name": "name", "path": "$.name", "type": "text"},
    {"name": "amount", "path": "$.amount", "type": "decimal"},
    {"name": "note", "path": "$.note", "type": "text"},
    {"name": "tags", "path": "$.tags", "type": "json"},
    {"name": "topic", "meta": "topic", "type": "varchar"},
]
BIG = 9223372036854775807


def _open(sessions: list[str], content: dict[str, Any] | None = None, **options: Any) -> Connector:
    options.setdefault("fields", FIELDS)
    if "client_id" in options:
        sessions.append(options["client_id"])
    conn = Registry.discover().open("MQTT", content or MQTT)
    conn.configure(options)
    return conn


def _message(i: int) -> bytes:
    doc = {
        "order": {"id": i},
        "name": f"ünï 🎉 {i}",
        "amount": "12345678901234567890.123456789",
        "note": None,
        "tags": ["a", {"b": 1}],
    }
    return json.dumps(doc, ensure_ascii=False).encode()


def _drain(conn: Connector, plan: ReadPlan, *, ack: bool = True) -> tuple[list[Row], list[Any]]:
    """A TIMING read to its end, each batch acknowledged before the next is read (as the engine
    does) when `ack`: the rows and refused rows."""
    batches = []
    for batch in conn.read(plan):
        batches.append(batch)
        if ack and batch.acknowledge:
            batch.acknowledge()
    assert batches[-1].last
    return [r for b in batches for r in b.rows], [r for b in batches for r in b.refused]


def _session(sessions: list[str], topic: str, **options: Any) -> str:
    """Create a persistent session subscribed to `topic` (an empty read), return its client id."""
    client_id = f"openfdi-test-{topic.rsplit('/', 1)[-1]}"
    with _open(sessions, client_id=client_id, topic=topic, **options) as conn:
        assert _drain(conn, ReadPlan("t")) == ([], [])
    return client_id


def test_the_session_keeps_what_came_while_offline_exact_values_and_poison_refused(
    mqtt_topic: str, mqtt_sessions: list[str]
) -> None:
    client_id = _session(mqtt_sessions, mqtt_topic)
    publish(mqtt_topic, [_message(BIG), b"{not json", _message(2)])  # nobody connected
    with _open(mqtt_sessions, client_id=client_id, topic=mqtt_topic) as conn:
        rows, refused = _drain(conn, ReadPlan("t", batch_rows=100))
    assert rows == [
        (
            BIG,
            f"ünï 🎉 {BIG}",
            Decimal("12345678901234567890.123456789"),
            None,
            '["a",{"b":1}]',
            mqtt_topic,
        ),
        (2, "ünï 🎉 2", Decimal("12345678901234567890.123456789"), None, '["a",{"b":1}]',
         mqtt_topic),
    ]  # fmt: skip
    assert len(refused) == 1
    assert refused[0].row == ("{not json",)
    assert "not json" in refused[0].reason
    with _open(mqtt_sessions, client_id=client_id, topic=mqtt_topic) as conn:
        assert _drain(conn, ReadPlan("t")) == ([], [])  # all acknowledged, the poison one too


def test_unacknowledged_messages_come_back_on_the_next_connection(
    mqtt_topic: str, mqtt_sessions: list[str]
) -> None:
    client_id = _session(mqtt_sessions, mqtt_topic)
    publish(mqtt_topic, [_message(i) for i in range(1, 11)])
    fields = [*FIELDS[:1], {"name": "again", "meta": "redelivered", "type": "boolean"}]
    with _open(mqtt_sessions, client_id=client_id, topic=mqtt_topic, fields=fields) as conn:
        rows, _ = _drain(conn, ReadPlan("t"), ack=False)  # read, never acknowledged: closed
    assert rows == [(i, False) for i in range(1, 11)]
    with _open(mqtt_sessions, client_id=client_id, topic=mqtt_topic, fields=fields) as conn:
        rows, _ = _drain(conn, ReadPlan("t"))
    assert rows == [(i, True) for i in range(1, 11)]
    with _open(mqtt_sessions, client_id=client_id, topic=mqtt_topic) as conn:
        assert _drain(conn, ReadPlan("t")) == ([], [])


def test_an_acknowledgement_reaches_the_broker_before_the_connection_closes(
    mqtt_topic: str, mqtt_sessions: list[str]
) -> None:
    client_id = _session(mqtt_sessions, mqtt_topic)
    # Mosquitto keeps at most 1000 messages (max_queued_messages) for a session while offline.
    publish(mqtt_topic, [_message(i) for i in range(1, 901)])
    with _open(mqtt_sessions, client_id=client_id, topic=mqtt_topic) as conn:
        rows, _ = _drain(conn, ReadPlan("t", batch_rows=300))
    assert sorted(r[0] for r in rows) == list(range(1, 901))
    with _open(mqtt_sessions, client_id=client_id, topic=mqtt_topic) as conn:
        assert _drain(conn, ReadPlan("t")) == ([], [])


def test_a_wildcard_filter_reads_every_matching_topic_with_its_name(
    mqtt_topic: str, mqtt_sessions: list[str]
) -> None:
    client_id = _session(mqtt_sessions, f"{mqtt_topic}/+/temp")
    for room, i in (("a", 1), ("b", 2), ("b", 3)):
        publish(f"{mqtt_topic}/{room}/temp", [_message(i)])
    publish(f"{mqtt_topic}/a/humidity", [_message(4)])
    with _open(mqtt_sessions, client_id=client_id, topic=f"{mqtt_topic}/+/temp") as conn:
        rows, _ = _drain(conn, ReadPlan("t"))
    assert sorted((r[0], r[-1]) for r in rows) == [
        (1, f"{mqtt_topic}/a/temp"),
        (2, f"{mqtt_topic}/b/temp"),
        (3, f"{mqtt_topic}/b/temp"),
    ]


def test_the_default_session_is_per_consumer_and_filter(
    mqtt_topic: str, mqtt_sessions: list[str]
) -> None:
    from openfdi.connectors.mqtt.connector import session_client_id

    mqtt_sessions.append(session_client_id("task-1", mqtt_topic))
    with _open(mqtt_sessions, topic=mqtt_topic) as conn:
        assert _drain(conn, ReadPlan("t", consumer="task-1")) == ([], [])
    publish(mqtt_topic, [_message(5)])
    with _open(mqtt_sessions, topic=mqtt_topic) as conn:
        rows, _ = _drain(conn, ReadPlan("t", consumer="task-1"))
    assert [r[0] for r in rows] == [5]


def test_a_timing_read_ends_soon_after_the_topic_goes_quiet(
    mqtt_topic: str, mqtt_sessions: list[str]
) -> None:
    client_id = _session(mqtt_sessions, mqtt_topic)
    with _open(mqtt_sessions, client_id=client_id, topic=mqtt_topic, idle_seconds=0.3) as conn:
        started = time.monotonic()
        threading.Timer(0.2, lambda: publish(mqtt_topic, [_message(1)])).start()
        rows, _ = _drain(conn, ReadPlan("t"))
        took = time.monotonic() - started
    assert [r[0] for r in rows] == [1]
    assert 0.45 < took < 1.5  # the message came at 0.2 s and restarted the 0.3 s quiet time


def test_a_following_read_yields_while_idle_and_a_cancel_ends_it(
    mqtt_topic: str, mqtt_sessions: list[str]
) -> None:
    with _open(mqtt_sessions, client_id=f"openfdi-test-f-{mqtt_topic[-12:]}") as conn:
        reader = conn.read(ReadPlan(mqtt_topic, batch_seconds=0.2, follow=True))
        started = time.monotonic()
        first = next(reader)
        assert (first.rows, first.last) == ([], False)
        assert time.monotonic() - started < 1.0
        threading.Timer(0.3, lambda: publish(mqtt_topic, [_message(7)])).start()
        got: list[Row] = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = next(reader).rows
        assert got[0][0] == 7
        threading.Timer(0.3, conn.cancel).start()
        started = time.monotonic()
        with pytest.raises(QueryCancelledError):
            collections.deque(reader, maxlen=0)  # reads until the cancel raises
        assert time.monotonic() - started < 0.8


def test_target_publishes_every_row_confirmed(mqtt_topic: str, subscriber: Any) -> None:
    sub = subscriber(mqtt_topic)
    rows = [(BIG, "ü", Decimal("1.10"), None), (2, "x", Decimal("-0.5"), "n")]
    with Registry.discover().open("MQTT", MQTT) as conn:
        conn.configure({"topic": mqtt_topic})
        plan = WritePlan("ignored", ("id", "name", "amount", "note"))
        conn.prepare_target(plan)
        assert conn.write(Batch.of(plan.columns or (), rows), plan).rows_written == 2
        many = [(i, f"r{i}", Decimal(i), None) for i in range(3, 3003)]
        assert conn.write(Batch.of(plan.columns or (), many), plan).rows_written == 3000
        conn.commit()
    got = [json.loads(b) for b in sub.wait_for(3002)]
    assert got[:2] == [
        {"id": BIG, "name": "ü", "amount": "1.10", "note": None},
        {"id": 2, "name": "x", "amount": "-0.5", "note": "n"},
    ]
    assert sorted(d["id"] for d in got[2:]) == list(range(3, 3003))


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"topic": "a/#/b"}, "message.topic"),
        ({"topic": "a/b+"}, "message.topic"),
        ({"session_expiry": -1}, "message.session_expiry"),
        ({"idle_seconds": "1"}, "message.idle_seconds"),
        ({"retain": "yes"}, "message.retain"),
        ({"client_id": ""}, "message.client_id"),
        ({"qos": 2}, "message.qos"),
    ],
)
def test_bad_message_keys_are_named(options: dict[str, Any], field: str) -> None:
    check = Registry.discover().get("MQTT").check_options
    assert check is not None
    with pytest.raises(InvalidContentError) as caught:
        check(options)
    assert caught.value.field == field


def test_a_target_topic_takes_no_wildcard(mqtt_topic: str) -> None:
    with Registry.discover().open("MQTT", MQTT) as conn:
        conn.configure({"topic": f"{mqtt_topic}/+"})
        with pytest.raises(InvalidContentError, match="no wildcard"):
            conn.prepare_target(WritePlan("t", ("id",)))


def test_check_connects_with_good_credentials(private_broker: dict[str, Any]) -> None:
    with Registry.discover().open("MQTT", private_broker) as conn:
        conn.check()


@pytest.mark.parametrize(
    ("override", "reason", "terminal"),
    [
        ({"password": "s3cret-wrong"}, "Not authorized", True),
        ({"user_name": "nobody", "password": "s3cret-wrong"}, "Not authorized", True),
        ({"port": "1"}, "refused", False),
        ({"host": "no-such-host.invalid"}, "cannot resolve", True),
    ],
)
def test_check_connects_and_says_the_brokers_reason(
    private_broker: dict[str, Any], override: dict[str, str], reason: str, terminal: bool
) -> None:
    conn = Registry.discover().open("MQTT", {**private_broker, **override})
    with conn, pytest.raises(ConnectorError) as caught:
        conn.check()
    assert reason in caught.value.message
    assert "s3cret-wrong" not in caught.value.message
    assert isinstance(caught.value, TerminalConnectorError) is terminal


def test_a_publish_the_broker_refuses_fails_the_batch(private_broker: dict[str, Any]) -> None:
    with Registry.discover().open("MQTT", {**private_broker, "user_name": "reader"}) as conn:
        conn.configure({"topic": "orders"})
        plan = WritePlan("t", ("id",))
        conn.prepare_target(plan)
        with pytest.raises(TerminalConnectorError, match="Not authorized"):
            conn.write(Batch.of(("id",), [(1,), (2,)]), plan)


def test_a_lost_connection_fails_the_read_and_the_unacknowledged_come_back(
    mqtt_topic: str, mqtt_sessions: list[str]
) -> None:
    client_id = _session(mqtt_sessions, mqtt_topic)
    publish(mqtt_topic, [_message(i) for i in range(1, 6)])
    with _open(mqtt_sessions, client_id=client_id, topic=mqtt_topic) as conn:
        reader = conn.read(ReadPlan("t", follow=True))
        first = next(reader)
        assert [r[0] for r in first.rows] == [1, 2, 3, 4, 5]
        # Another connection with the session's client id takes it over (as a second run would).
        threading.Timer(0.1, lambda: forget_session(client_id)).start()
        with pytest.raises(TransientConnectorError, match="connection was lost"):
            collections.deque(reader, maxlen=0)
    publish(mqtt_topic, [_message(6)])  # the session was ended: a new one starts empty
    with _open(mqtt_sessions, client_id=client_id, topic=mqtt_topic) as conn:
        assert _drain(conn, ReadPlan("t")) == ([], [])


def test_without_the_takeover_the_unacknowledged_are_redelivered_after_a_failed_batch(
    mqtt_topic: str, mqtt_sessions: list[str]
) -> None:
    client_id = _session(mqtt_sessions, mqtt_topic)
    publish(mqtt_topic, [_message(i) for i in range(1, 6)])
    with _open(mqtt_sessions, client_id=client_id, topic=mqtt_topic) as conn:
        first = next(conn.read(ReadPlan("t", follow=True)))
        assert len(first.rows) == 5  # the target fails this batch: never acknowledged
    with _open(mqtt_sessions, client_id=client_id, topic=mqtt_topic) as conn:
        rows, _ = _drain(conn, ReadPlan("t"))
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
