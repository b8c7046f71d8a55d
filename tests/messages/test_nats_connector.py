"""The NATS connector on the real JetStream server: exact values, poison messages, ack only when
told, redelivery of what was not acknowledged, publish acks, stop while idle, and the server's
reason on a bad connection (password never shown)."""

from __future__ import annotations

import inspect
import json
import threading
import time
from decimal import Decimal
from typing import Any

import nats.errors
import nats.js.errors
import pytest

from openfdi.connectors._messages import OptionsError
from openfdi.connectors.errors import (
    ConnectorError,
    QueryCancelledError,
    TableNotFoundError,
    TerminalConnectorError,
    TransientConnectorError,
)
from openfdi.connectors.nats import SPEC, check_options
from openfdi.connectors.nats.errors import translate
from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import Batch, Connector, ReadPlan, WritePlan
from tests.messages.nats_support import (
    NATS,
    PrivateServer,
    consumer_info,
    make_stream,
    publish,
    run_js,
    stream_messages,
)

FIELDS: dict[str, Any] = {
    "fields": [
        {"name": "id", "path": "$.order.id", "type": "bigint"},
        {"name": "name", "path": "$.name", "type": "text"},
        {"name": "amount", "path": "$.amount", "type": "decimal"},
        {"name": "note", "path": "$.note", "type": "text"},
        {"name": "tags", "path": "$.tags", "type": "json"},
        {"name": "subj", "meta": "subject", "type": "varchar"},
        {"name": "seq", "meta": "sequence", "type": "bigint"},
    ]
}
BIG = 9223372036854775807


def _open(**options: Any) -> Connector:
    conn = Registry.discover().open("NATS", NATS)
    conn.configure({**FIELDS, **options})
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


def _drain(conn: Connector, plan: ReadPlan, *, ack: bool = True) -> list[Batch]:
    batches = list(conn.read(plan))
    if ack:
        for b in batches:
            if b.acknowledge:
                b.acknowledge()
    return batches


def test_a_timing_read_drains_the_stream_with_exact_values_and_refuses_poison(
    nats_stream: str,
) -> None:
    make_stream(nats_stream, [f"{nats_stream}.>"])
    subject = f"{nats_stream}.orders"
    publish(subject, [_message(BIG), b"{not json", _message(2)])
    with _open(durable="reader") as conn:
        batches = _drain(conn, ReadPlan(nats_stream, batch_rows=100))
    assert batches[-1].last
    rows = [r for b in batches for r in b.rows]
    refused = [r for b in batches for r in b.refused]
    assert rows == [
        (BIG, f"ünï 🎉 {BIG}", Decimal("12345678901234567890.123456789"), None,
         '["a",{"b":1}]', subject, 1),
        (2, "ünï 🎉 2", Decimal("12345678901234567890.123456789"), None,
         '["a",{"b":1}]', subject, 3),
    ]  # fmt: skip
    assert len(refused) == 1
    assert refused[0].row == ("{not json",)
    assert "not json" in refused[0].reason
    info = consumer_info(nats_stream, "reader")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)  # all acknowledged, poison too


def test_the_subject_filter_reads_only_its_subject(nats_stream: str) -> None:
    make_stream(nats_stream, [f"{nats_stream}.>"])
    publish(f"{nats_stream}.a", [_message(1), _message(2)])
    publish(f"{nats_stream}.b", [_message(3)])
    with _open(subject=f"{nats_stream}.b") as conn:
        rows = [r for b in _drain(conn, ReadPlan(nats_stream)) for r in b.rows]
    assert [r[0] for r in rows] == [3]


def test_unacknowledged_messages_come_back_after_ack_wait(nats_stream: str) -> None:
    make_stream(nats_stream)
    publish(nats_stream, [_message(i) for i in range(1, 11)])
    with _open(ack_wait=1) as conn:
        batches = _drain(conn, ReadPlan(nats_stream, batch_rows=100), ack=False)
        assert sum(len(b) for b in batches) == 10  # read, never acknowledged: closed
    assert consumer_info(nats_stream, f"openfdi-{nats_stream}").num_ack_pending == 10
    time.sleep(1.2)
    with _open(ack_wait=1) as conn:
        rows = [r for b in _drain(conn, ReadPlan(nats_stream, batch_rows=100)) for r in b.rows]
    assert sorted(r[0] for r in rows) == list(range(1, 11))
    info = consumer_info(nats_stream, f"openfdi-{nats_stream}")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


def test_the_next_read_resumes_after_what_was_acknowledged(nats_stream: str) -> None:
    make_stream(nats_stream)
    publish(nats_stream, [_message(i) for i in range(1, 6)])
    with _open() as conn:
        assert sum(len(b) for b in _drain(conn, ReadPlan(nats_stream))) == 5
    publish(nats_stream, [_message(i) for i in range(6, 9)])
    with _open() as conn:
        rows = [r for b in _drain(conn, ReadPlan(nats_stream)) for r in b.rows]
    assert [r[0] for r in rows] == [6, 7, 8]


def test_a_following_read_yields_while_idle_and_a_cancel_ends_it_at_once(
    nats_stream: str,
) -> None:
    make_stream(nats_stream)
    with _open() as conn:
        started = time.monotonic()
        reader = conn.read(ReadPlan(nats_stream, batch_seconds=0.2, follow=True))
        first = next(reader)
        assert first.rows == []
        assert not first.last
        assert time.monotonic() - started < 1.0
        threading.Timer(0.3, lambda: publish(nats_stream, [_message(7)])).start()
        got: list[tuple[object, ...]] = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = next(reader).rows
        assert got[0][0] == 7
        # Idle again, and cancelled from another thread: the read ends within a slice.
        cancelled_at: list[float] = []

        def cancel() -> None:
            cancelled_at.append(time.monotonic())
            conn.cancel()

        threading.Timer(0.3, cancel).start()

        def read_on() -> None:
            while True:
                next(reader)

        with pytest.raises(QueryCancelledError):
            read_on()
        assert time.monotonic() - cancelled_at[0] < 0.5


def test_target_publishes_every_row_with_its_jetstream_ack(nats_stream: str) -> None:
    rows = [(BIG, "ü", Decimal("1.10"), None), (2, "x", Decimal("-0.5"), "n")]
    rows += [(i, f"r{i}", Decimal(i), None) for i in range(3, 2001)]
    conn = Registry.discover().open("NATS", NATS)
    conn.configure({"create": True})
    with conn:
        plan = WritePlan(nats_stream, ("id", "name", "amount", "note"))
        conn.prepare_target(plan)
        assert conn.write(Batch.of(plan.columns or (), rows), plan).rows_written == 2000
        conn.commit()
    got = [json.loads(b) for b in stream_messages(nats_stream)]
    assert len(got) == 2000
    assert got[:2] == [
        {"id": BIG, "name": "ü", "amount": "1.10", "note": None},
        {"id": 2, "name": "x", "amount": "-0.5", "note": "n"},
    ]


def test_a_target_without_its_stream_is_a_missing_table(nats_stream: str) -> None:
    conn = Registry.discover().open("NATS", NATS)
    with conn, pytest.raises(TableNotFoundError, match=nats_stream):
        conn.prepare_target(WritePlan(nats_stream, ("id",)))


def test_a_subject_another_stream_captures_fails_the_batch(nats_stream: str) -> None:
    make_stream(nats_stream)
    other = f"{nats_stream}_other"
    make_stream(other, [f"{other}.in"])
    try:
        conn = Registry.discover().open("NATS", NATS)
        conn.configure({"subject": f"{other}.in"})
        with conn:
            plan = WritePlan(nats_stream, ("id",))
            conn.prepare_target(plan)
            with pytest.raises(TerminalConnectorError, match="expected stream"):
                conn.write(Batch.of(("id",), [(1,)]), plan)
        assert stream_messages(nats_stream) == []
    finally:

        async def drop(js: Any) -> None:
            await js.delete_stream(other)

        run_js(drop)


def test_a_missing_stream_is_a_missing_table(nats_stream: str) -> None:
    with _open() as conn, pytest.raises(TableNotFoundError):
        list(conn.read(ReadPlan(nats_stream)))


def test_check_and_tables(nats_stream: str) -> None:
    make_stream(nats_stream)
    with Registry.discover().open("NATS", NATS) as conn:
        conn.check()
        assert nats_stream in conn.list_tables()


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"port": "1"}, "ConnectionRefusedError"),
        ({"host": "no-such-host.invalid"}, "no-such-host.invalid:4222"),
    ],
)
def test_check_says_why_it_cannot_connect(
    override: dict[str, str], reason: str, nats_stream: str
) -> None:
    started = time.monotonic()
    conn = Registry.discover().open("NATS", {**NATS, **override, "password": "s3cret-wrong"})
    with conn, pytest.raises(ConnectorError) as caught:
        conn.check()
    assert reason in caught.value.message
    assert "s3cret-wrong" not in caught.value.message
    assert time.monotonic() - started < 10


def test_check_refuses_bad_credentials_without_echoing_them(
    nats_with_password: dict[str, str],
) -> None:
    # The right password connects; this private server runs without JetStream, and says so.
    conn = Registry.discover().open("NATS", nats_with_password)
    with conn, pytest.raises(TerminalConnectorError, match="JetStream is not enabled"):
        conn.check()
    bad = {**nats_with_password, "password": "s3cret-wrong"}
    with Registry.discover().open("NATS", bad) as conn, pytest.raises(ConnectorError) as caught:
        conn.check()
    assert "authorization" in caught.value.message.lower()
    assert "s3cret-wrong" not in caught.value.message


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"subject": "a..b"}, "message.subject"),
        ({"subject": "a.>.b"}, "message.subject"),
        ({"durable": "has.dot"}, "message.durable"),
        ({"ack_wait": 0}, "message.ack_wait"),
        ({"ack_wait": "30"}, "message.ack_wait"),
        ({"create": "yes"}, "message.create"),
        ({"exchange": "x"}, "message.exchange"),
    ],
)
def test_invalid_keys_are_refused_naming_them(options: dict[str, Any], field: str) -> None:
    with pytest.raises(OptionsError) as caught:
        check_options(options)
    assert caught.value.field == field
    assert SPEC.check_options is check_options
    check_options({"subject": "orders.*.created", "durable": "d-1", "ack_wait": 2.5})


def test_a_target_subject_must_not_be_a_pattern(nats_stream: str) -> None:
    make_stream(nats_stream, [f"{nats_stream}.>"])
    conn = Registry.discover().open("NATS", NATS)
    conn.configure({"subject": f"{nats_stream}.>"})
    with conn, pytest.raises(ConnectorError, match="pattern"):
        conn.prepare_target(WritePlan(nats_stream, ("id",)))


def _classes(module: Any) -> list[type[BaseException]]:
    return [
        cls
        for _name, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, nats.errors.Error)
    ]


def test_every_nats_exception_class_is_mapped() -> None:
    classes = _classes(nats.errors) + _classes(nats.js.errors)
    assert len(classes) > 40
    for cls in classes:
        required = [
            p
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.default is inspect.Parameter.empty
        ]
        exc = cls(*["x"] * len(required))
        mapped = translate(exc)
        assert isinstance(mapped, TransientConnectorError | TerminalConnectorError), cls
    assert isinstance(translate(nats.js.errors.NotFoundError()), TableNotFoundError)
    assert isinstance(translate(nats.errors.AuthorizationError()), TerminalConnectorError)
    assert isinstance(translate(ConnectionRefusedError()), TransientConnectorError)


def test_json_paths_with_indexes_and_quoted_keys_reach_nested_values() -> None:
    from openfdi.connectors._messages import parse_options

    fields = [
        {"name": "sku", "path": "$.order.items[1].sku", "type": "text"},
        {"name": "odd", "path": "$['a b'][0]", "type": "bigint"},
    ]
    decode = parse_options({"fields": fields}).decoder()
    doc = b'{"order": {"items": [{"sku": "x"}, {"sku": "y"}]}, "a b": [9223372036854775807]}'
    assert decode(doc, {}) == ("y", BIG)


def test_a_lost_server_fails_the_work_in_hand_as_transient_at_once(
    private_jetstream: PrivateServer,
) -> None:
    content = {"host": "127.0.0.1", "port": str(private_jetstream.port)}
    target = Registry.discover().open("NATS", content)
    target.configure({"create": True})
    source = Registry.discover().open("NATS", content)
    source.configure({"ack_wait": 1})
    with target, source:
        plan = WritePlan("lost", ("id",))
        target.prepare_target(plan)
        assert target.write(Batch.of(("id",), [(1,), (2,)]), plan).rows_written == 2
        reader = source.read(ReadPlan("lost", follow=True))
        assert [r for r in next(reader).rows] == [('{"id":1}',), ('{"id":2}',)]
        private_jetstream.kill()
        started = time.monotonic()
        with pytest.raises(TransientConnectorError):
            target.write(Batch.of(("id",), [(3,)]), plan)
        with pytest.raises(TransientConnectorError):
            next(reader)
        assert time.monotonic() - started < 3


def test_a_timing_read_ends_at_the_last_message_of_its_start_while_more_keep_coming(
    nats_stream: str,
) -> None:
    make_stream(nats_stream)
    publish(nats_stream, [_message(i) for i in range(1, 11)])
    stop = threading.Event()

    def keep_publishing() -> None:
        i = 100
        while not stop.is_set():
            publish(nats_stream, [_message(i)])
            i += 1

    busy = threading.Thread(target=keep_publishing)
    busy.start()
    try:
        time.sleep(0.1)
        with _open() as conn:
            started = time.monotonic()
            rows = [r for b in _drain(conn, ReadPlan(nats_stream, batch_rows=5)) for r in b.rows]
            assert time.monotonic() - started < 5
    finally:
        stop.set()
        busy.join()
    assert [r[0] for r in rows[:10]] == list(range(1, 11))
