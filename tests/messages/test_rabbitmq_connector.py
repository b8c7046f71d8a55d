"""The RABBITMQ connector on the real broker: exact values, poison messages, ack only when told,
confirms, stop while idle, and the broker's reason on a bad connection (password never shown)."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

import pytest

from openfdi.connectors.errors import ConnectorError, TableNotFoundError, TerminalConnectorError
from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import Batch, Connector, ReadPlan, WritePlan
from tests.messages.conftest import RABBIT, rabbit_drain, rabbit_publish

FIELDS = {
    "fields": [
        {"name": "id", "path": "$.order.id", "type": "bigint"},
        {"name": "name", "path": "$.name", "type": "text"},
        {"name": "amount", "path": "$.amount", "type": "decimal"},
        {"name": "note", "path": "$.note", "type": "text"},
        {"name": "tags", "path": "$.tags", "type": "json"},
        {"name": "rk", "meta": "routing_key", "type": "varchar"},
    ]
}
BIG = 9223372036854775807


def _open(**options: object) -> Connector:
    conn = Registry.discover().open("RABBITMQ", RABBIT)
    conn.configure(options or FIELDS)
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


def test_a_timing_read_drains_the_queue_with_exact_values_and_refuses_poison(
    rabbit_queue: str,
) -> None:
    rabbit_publish(rabbit_queue, [_message(BIG), b"{not json", _message(2)])
    with _open() as conn:
        batches = list(conn.read(ReadPlan(rabbit_queue, batch_rows=100)))
        assert batches[-1].last
        rows = [r for b in batches for r in b.rows]
        refused = [r for b in batches for r in b.refused]
        for b in batches:
            if b.acknowledge:
                b.acknowledge()
    assert rows[0] == (
        BIG,
        f"ünï 🎉 {BIG}",
        Decimal("12345678901234567890.123456789"),
        None,
        '["a",{"b":1}]',
        rabbit_queue,
    )
    assert rows[1][0] == 2
    assert len(refused) == 1
    assert refused[0].row == ("{not json",)
    assert "not json" in refused[0].reason
    assert rabbit_drain(rabbit_queue) == []  # all acknowledged, the poison one too


def test_unacknowledged_messages_come_back(rabbit_queue: str) -> None:
    rabbit_publish(rabbit_queue, [_message(i) for i in range(1, 11)])
    with _open() as conn:
        batches = list(conn.read(ReadPlan(rabbit_queue, batch_rows=100)))
        assert sum(len(b) for b in batches) == 10  # read, never acknowledged: closed
    assert len(rabbit_drain(rabbit_queue)) == 10


def test_a_following_read_yields_while_idle_so_it_can_stop(rabbit_queue: str) -> None:
    rabbit_publish(rabbit_queue, [])
    with _open() as conn:
        started = time.monotonic()
        reader = conn.read(ReadPlan(rabbit_queue, batch_seconds=0.2, follow=True))
        first = next(reader)
        assert first.rows == []
        assert not first.last
        assert time.monotonic() - started < 1.0
        threading.Timer(0.3, lambda: rabbit_publish(rabbit_queue, [_message(7)])).start()
        got: list[tuple[object, ...]] = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = next(reader).rows
        assert got[0][0] == 7


def test_target_publishes_confirmed_persistent_json(rabbit_queue: str) -> None:
    rows = [(BIG, "ü", Decimal("1.10"), None), (2, "x", Decimal("-0.5"), "n")]
    with _open(declare=True) as conn:
        plan = WritePlan(rabbit_queue, ("id", "name", "amount", "note"))
        conn.prepare_target(plan)
        assert conn.write(Batch.of(plan.columns or (), rows), plan).rows_written == 2
        conn.commit()
    got = [json.loads(b) for b in rabbit_drain(rabbit_queue)]
    assert got == [
        {"id": BIG, "name": "ü", "amount": "1.10", "note": None},
        {"id": 2, "name": "x", "amount": "-0.5", "note": "n"},
    ]


def test_an_unroutable_message_fails_the_batch(rabbit_queue: str) -> None:
    with _open(exchange="amq.direct", routing_key=rabbit_queue) as conn:  # nothing bound
        plan = WritePlan(rabbit_queue, ("id",))
        conn.prepare_target(plan)
        with pytest.raises(TerminalConnectorError, match="unroutable"):
            conn.write(Batch.of(("id",), [(1,)]), plan)


def test_a_missing_queue_is_a_missing_table(rabbit_queue: str) -> None:
    with _open() as conn, pytest.raises(TableNotFoundError):
        list(conn.read(ReadPlan(rabbit_queue)))


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"password": "s3cret-wrong"}, "ACCESS_REFUSED"),
        ({"rabbitmq_virtual_host": "no_such_vhost"}, "vhost no_such_vhost not found"),
        ({"port": "1"}, "refused"),
    ],
)
def test_check_connects_and_says_the_brokers_reason(
    override: dict[str, str], reason: str, rabbit_queue: str
) -> None:
    conn = Registry.discover().open("RABBITMQ", {**RABBIT, **override})
    with conn, pytest.raises(ConnectorError) as caught:
        conn.check()
    assert reason in caught.value.message
    assert "s3cret-wrong" not in caught.value.message


def test_a_timing_read_of_a_deep_queue_reads_every_message(rabbit_queue: str) -> None:
    # A deep queue is paged in by the broker with pauses; a TIMING read ended at the first
    # empty receive in the tail of a batch window, after 1,447 of 50,000 messages.
    total = 20_000
    rabbit_publish(rabbit_queue, [_message(i) for i in range(total)])
    seen = 0
    with _open() as conn:
        for batch in conn.read(ReadPlan(rabbit_queue, batch_rows=500)):
            seen += len(batch.rows)
            if batch.acknowledge:
                batch.acknowledge()
    assert seen == total
    assert rabbit_drain(rabbit_queue) == []


def test_deliveries_decoded_from_the_socket_carry_every_byte_and_field(rabbit_queue: str) -> None:
    # Bodies larger than a frame (131,072 bytes) come in several body frames; an empty body is a
    # delivery too (refused: not JSON); metadata is read from the method and header frames.
    big = "ü" * 200_000
    bodies = [_message(1), json.dumps({"order": {"id": 2}, "name": big}).encode(), b"", _message(4)]
    rabbit_publish(rabbit_queue, bodies, message_id="m", timestamp=1_700_000_000,
                   headers={"source": "test", "n": 7})  # fmt: skip
    fields = [*FIELDS["fields"][:2],
              {"name": "mid", "meta": "message_id", "type": "varchar"},
              {"name": "ts", "meta": "timestamp", "type": "bigint"},
              {"name": "hdr", "meta": "headers", "type": "json"},
              {"name": "again", "meta": "redelivered", "type": "boolean"},
              {"name": "rk", "meta": "routing_key", "type": "varchar"}]  # fmt: skip
    with _open(fields=fields) as conn:
        batches = list(conn.read(ReadPlan(rabbit_queue, batch_rows=100)))
        for b in batches:
            if b.acknowledge:
                b.acknowledge()
    rows = [r for b in batches for r in b.rows]
    assert [r[0] for r in rows] == [1, 2, 4]
    assert rows[1][1] == big
    assert rows[0][2:4] == ("m", 1_700_000_000)
    assert json.loads(rows[0][4]) == {"source": "test", "n": 7}
    assert rows[0][5:] == (False, rabbit_queue)
    assert [r.row for b in batches for r in b.refused] == [("",)]
    assert rabbit_drain(rabbit_queue) == []


def test_a_second_read_sees_deliveries_marked_redelivered(rabbit_queue: str) -> None:
    rabbit_publish(rabbit_queue, [_message(i) for i in range(1, 4)])
    fields = [FIELDS["fields"][0], {"name": "again", "meta": "redelivered", "type": "boolean"}]
    with _open(fields=fields) as conn:
        first = [r for b in conn.read(ReadPlan(rabbit_queue)) for r in b.rows]  # never acked
    with _open(fields=fields) as conn:
        second = [r for b in conn.read(ReadPlan(rabbit_queue)) for r in b.rows]
    assert first == [(1, False), (2, False), (3, False)]
    assert second == [(1, True), (2, True), (3, True)]


def test_broker_answers_between_deliveries_lose_and_double_nothing(rabbit_queue: str) -> None:
    # The queue's depth is asked between batches: its answer arrives among the deliveries and
    # is handed to pika with the bytes after it, which pika then decodes itself.
    total = 20_000
    rabbit_publish(rabbit_queue, [_message(i) for i in range(total)])
    seen: list[int] = []
    depths: list[int | None] = []
    with _open() as conn:
        for batch in conn.read(ReadPlan(rabbit_queue, batch_rows=700)):
            seen += [r[0] for r in batch.rows]
            depths.append(conn.backlog())
            if batch.acknowledge:
                batch.acknowledge()
    assert seen == list(range(total))
    assert depths[-1] == 0
    assert rabbit_drain(rabbit_queue) == []
