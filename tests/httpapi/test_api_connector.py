"""The API connector against a real HTTP server on loopback: every paging kind reads each record
once, every auth kind is sent as the server requires it, 429/503 are retried (Retry-After
honoured, within the bound), hostile answers fail with a clear reason, a record that does not
fit its type is a dirty row, time windows checkpoint per page, and a target delivers every row
with idempotency keys and refuses only the rows the API refuses."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from openfdi.connectors._messages import OptionsError, _getter, parse_options
from openfdi.connectors.api import SPEC
from openfdi.connectors.api.connector import ApiConnector
from openfdi.connectors.api.options import check_options
from openfdi.connectors.api.records import (
    BadRecordError,
    _convert_for,
    _slow_decoder,
    decoder,
    encoder,
    exact_json,
    page_decoder,
    parse_json,
    parse_json_bytes,
)
from openfdi.connectors.errors import ConnectorError, InvalidContentError, QueryCancelledError
from openfdi.connectors.spi import Batch, Column, LogicalType, ReadPlan, TableSchema, WritePlan
from tests.httpapi import fake_api
from tests.httpapi.fake_api import FakeApi

BIG = Decimal("12345678901234567890.123456789")


def amount(i: int) -> Decimal:
    """BIG + i, exactly (Decimal arithmetic would round to 28 digits)."""
    return Decimal(f"{12345678901234567890 + i}.123456789")


FIELDS = [
    {"name": "id", "path": "$.id", "type": "bigint"},
    {"name": "name", "path": "$.name", "type": "text"},
    {"name": "amount", "path": "$.amount", "type": "decimal"},
    {"name": "ratio", "path": "$.ratio", "type": "double"},
    {"name": "city", "path": "$.address.city", "type": "text"},
]


def _records(n: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"ü🎉{i}", "amount": amount(i), "ratio": Decimal("0.1"),
         "address": {"city": "Zürich"}}
        for i in range(1, n + 1)
    ]  # fmt: skip


def _connector(api: FakeApi, auth: dict[str, Any] | None = None, path: str = "") -> ApiConnector:
    content: dict[str, Any] = {"url": api.url + path}
    if auth is not None:
        content["api_auth_detail"] = auth
    connector = SPEC.open(content)
    assert isinstance(connector, ApiConnector)
    return connector


def _read(connector: ApiConnector, options: dict[str, Any], **plan: Any) -> list[Batch]:
    connector.configure(options)
    try:
        return list(connector.read(ReadPlan(table="orders", **plan)))
    finally:
        connector.close()


def _rows(batches: list[Batch]) -> list[tuple[Any, ...]]:
    return [row for b in batches for row in b.rows]


PAGE = {"records": "$.data.items", "fields": FIELDS,
        "paging": {"type": "page", "param": "page", "start": 1, "size_param": "size",
                   "size": 10, "total_path": "$.total"}}  # fmt: skip


def test_page_numbers_read_every_record_once_with_exact_values(api: FakeApi) -> None:
    api.state.records = _records(95)
    rows = _rows(_read(_connector(api, path="/orders"), PAGE))
    assert [r[0] for r in rows] == list(range(1, 96))
    assert rows[0] == (1, "ü🎉1", amount(1), 0.1, "Zürich")
    assert isinstance(rows[0][2], Decimal)
    assert str(rows[94][2]) == str(amount(95))
    assert len(api.state.requests) == 10  # the short tenth page ends the read


@pytest.mark.parametrize(
    ("path", "paging", "records"),
    [
        ("/offset", {"type": "offset", "param": "offset", "size_param": "limit", "size": 8}, None),
        ("/cursor", {"type": "cursor", "param": "cursor", "next_path": "$.next_cursor"}, "$.items"),
        ("/link", {"type": "link"}, None),
    ],
)
def test_offset_cursor_and_link_paging_read_every_record_once(
    api: FakeApi, path: str, paging: dict[str, Any], records: str | None
) -> None:
    api.state.records = _records(40)
    options: dict[str, Any] = {"fields": FIELDS, "paging": paging}
    if records:
        options["records"] = records
    rows = _rows(_read(_connector(api, path=path), options))
    assert [r[0] for r in rows] == list(range(1, 41))


def test_max_pages_stops_the_read(api: FakeApi) -> None:
    api.state.records = _records(95)
    options = {**PAGE, "paging": {**PAGE["paging"], "max_pages": 3}}  # type: ignore[dict-item]
    assert len(_rows(_read(_connector(api, path="/orders"), options))) == 30


AUTHS = {
    "basic": {"auth_method": "basicauth", "user_name": fake_api.USER,
              "password": fake_api.PASSWORD},
    "bearer": {"auth_method": "bearer", "token": fake_api.BEARER},
    "apikey": {"auth_method": "apikey", "key": fake_api.API_KEY},
    "oauth2": {"auth_method": "oauth2.0", "token_url": "{url}/token",
               "client_id": fake_api.CLIENT_ID, "client_secret": fake_api.CLIENT_SECRET},
    "aksk": {"auth_method": "aksk", "ak": fake_api.AK, "sk": fake_api.SK, "project_id": "p1"},
}  # fmt: skip


def _auth(kind: str, api: FakeApi, **changes: str) -> dict[str, Any]:
    auth = {k: v.replace("{url}", api.url) for k, v in AUTHS[kind].items()}
    return {**auth, **changes}


@pytest.mark.parametrize("kind", sorted(AUTHS))
def test_each_auth_kind_is_accepted_and_a_wrong_secret_is_a_clear_401(
    api: FakeApi, kind: str
) -> None:
    api.state.auth = kind
    api.state.records = _records(25)
    rows = _rows(_read(_connector(api, _auth(kind, api), "/orders"), PAGE))
    assert len(rows) == 25
    secret = {"basic": "password", "bearer": "token", "oauth2": "client_secret", "aksk": "sk",
              "apikey": "key"}  # fmt: skip
    wrong = _auth(kind, api, **{secret[kind]: "wrong-secret-value"})
    with pytest.raises(ConnectorError) as caught:
        _read(_connector(api, wrong, "/orders"), PAGE)
    assert "401" in caught.value.message
    assert "wrong-secret-value" not in caught.value.message


def test_oauth2_token_is_cached_and_fetched_again_once_on_401(api: FakeApi) -> None:
    api.state.auth = "oauth2"
    api.state.records = _records(95)
    connector = _connector(api, _auth("oauth2", api), "/orders")
    connector.configure(PAGE)
    batches = connector.read(ReadPlan(table="orders", batch_rows=10))
    rows = list(next(batches).rows)
    assert api.state.tokens_issued == 1
    api.state.tokens.clear()  # every token revoked: the next page answers 401 once
    for batch in batches:
        rows.extend(batch.rows)
    connector.close()
    assert [r[0] for r in rows] == list(range(1, 96))
    assert api.state.tokens_issued == 2


def test_429_with_retry_after_and_a_503_are_tried_again(api: FakeApi) -> None:
    api.state.records = _records(15)
    api.state.faults = [(429, {"Retry-After": "1"}), (503, {})]
    started = time.monotonic()
    rows = _rows(_read(_connector(api, path="/orders"), PAGE))
    assert len(rows) == 15
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert len(api.state.requests) == 4


def test_retries_are_bounded_and_the_run_fails_with_the_servers_answer(api: FakeApi) -> None:
    api.state.records = _records(5)
    api.state.faults = [(503, {}) for _ in range(10)]
    started = time.monotonic()
    with pytest.raises(ConnectorError) as caught:
        _read(_connector(api, path="/orders"), {**PAGE, "retries": 2, "retry_max_s": 5})
    assert "503" in caught.value.message
    assert "3 tries" in caught.value.message
    assert time.monotonic() - started < 10
    assert len(api.state.requests) == 3


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("huge", "larger than max_response_bytes"),
        ("deep", "nested too deeply"),
        ("utf8", "not UTF-8"),
        ("html", "not JSON"),
        ("object", "no list of records at $.items"),
    ],
)
def test_hostile_answers_fail_the_read_with_a_clear_reason(
    api: FakeApi, kind: str, expected: str
) -> None:
    options = {"records": "$.items", "max_response_bytes": 1024 * 1024}
    with pytest.raises(ConnectorError) as caught:
        _read(_connector(api, path=f"/hostile/{kind}"), options)
    assert expected in caught.value.message


def test_a_missing_record_path_is_a_run_error(api: FakeApi) -> None:
    api.state.records = _records(3)
    with pytest.raises(ConnectorError, match=r"no list of records at \$\.data\.rows"):
        _read(_connector(api, path="/orders"), {**PAGE, "records": "$.data.rows"})


def test_a_record_that_does_not_fit_its_type_is_a_dirty_row(api: FakeApi) -> None:
    api.state.records = [*_records(3), {"id": "x7", "amount": "1.5"}, {"id": 9, "amount": "abc"}]
    batches = _read(_connector(api, path="/orders"), PAGE)
    assert [r[0] for r in _rows(batches)] == [1, 2, 3]
    refused = [r for b in batches for r in b.refused]
    assert len(refused) == 2
    assert "field id" in refused[0].reason
    assert '"x7"' in refused[0].row[0]
    assert "field amount" in refused[1].reason


def _events(base: datetime, hours: int, per_hour: int) -> list[dict[str, Any]]:
    out = []
    for h in range(hours):
        for k in range(per_hour):
            ts = base + timedelta(hours=h, minutes=k * (60 // per_hour))
            out.append({"id": h * 100 + k, "ts": ts.isoformat().replace("+00:00", "Z")})
    return out


WINDOW = {
    "records": "$.items",
    "fields": [{"name": "id", "path": "$.id", "type": "bigint"},
               {"name": "ts", "path": "$.ts", "type": "timestamptz"}],
    "paging": {"type": "page", "param": "page", "size_param": "size", "size": 2},
    "window": {"start_param": "from", "end_param": "to", "size_s": 3600},
}  # fmt: skip


def test_windows_checkpoint_per_page_and_resume_inside_a_window(api: FakeApi) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    api.state.records = _events(base, 3, 5)
    connector = _connector(api, path="/events")
    connector.clock = lambda: base + timedelta(hours=3)
    connector.configure(WINDOW)
    plan = ReadPlan(table="e", incremental_column="ts", watermark=base.isoformat(), batch_rows=1)
    batches = connector.read(plan)
    first = [next(batches) for _ in range(4)]  # window 1: pages 1-3, window 2: page 1
    batches.close()
    assert [r[0] for b in first for r in b.rows] == [0, 1, 2, 3, 4, 100, 101]
    assert first[2].position == (base + timedelta(hours=1)).isoformat()  # window 1 done
    mid = json.loads(first[3].position)
    assert mid["next"]["page"] == 2
    assert mid["from"] == (base + timedelta(hours=1)).isoformat()

    resumed = list(connector.read(ReadPlan(table="e", incremental_column="ts",
                                           watermark=first[3].position)))  # fmt: skip
    connector.close()
    ids = [r[0] for b in resumed for r in b.rows]
    assert ids == [102, 103, 104, 200, 201, 202, 203, 204]
    assert resumed[-1].position == (base + timedelta(hours=3)).isoformat()
    # Window 2's first page was asked for once: the resumed read began at its second page.
    window_2 = [r for r in api.state.requests if "from=2026-01-01T01%3A00%3A00Z" in r]
    assert sum("page=1&" in r for r in window_2) == 1


def test_target_posts_every_row_once_with_keys_retries_and_refuses_only_bad_rows(
    api: FakeApi,
) -> None:
    api.state.faults = [(429, {"Retry-After": "0"})]
    api.state.refuse_ids = {7}
    connector = _connector(api, path="/sink")
    connector.configure({"rows_per_request": 10, "root": "data"})
    columns = (
        Column("id", LogicalType.BIGINT),
        Column("amount", LogicalType.DECIMAL),
        Column("doc", LogicalType.JSON),
    )
    schema = TableSchema("t", columns)
    plan = WritePlan(table="t", source_schema=schema)
    connector.prepare_target(plan)
    rows = [(i, amount(i), '{"a": 1.10}') for i in range(1, 26)]
    result = connector.write(Batch.of(schema.names, rows), plan)
    connector.commit()
    connector.close()
    assert result.rows_written == 24
    assert [r.row[0] for r in result.rejected] == [7]
    assert "422" in result.rejected[0].reason
    got = sorted(api.state.received, key=lambda r: r["id"])
    assert [r["id"] for r in got] == [i for i in range(1, 26) if i != 7]
    assert got[0] == {"id": 1, "amount": str(amount(1)), "doc": {"a": "1.10"}}
    assert len(set(api.state.keys)) == len(api.state.keys)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"paging": {"type": "pages"}}, "message.paging.type"),
        ({"paging": {"type": "cursor"}}, "message.paging.next_path"),
        ({"paging": {"type": "offset", "size_param": "limit"}}, "message.paging.size"),
        ({"records": "data.items"}, "message.records"),
        ({"window": {"start_param": "from"}}, "message.window.end_param"),
        ({"window": {"start_param": "a", "end_param": "b", "format": "yyyy"}},
         "message.window.format"),
        ({"fields": [{"name": "a", "meta": "topic"}]}, "message.fields[0].meta"),
        ({"fields": [{"name": "a", "path": "$.a", "type": "money"}]}, "message.fields[0].type"),
        ({"format": "csv"}, "message.format"),
        ({"headers": {"Bad Header": "x"}}, "message.headers.Bad Header"),
        ({"retries": -1}, "message.retries"),
        ({"mode": "stream"}, "message.mode"),
        ({"mode": "row", "decimals": "float"}, "message.decimals"),
        ({"surprise": 1}, "message.surprise"),
    ],
)  # fmt: skip
def test_bad_options_are_refused_naming_the_key(options: dict[str, Any], field: str) -> None:
    with pytest.raises(OptionsError) as caught:
        check_options(options)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({"url": "ftp://x"}, "url"),
        ({"url": "http://x", "api_method": "DELETE"}, "api_method"),
        ({"url": "http://x", "api_auth_detail": {"auth_method": "magic"}},
         "api_auth_detail.auth_method"),
        ({"url": "http://x", "api_auth_detail": {"auth_method": "oauth2.0", "client_id": "a",
          "client_secret": "b"}}, "api_auth_detail.token_url"),
        ({"url": "http://x", "api_auth_detail": "{not json"}, "api_auth_detail"),
    ],
)  # fmt: skip
def test_bad_content_is_refused_naming_the_field(content: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidContentError) as caught:
        SPEC.open(content)
    assert caught.value.field == field


def test_the_compiled_record_decoder_gives_the_field_by_field_rows() -> None:
    fields = parse_options({"fields": [
        {"name": "i", "path": "$.i", "type": "bigint"},
        {"name": "d", "path": "$.a.d", "type": "decimal"},
        {"name": "f", "path": "$.f", "type": "double"},
        {"name": "t", "path": "$.t", "type": "text"},
        {"name": "b", "path": "$.b", "type": "boolean"},
        {"name": "at", "path": "$.at", "type": "timestamptz"},
        {"name": "day", "path": "$.x[1]", "type": "date"},
        {"name": "j", "path": "$.j", "type": "json"},
    ]}).fields  # fmt: skip
    compiled = decoder(fields, None)
    slow = _slow_decoder(
        [(f.name, f.type, _getter(f, "json"), _convert_for(f.type)) for f in fields]
    )
    records = [
        '{"i": 1, "a": {"d": 1.10}, "f": 0.1, "t": "ü", "b": true,'
        ' "at": "2026-01-01T01:00:00+01:00", "x": [0, "2026-02-03"], "j": {"n": 1.50, "s": [1]}}',
        '{"i": "7", "a": {"d": 3}, "f": 2, "t": {"k": 1.0}, "b": "yes",'
        ' "at": "2026-01-01T00:00:00", "x": [], "j": [1.0]}',
        '{"a": 5, "t": 12}',
        '{"i": true}',
        '{"a": {"d": "abc"}}',
        '{"at": "yesterday"}',
        "[1, 2]",
    ]
    for text in records:
        record = parse_json(text)
        try:
            expected: Any = slow(record)
        except BadRecordError as exc:
            expected = str(exc)
        try:
            got: Any = compiled(record)
        except BadRecordError as exc:
            got = str(exc)
        assert got == expected, text
    assert compiled(parse_json(records[0]))[1] == Decimal("1.10")


def test_a_page_decoded_by_column_gives_the_record_decoders_rows() -> None:
    fields = parse_options({"fields": [
        {"name": "i", "path": "$.i", "type": "bigint"},
        {"name": "d", "path": "$.a.d", "type": "decimal"},
        {"name": "deep", "path": "$.a.b.c", "type": "text"},
        {"name": "f", "path": "$.f", "type": "double"},
        {"name": "t", "path": "$.t", "type": "text"},
        {"name": "b", "path": "$.b", "type": "boolean"},
        {"name": "at", "path": "$.at", "type": "timestamptz"},
        {"name": "day", "path": "$.x[1]", "type": "date"},
        {"name": "j", "path": "$.j", "type": "json"},
    ]}).fields  # fmt: skip
    one = decoder(fields, None)
    pages = {
        "all typed already": [
            '{"i": 1, "a": {"d": 1.10, "b": {"c": "ü"}}, "f": 0.1, "t": "x", "b": true,'
            ' "at": "2026-01-01T01:00:00Z", "x": [0, "2026-02-03"], "j": {"n": 1.50}}',
            '{"i": null, "a": null, "t": null, "at": null, "x": null}',
        ],
        "converted": [
            '{"i": "7", "a": {"d": 3, "b": 4}, "f": 2, "t": {"k": 1.0}, "b": "yes",'
            ' "at": "2026-01-01T00:00:00", "x": [], "j": [1.0]}',
            '{"a": 5, "t": 12, "at": "2026-07-01T12:00:00.5+05:30"}',
            '{"a": {"d": "-0.000"}, "b": false, "at": "2026-01-01T00:00:00.000001+00:00"}',
        ],
        "zones": [
            '{"at": "2026-01-01T00:00:00-08:00"}',
            '{"at": "2026-01-01T00:00:00Z"}',
            '{"at": "2026-01-01T00:00:00"}',
        ],
        "a bad value": ['{"i": 1}', '{"a": {"d": "abc"}}'],
        "a bool for a number": ['{"i": 1}', '{"i": true}'],
        "a number for a time": ['{"i": 1}', '{"at": 1767225600}'],
        "a bad time": ['{"at": "2026-01-01T00:00:00Z"}', '{"at": "yesterday"}'],
        "not an object": ['{"i": 1}', "[1, 2]"],
        "empty": [],
    }
    for name in ("i", "at"):
        columns = [name, "t"]
        assert page_decoder(fields, columns)(
            [{"i": 3, "t": "u", "at": "2026-01-01T00:00:00Z"}]
        ) == [decoder(fields, columns)({"i": 3, "t": "u", "at": "2026-01-01T00:00:00Z"})]
    by_page = page_decoder(fields, None)
    for name, texts in pages.items():
        records = [parse_json(text) for text in texts]
        try:
            expected: Any = [one(r) for r in records]
        except BadRecordError:
            expected = None  # a record the page decoder leaves to `decoder`, which names it
        got = by_page(records)
        assert got == expected, name
        if name in ("all typed already", "converted", "zones", "empty"):
            assert got is not None, name  # decoded by column, not left to `decoder`
        if got is not None:  # equal and of the same types (1 == True == Decimal(1)...)
            assert [[type(v) for v in row] for row in got] == [
                [type(v) for v in row] for row in expected
            ], name
            assert [[getattr(v, "tzinfo", None) for v in row] for row in got] == [
                [getattr(v, "tzinfo", None) for v in row] for row in expected
            ], name
    assert by_page([parse_json(pages["not an object"][1])]) is None


def test_a_body_parses_as_the_standard_library_parses_its_text() -> None:
    bodies = [
        b'{"a": 1, "a": [1e5, 1E-2, -0.0, 0.10, -0, 1.5e999, 18446744073709551616]}',
        b' {"x": "\\u00fc\\n \xc3\xbc", "": null, "t": [true, false]} ',
        b"[NaN, Infinity, -Infinity]",  # the standard library's extensions
        b'"\\ud800"',  # a lone surrogate
        b"12345678901234567890.000000000000000000001",
    ]
    for body in bodies:
        fast, reference = parse_json_bytes(body), parse_json(body.decode("utf-8"))
        assert repr(fast) == repr(reference), body  # repr: Decimal('0.10') is not Decimal('0.1')
    refused = [
        (b"\xef\xbb\xbf{}", ValueError),
        (b"1 2", ValueError),
        (b'"\xff"', UnicodeDecodeError),
        (b"[" * 100_000, RecursionError),
    ]
    for bad, error in refused:
        with pytest.raises(error):
            parse_json_bytes(bad)


def _doc_example(marker: str) -> dict[str, Any]:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "http-api.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```json\n(.*?)```", doc, re.S)
    assert match, f"docs/http-api.md has no {marker} block"
    return dict(json.loads(match.group(1)))


def test_the_docs_examples_read_and_write_as_documented(api: FakeApi) -> None:
    source = _doc_example("api-source-example")["sourceSelectedDatasource"]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    api.state.records = [
        {"id": i, "amount": amount(i), "customer": {"address": {"city": "Zürich"}},
         "updated_at": (base + timedelta(minutes=7 * i)).isoformat()}
        for i in range(1, 40)
    ]  # fmt: skip
    connector = _connector(api)
    connector.clock = lambda: base + timedelta(hours=5)
    check_options(source["message"])
    connector.configure(source["message"])
    plan = ReadPlan(table=source["table"], incremental_column=source["incremental"]["column"],
                    watermark=source["incremental"]["start"])  # fmt: skip
    batches = list(connector.read(plan))
    rows = _rows(batches)
    assert [r[0] for r in rows] == list(range(1, 40))
    assert rows[0][1:3] == (amount(1), "Zürich")
    assert batches[-1].position == (base + timedelta(hours=5)).isoformat()
    connector.close()

    target = _doc_example("api-target-example")["targetSelectedDatasource"]
    check_options(target["message"])
    connector = _connector(api)
    connector.configure(target["message"])
    schema = TableSchema("orders", (Column("id", LogicalType.BIGINT),))
    plan_w = WritePlan(table=target["table"], source_schema=schema)
    connector.prepare_target(plan_w)
    result = connector.write(Batch.of(("id",), [(i,) for i in range(1, 1201)]), plan_w)
    connector.close()
    assert result.rows_written == 1200
    assert [r["id"] for r in api.state.received] == list(range(1, 1201))
    assert len(api.state.keys) == 3  # 500 rows a request


def test_cancel_ends_a_read_waiting_for_a_slow_answer_at_once(api: FakeApi) -> None:
    api.state.delay_s = 1.5
    connector = _connector(api, path="/orders")
    connector.configure(PAGE)
    threading.Timer(0.2, connector.cancel).start()
    started = time.monotonic()
    with pytest.raises(QueryCancelledError):
        list(connector.read(ReadPlan(table="orders")))
    assert time.monotonic() - started < 1.0
    connector.close()


@pytest.mark.parametrize("as_strings", [False, True])
def test_the_compiled_row_encoder_writes_what_exact_json_writes(as_strings: bool) -> None:
    values = [
        None, True, False, 0, -(2**63), 2**70, 1.5, float("nan"), float("inf"), "", 'ü"\\\n',
        Decimal("1.10"), Decimal("-0"), Decimal("1E+3"), Decimal("NaN"), Decimal("Infinity"),
        datetime(2026, 1, 1, tzinfo=UTC), timedelta(hours=-1), b"\x00\xff",
        {"k": [1, Decimal("2.0")]},
    ]  # fmt: skip
    columns = [f"c{i}" for i in range(len(values))]
    encode = encoder(columns, None, [False] * len(values), decimals_as_strings=as_strings)
    text = encode(tuple(values))
    inner = ",".join(
        f'"{c}":{exact_json(v, decimals_as_strings=as_strings)}'
        for c, v in zip(columns, values, strict=True)
    )
    assert text == "{" + inner + "}"
    doc = json.loads(text, parse_float=Decimal)
    assert doc["c11"] == ("1.10" if as_strings else Decimal("1.10"))


def test_incremental_without_a_window_is_refused_rather_than_read_again_each_run(
    api: FakeApi,
) -> None:
    api.state.records = _records(3)
    with pytest.raises(InvalidContentError) as caught:
        _read(_connector(api, path="/orders"), PAGE, incremental_column="id")
    assert caught.value.field == "message.window"
    assert api.state.requests == []
