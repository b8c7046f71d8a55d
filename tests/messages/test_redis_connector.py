"""The REDIS connector on the real server: a stream through a consumer group (exact values,
poison entries, acknowledged only when told, a crashed reader's backlog read again, stop while
blocked), keys as rows, stream and hash targets, and the server's reason on a bad connection
(password never shown)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis.exceptions as rx

from openfdi.connectors._messages import OptionsError
from openfdi.connectors.errors import (
    ConnectorError,
    InvalidContentError,
    QueryCancelledError,
    TerminalConnectorError,
    TransientConnectorError,
)
from openfdi.connectors.redis import check_options
from openfdi.connectors.redis.errors import translate
from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import Batch, Connector, ReadPlan, WriteMode, WritePlan
from tests.messages.conftest import REDIS
from tests.messages.redis_support import admin, pending, redis_ns

__all__ = ["redis_ns"]  # a fixture

FIELDS = {
    "fields": [
        {"name": "id", "path": "$.order.id", "type": "bigint"},
        {"name": "name", "path": "$.name", "type": "text"},
        {"name": "amount", "path": "$.amount", "type": "decimal"},
        {"name": "note", "path": "$.note", "type": "text"},
        {"name": "tags", "path": "$.tags", "type": "json"},
        {"name": "sid", "meta": "id", "type": "varchar"},
    ]
}
BIG = 9223372036854775807


def _open(**options: Any) -> Connector:
    conn = Registry.discover().open("REDIS", REDIS)
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


def _add(stream: str, payloads: list[bytes]) -> list[bytes]:
    client = admin()
    return [client.xadd(stream, {"payload": p}) for p in payloads]


def _drain(conn: Connector, stream: str, *, ack: bool = True, **plan: Any) -> list[Batch]:
    batches = list(conn.read(ReadPlan(stream, **{"batch_rows": 100, **plan})))
    if ack:
        for b in batches:
            if b.acknowledge:
                b.acknowledge()
    return batches


def test_a_timing_read_drains_the_stream_with_exact_values_and_refuses_poison(
    redis_ns: str,
) -> None:
    ids = _add(redis_ns, [_message(BIG), b"{not json", _message(2)])
    with _open() as conn:
        batches = _drain(conn, redis_ns)
    assert batches[-1].last
    rows = [r for b in batches for r in b.rows]
    refused = [r for b in batches for r in b.refused]
    assert rows[0] == (
        BIG,
        f"ünï 🎉 {BIG}",
        Decimal("12345678901234567890.123456789"),
        None,
        '["a",{"b":1}]',
        ids[0].decode(),
    )
    assert rows[1][0] == 2
    assert len(refused) == 1
    assert refused[0].row == ("{not json",)
    assert "not json" in refused[0].reason
    assert pending(redis_ns) == 0  # all acknowledged, the poison one too


def test_a_timing_read_ends_at_what_the_stream_held_when_it_started(redis_ns: str) -> None:
    _add(redis_ns, [_message(i) for i in range(1, 251)])
    with _open() as conn:
        reader = conn.read(ReadPlan(redis_ns, batch_rows=100))
        first = next(reader)
        _add(redis_ns, [_message(i) for i in range(251, 261)])  # after the start: not waited for
        rest = list(reader)
    assert len(first) == 100
    assert rest[-1].last
    assert sum(len(b) for b in [first, *rest]) >= 250


def test_unacknowledged_entries_come_back_to_the_next_reader(redis_ns: str) -> None:
    _add(redis_ns, [_message(i) for i in range(1, 11)])
    with _open() as conn:
        first = _drain(conn, redis_ns, ack=False)  # read, never acknowledged: a crash
    assert sum(len(b) for b in first) == 10
    assert pending(redis_ns) == 10
    _add(redis_ns, [_message(11)])
    with _open() as conn:
        again = _drain(conn, redis_ns)
    assert sorted(r[0] for b in again for r in b.rows) == list(range(1, 12))
    assert pending(redis_ns) == 0


def test_entries_another_consumer_left_pending_are_claimed(redis_ns: str) -> None:
    _add(redis_ns, [_message(i) for i in range(1, 6)])
    client = admin()
    client.xgroup_create(redis_ns, "openfdi", id="0")
    client.xreadgroup("openfdi", "gone", {redis_ns: ">"}, count=3)  # a consumer that died
    with _open(**FIELDS, claim_idle_ms=0) as conn:
        rows = [r for b in _drain(conn, redis_ns) for r in b.rows]
    assert sorted(r[0] for r in rows) == [1, 2, 3, 4, 5]
    assert pending(redis_ns) == 0


def test_a_deleted_pending_entry_leaves_the_backlog(redis_ns: str) -> None:
    ids = _add(redis_ns, [_message(1), _message(2)])
    with _open() as conn:
        _drain(conn, redis_ns, ack=False)
    admin().xdel(redis_ns, ids[0])
    with _open() as conn:
        rows = [r for b in _drain(conn, redis_ns) for r in b.rows]
    assert [r[0] for r in rows] == [2]
    assert pending(redis_ns) == 0


def test_an_entry_without_a_payload_field_is_read_as_its_fields(redis_ns: str) -> None:
    entry = admin().xadd(redis_ns, {"id": "7", "city": "Zürich", "source": "pos"})
    options = {
        "fields": [
            {"name": "id", "path": "$.id", "type": "bigint"},
            {"name": "city", "path": "$.city", "type": "text"},
            {"name": "source", "meta": "headers.source", "type": "text"},
            {"name": "at", "meta": "timestamp", "type": "timestamptz"},
            {"name": "stream", "meta": "stream", "type": "text"},
        ]
    }
    with _open(**options) as conn:
        rows = [r for b in _drain(conn, redis_ns) for r in b.rows]
    ms = int(entry.split(b"-")[0])
    assert rows == [
        (7, "Zürich", "pos", dt.datetime.fromtimestamp(ms / 1000, dt.UTC), redis_ns),
    ]


def test_a_following_read_yields_while_idle_and_stops_within_the_deadline(redis_ns: str) -> None:
    with _open() as conn:
        started = time.monotonic()
        reader = conn.read(ReadPlan(redis_ns, batch_seconds=0.2, follow=True))
        first = next(reader)
        assert first.rows == []
        assert not first.last
        assert time.monotonic() - started < 1.0
        threading.Timer(0.3, lambda: _add(redis_ns, [_message(7)])).start()
        got: list[tuple[object, ...]] = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = next(reader).rows
        assert got[0][0] == 7
        # Blocked waiting for entries, a cancel from another thread ends the read at once.
        long = conn.read(ReadPlan(redis_ns, batch_seconds=30, follow=True))
        threading.Timer(0.3, conn.cancel).start()
        started = time.monotonic()
        with pytest.raises(QueryCancelledError):
            next(long)
        assert time.monotonic() - started < 1.0


def test_a_group_starting_at_the_end_reads_only_new_entries(redis_ns: str) -> None:
    _add(redis_ns, [_message(1)])
    with _open(**FIELDS, group="late", start="$") as conn:
        assert [r for b in _drain(conn, redis_ns) for r in b.rows] == []
    _add(redis_ns, [_message(2)])
    with _open(**FIELDS, group="late", start="$") as conn:
        assert [r[0] for b in _drain(conn, redis_ns) for r in b.rows] == [2]


def test_a_key_of_another_type_fails_the_read_with_the_reason(redis_ns: str) -> None:
    admin().set(redis_ns, "a string")
    with _open() as conn, pytest.raises(TerminalConnectorError, match="WRONGTYPE"):
        _drain(conn, redis_ns)


# --- keys as rows ------------------------------------------------------------------------


def test_keys_matching_a_pattern_are_rows(redis_ns: str) -> None:
    client = admin()
    client.hset(f"{redis_ns}:h:1", mapping={"id": "1", "name": "ü", "amount": "1.10"})
    client.hset(f"{redis_ns}:h:2", mapping={"id": str(BIG), "name": "🎉"})
    client.set(f"{redis_ns}:h:3", json.dumps({"id": 3, "name": "s", "amount": "0.5"}))
    client.set(f"{redis_ns}:h:4", "not json")
    client.rpush(f"{redis_ns}:h:5", "a list")
    client.set(f"{redis_ns}:other", json.dumps({"id": 99}))
    options = {
        "mode": "keys",
        "fields": [
            {"name": "id", "path": "$.id", "type": "bigint"},
            {"name": "name", "path": "$.name", "type": "text"},
            {"name": "amount", "path": "$.amount", "type": "decimal"},
            {"name": "k", "meta": "key", "type": "text"},
        ],
    }
    with _open(**options) as conn:
        batches = list(conn.read(ReadPlan(f"{redis_ns}:h:*", batch_rows=2)))
    assert batches[-1].last
    rows = sorted(r for b in batches for r in b.rows)
    assert rows == [
        (1, "ü", Decimal("1.10"), f"{redis_ns}:h:1"),
        (3, "s", Decimal("0.5"), f"{redis_ns}:h:3"),
        (BIG, "🎉", None, f"{redis_ns}:h:2"),
    ]
    reasons = sorted(r.reason for b in batches for r in b.refused)
    assert len(reasons) == 2
    assert "only hashes and strings" in reasons[0] or "only hashes and strings" in reasons[1]
    assert any("not json" in r for r in reasons)


def test_string_keys_read_raw_are_one_value_column(redis_ns: str) -> None:
    admin().set(f"{redis_ns}:s", "plain ✓")
    with _open(mode="keys", format="raw") as conn:
        rows = [r for b in conn.read(ReadPlan(f"{redis_ns}:*")) for r in b.rows]
    assert rows == [("plain ✓",)]


def test_keys_are_read_by_timing_tasks_only(redis_ns: str) -> None:
    with _open(mode="keys") as conn, pytest.raises(TerminalConnectorError, match="TIMING"):
        next(conn.read(ReadPlan(f"{redis_ns}:*", follow=True)))


# --- targets -----------------------------------------------------------------------------

ROWS = [
    (BIG, "ü", Decimal("1.10"), None, 0.1 + 0.2, True),
    (2, "x", Decimal("-0.5"), "n", None, False),
]
COLUMNS = ("id", "name", "amount", "note", "x", "ok")


def _write(conn: Connector, plan: WritePlan, rows: list[tuple[Any, ...]]) -> Any:
    conn.prepare_target(plan)
    result = conn.write(Batch.of(plan.columns or (), rows), plan)
    conn.commit()
    return result


def test_a_stream_target_appends_json_entries(redis_ns: str) -> None:
    with _open(maxlen=1000) as conn:
        result = _write(conn, WritePlan(redis_ns, COLUMNS), ROWS)
    assert result.rows_written == 2
    got = [json.loads(fields[b"payload"]) for _id, fields in admin().xrange(redis_ns)]
    assert got == [
        {"id": BIG, "name": "ü", "amount": "1.10", "note": None, "x": 0.30000000000000004,
         "ok": True},
        {"id": 2, "name": "x", "amount": "-0.5", "note": "n", "x": None, "ok": False},
    ]  # fmt: skip


def test_a_stream_target_writes_columns_as_fields_and_reads_them_back(redis_ns: str) -> None:
    with _open(field="*") as conn:
        _write(conn, WritePlan(redis_ns, COLUMNS), ROWS)
    entries = [fields for _id, fields in admin().xrange(redis_ns)]
    assert entries[1] == {b"id": b"2", b"name": b"x", b"amount": b"-0.5", b"note": b"n",
                          b"ok": b"false"}  # fmt: skip
    options = {"fields": [
        {"name": "id", "path": "$.id", "type": "bigint"},
        {"name": "amount", "path": "$.amount", "type": "decimal"},
        {"name": "x", "path": "$.x", "type": "double"},
        {"name": "ok", "path": "$.ok", "type": "boolean"},
    ]}  # fmt: skip
    with _open(**options) as conn:
        rows = [r for b in _drain(conn, redis_ns) for r in b.rows]
    assert rows == [(BIG, Decimal("1.10"), 0.1 + 0.2, True), (2, Decimal("-0.5"), None, False)]


def test_a_hash_target_upserts_one_hash_per_key(redis_ns: str) -> None:
    plan = WritePlan(redis_ns, COLUMNS, WriteMode.UPSERT, ("id",))
    with _open() as conn:
        _write(conn, plan, ROWS)
        result = _write(
            conn, plan, [(2, "y", None, None, 1.5, True), (None, "k", None, None, 1.0, True)]
        )
    assert result.rows_written == 1
    assert [r.reason for r in result.rejected] == ["a key column is null"]
    client = admin()
    assert client.hgetall(f"{redis_ns}:{BIG}") == {
        b"id": str(BIG).encode(), b"name": "ü".encode(), b"amount": b"1.10",
        b"x": b"0.30000000000000004", b"ok": b"true",
    }  # fmt: skip
    # Written again: the nulls removed the fields they had, the rest replaced.
    assert client.hgetall(f"{redis_ns}:2") == {b"id": b"2", b"name": b"y", b"x": b"1.5",
                                               b"ok": b"true"}  # fmt: skip


def test_a_hash_target_with_a_prefix_and_two_key_columns(redis_ns: str) -> None:
    plan = WritePlan("ignored", ("a", "b", "v"), WriteMode.UPSERT, ("a", "b"))
    with _open(mode="keys", prefix=f"{redis_ns}:p") as conn:
        _write(conn, plan, [("x", 1, "v1")])
    assert admin().hgetall(f"{redis_ns}:p:x:1") == {b"a": b"x", b"b": b"1", b"v": b"v1"}


def test_targets_refuse_what_they_cannot_do(redis_ns: str) -> None:
    with _open(mode="keys") as conn, pytest.raises(TerminalConnectorError, match="keyColumns"):
        conn.prepare_target(WritePlan(redis_ns, ("id",)))
    with _open() as conn, pytest.raises(TerminalConnectorError, match="truncate_insert"):
        conn.prepare_target(WritePlan(redis_ns, ("id",), WriteMode.TRUNCATE_INSERT))


# --- control plane -----------------------------------------------------------------------


@pytest.fixture
def acl_user() -> Iterator[tuple[str, str]]:
    name, password = f"openfdi_t_{uuid.uuid4().hex[:8]}", "right-pass"
    client = admin()
    client.acl_setuser(
        name, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
    )
    yield name, password
    client.acl_deluser(name)


def test_check_connects_with_an_acl_user(acl_user: tuple[str, str]) -> None:
    name, password = acl_user
    with Registry.discover().open("REDIS", {**REDIS, "user_name": name, "password": password}) as c:
        c.check()


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"password": "s3cret-wrong"}, "invalid username-password pair"),
        ({"port": "1"}, "Connection refused"),
        ({"host": "no-such-host.invalid"}, "no-such-host.invalid"),
    ],
)
def test_check_connects_and_says_the_servers_reason(
    override: dict[str, str], reason: str, acl_user: tuple[str, str]
) -> None:
    content = {**REDIS, "user_name": acl_user[0], "password": acl_user[1], **override}
    conn = Registry.discover().open("REDIS", content)
    with conn, pytest.raises(ConnectorError) as caught:
        conn.check()
    assert reason in caught.value.message
    assert "s3cret-wrong" not in caught.value.message
    assert "right-pass" not in caught.value.message


def test_tables_lists_streams(redis_ns: str) -> None:
    _add(f"{redis_ns}:s1", [b"{}"])
    admin().set(f"{redis_ns}:not-a-stream", "x")
    with Registry.discover().open("REDIS", REDIS) as conn:
        tables = conn.list_tables()
    assert f"{redis_ns}:s1" in tables
    assert f"{redis_ns}:not-a-stream" not in tables


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"mode": "hash"}, "message.mode"),
        ({"group": ""}, "message.group"),
        ({"start": "latest"}, "message.start"),
        ({"maxlen": 0}, "message.maxlen"),
        ({"claim_idle_ms": "1"}, "message.claim_idle_ms"),
        ({"exchange": "x"}, "message.exchange"),
    ],
)
def test_invalid_redis_keys_are_named(options: dict[str, Any], field: str) -> None:
    with pytest.raises(OptionsError) as caught:
        check_options(options)
    assert caught.value.field == field


def test_every_redis_exception_is_mapped() -> None:
    def classes(base: type[BaseException]) -> Iterator[type[BaseException]]:
        for sub in base.__subclasses__():
            yield sub
            yield from classes(sub)

    for cls in {rx.RedisError, *classes(rx.RedisError)}:
        try:
            exc = cls("boom")
        except (TypeError, ValueError):
            continue  # needs arguments of another form: built by redis-py only
        mapped = translate(exc)
        assert isinstance(mapped, TerminalConnectorError | TransientConnectorError), cls
    assert isinstance(translate(rx.ConnectionError("x")), TransientConnectorError)
    assert isinstance(translate(rx.AuthenticationError("x")), TerminalConnectorError)
    assert translate(ValueError("x")) is None


def test_json_paths_step_through_indexes_and_quoted_keys() -> None:
    from openfdi.connectors._messages import parse_options

    fields = [
        {"name": "second", "path": "$.items[1].sku", "type": "text"},
        {"name": "spaced", "path": "$['a b']['']", "type": "bigint"},
    ]
    decode = parse_options({"fields": fields}).decoder()
    doc = {"items": [{"sku": "A"}, {"sku": "B"}], "a b": {"": 5}}
    assert decode(json.dumps(doc).encode(), {}) == ("B", 5)


def test_redis_database_selects_the_database_and_must_be_a_number(redis_ns: str) -> None:
    import redis

    other = redis.Redis(db=1)
    try:
        with Registry.discover().open("REDIS", {**REDIS, "redis_database": "1"}) as conn:
            conn.configure({})
            _write(conn, WritePlan(redis_ns, ("id",)), [(1,)])
        assert other.xlen(redis_ns) == 1
        assert admin().exists(redis_ns) == 0
    finally:
        other.delete(redis_ns)
    with pytest.raises(InvalidContentError) as caught:
        Registry.discover().open("REDIS", {**REDIS, "redis_database": "first"})
    assert caught.value.field == "redis_database"
