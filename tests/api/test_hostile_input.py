"""Hostile input gets a 400 naming what is wrong, never a 500, on both metadata databases.

Unknown query parameters, path segments out of their declared bounds, and (below) text that no
metadata database can store. Each case asserts the FDI code and that the field is named.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
from huaweicloudsdkroma.v2 import ListDatasourceColumnsRequest, ListDatasourceTablesRequest

from tests.factories import create_sqlite_datasource

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


def refused(reply: httpx.Response, code: str, *named: str) -> None:
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["error_code"] == code, body
    for name in named:
        assert name in body["error_msg"], body


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("task_nmae=x", "task_nmae"),  # a misspelt filter must not silently list everything
        ("=null&datasource_id=", "[]"),  # the CI fuzz case: a parameter with an empty name
        ("limit=1&LIMIT=2", "LIMIT"),
    ],
)
def test_unknown_query_parameter_is_refused_by_name(signed, base_path, query, name):
    refused(signed.get(f"{base_path}/tasks?{query}"), "FDI.3002", name)


def test_unknown_query_parameter_is_refused_on_every_route(signed, base_path):
    refused(signed.get(f"{base_path}/datasources?bogus=1"), "FDI.3002", "bogus")
    refused(signed.get(f"{base_path}/statistics/tasks?bogus=1"), "FDI.3002", "bogus")
    refused(signed.post(f"{base_path}/tasks?bogus=1", json={}), "FDI.3002", "bogus")
    refused(signed.get("/v3/projects?bogus=1"), "FDI.3002", "bogus")


def test_authentication_comes_before_the_unknown_query_check(anon, base_path):
    reply = anon.get(f"{base_path}/tasks?bogus=1")
    assert reply.status_code == 401, reply.text
    assert anon.get("/v3/projects?bogus=1").status_code == 401


@pytest.mark.parametrize(
    "segment",
    [
        "a" * 65,  # over the declared maxLength
        "a b",  # outside the declared pattern
        "a%00b",  # NUL: PostgreSQL cannot compare it (psycopg DataError, once a 500)
        "%ED%A0%80",  # a UTF-8-encoded lone surrogate
        "x" * 5000,
    ],
)
def test_path_parameters_out_of_bounds_are_refused(signed, base_path, creds, segment):
    refused(signed.get(f"{base_path}/tasks/{segment}"), "FDI.3002", "task_id")
    refused(signed.get(f"{base_path}/datasources/{segment}"), "FDI.3002", "datasource_id")
    other = f"/v2/{segment}/fdi/instances/{creds.instance_id}/tasks"
    refused(signed.get(other), "FDI.3002", "project_id")
    other = f"/v2/{creds.project_id}/fdi/instances/{segment}/tasks"
    refused(signed.get(other), "FDI.3002", "instance_id")


def test_path_bounds_are_what_the_openapi_document_declares(anon):
    document = anon.get("/openapi.json").json()
    operation = document["paths"]["/v2/{project_id}/fdi/instances/{instance_id}/tasks/{task_id}"]
    params = {p["name"]: p["schema"] for p in operation["get"]["parameters"]}
    for name in ("project_id", "instance_id", "task_id"):
        assert params[name]["maxLength"] == 64, params[name]
        assert params[name]["pattern"] == "^[0-9A-Za-z_-]+$", params[name]


def test_the_sdk_query_parameters_are_declared(sdk, creds, tmp_path: Path):
    """Every query parameter the official SDK sends is known: none is refused as unknown."""
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    source = create_sqlite_datasource(sdk, creds.instance_id, str(db))
    tables = sdk.list_datasource_tables(
        ListDatasourceTablesRequest(
            instance_id=creds.instance_id,
            datasource_id=source,
            position="SOURCE",
            db_name="main",
            db_schema="main",
            filter="ord",
        )
    )
    assert tables.tables == ["orders"]
    columns = sdk.list_datasource_columns(
        ListDatasourceColumnsRequest(
            instance_id=creds.instance_id,
            datasource_id=source,
            position="SOURCE",
            db_name="main",
            table_name="orders",
        )
    )
    assert [c.field_name for c in columns.columns] == ["id"]


# Text no metadata database can store, in every body field a client writes. JSON can carry a lone
# surrogate (as the escape \ud800) and NUL (\u0000); PostgreSQL refuses NUL in text and neither
# database nor the secret box can encode a lone surrogate. The body is sent pre-encoded because a
# JSON encoder with ensure_ascii=False (httpx's) cannot even write a lone surrogate.
HOSTILE_TEXT = [("\ud800", "surrogate"), ("a\x00b", "NUL")]


def post_json(client: httpx.Client, url: str, body: object, method: str = "POST") -> httpx.Response:
    import json

    return client.request(
        method, url, content=json.dumps(body), headers={"Content-Type": "application/json"}
    )


def datasource_body(**overrides: object) -> dict[str, object]:
    content: dict[str, object] = {"database_name": "/tmp/hostile.db"}
    content.update(overrides.pop("content", {}))  # type: ignore[arg-type]
    return {
        "datasource_name": "hostile",
        "datasource_type": "SQLITE",
        "content": content,
        **overrides,
    }


@pytest.mark.parametrize(("text", "kind"), HOSTILE_TEXT)
@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("datasource_name", lambda t: datasource_body(datasource_name=t)),
        ("description", lambda t: datasource_body(description=t)),
        ("database_name", lambda t: datasource_body(content={"database_name": f"/tmp/{t}.db"})),
        ("password", lambda t: datasource_body(content={"password": t})),
    ],
)
def test_unstorable_text_in_a_data_source_is_a_400_naming_the_field(
    signed, base_path, field, body, text, kind
):
    reply = post_json(signed, f"{base_path}/datasources", body(text))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] in ("FDI.3002", "FDI.3033"), reply.text
    assert field in reply.json()["error_msg"], reply.text


@pytest.mark.parametrize(("text", "kind"), HOSTILE_TEXT)
@pytest.mark.parametrize("field", ["task_name", "description", "task_detail"])
def test_unstorable_text_in_a_task_is_a_400_naming_the_field(
    sdk, signed, base_path, creds, field, text, kind
):
    source = create_sqlite_datasource(sdk, creds.instance_id)
    task = {
        "task_name": "hostile",
        "task_type": "TIMING",
        "source_datasource_id": source,
        "target_datasource_id": source,
    }
    detail = (
        '{"sourceSelectedDatasource": {"table": "a"}, "targetSelectedDatasource": {"table": "b"}}'
    )
    if field == "task_detail":
        detail = detail.replace('"a"', '"' + text + '"')
    else:
        task[field] = text
    reply = post_json(signed, f"{base_path}/tasks", {"task": task, "task_detail": detail})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] in ("FDI.3002", "FDI.3033"), reply.text
    assert field in reply.json()["error_msg"], reply.text


def test_a_task_detail_nested_thousands_deep_is_a_400(sdk, signed, base_path, creds):
    source = create_sqlite_datasource(sdk, creds.instance_id)
    deep = "[" * 20_000 + "]" * 20_000
    task = {
        "task_name": "deep",
        "task_type": "TIMING",
        "source_datasource_id": source,
        "target_datasource_id": source,
    }
    reply = post_json(signed, f"{base_path}/tasks", {"task": task, "task_detail": deep})
    assert reply.status_code == 400, reply.text
    assert "task_detail" in reply.json()["error_msg"], reply.text
    # The same depth anywhere in the body, even in a field the model ignores.
    body = '{"task": {"task_name": "deep"}, "x": ' + "[" * 20_000 + "]" * 20_000 + "}"
    reply = signed.post(
        f"{base_path}/tasks", content=body, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "FDI.3002", reply.text


def test_a_path_of_five_thousand_characters_is_a_400(signed, base_path):
    reply = post_json(
        signed,
        f"{base_path}/datasources",
        datasource_body(content={"database_name": "/" + "x" * 5000}),
    )
    assert reply.status_code == 400, reply.text
    assert "database_name" in reply.json()["error_msg"], reply.text


@pytest.mark.parametrize(("text", "kind"), HOSTILE_TEXT)
def test_unstorable_text_in_a_sign_in_is_a_400_naming_the_field(anon, creds, text, kind):
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": text, "password": text, "domain": {"name": text}}},
            },
            "scope": {"project": {"id": creds.project_id}},
        }
    }
    reply = post_json(anon, "/v3/auth/tokens", body)
    assert reply.status_code == 400, reply.text
    assert "name" in reply.json()["error_msg"], reply.text
