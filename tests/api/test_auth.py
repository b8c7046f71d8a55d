"""Authentication and the gateway behaviour around it: signatures, tokens, scope, request ids."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkroma.v2 import ListTasksRequest, RomaClient

from openfdi.client import signed_client
from openfdi.services import identity
from openfdi.wire import signing
from tests.factories import SQLITE_DETAIL, create_task

HEX32 = re.compile(r"^[0-9a-f]{32}$")
CONTENT_TYPE = "application/json;charset=utf-8"


def error_of(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, reply.json()["error_code"]


def hand_signed(
    server_url: str,
    method: str,
    path: str,
    *,
    ak: str,
    sk: str,
    project_id: str | None,
    query: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    when: datetime | None = None,
) -> dict[str, str]:
    """The headers the SDK would send, signed with openfdi.wire.signing (date forgeable)."""
    headers = {
        "content-type": CONTENT_TYPE,
        "host": urlsplit(server_url).netloc,
        "x-sdk-date": (when or datetime.now(UTC)).strftime(signing.DATE_FORMAT),
    }
    if project_id:
        headers["x-project-id"] = project_id
    names = sorted(headers)
    canonical = signing.canonical_request(method, path, query or [], headers, names, body)
    sig = signing.signature(sk, signing.string_to_sign(canonical, headers["x-sdk-date"]))
    headers["authorization"] = signing.authorization_header(ak, names, sig)
    return headers


@pytest.fixture
def project_b(runtime) -> tuple[str, str, str, str]:
    """A second project with its own instance and AK/SK: (project_id, instance_id, ak, sk)."""
    project = identity.create_project(runtime, "project-b")
    instance = identity.create_instance(runtime, project)
    ak, sk = identity.create_credential(runtime, project)
    return project, instance, ak, sk


def sdk_for(server_url: str, ak: str, sk: str, project_id: str) -> RomaClient:
    credentials = BasicCredentials(ak=ak, sk=sk, project_id=project_id)
    return (
        RomaClient.new_builder().with_credentials(credentials).with_endpoints([server_url]).build()
    )


# --- signatures


def test_sdk_signature_works_with_awkward_queries(sdk, signed, creds, base_path) -> None:
    task_id = create_task(sdk, creds.instance_id, name="odd-name_1.x")
    for name in ("odd-name_1.x", "e_1", "a b+c/d~é", "100%"):
        reply = sdk.list_tasks(ListTasksRequest(instance_id=creds.instance_id, name=name))
        assert reply.status_code == 200
        raw = signed.get(f"{base_path}/tasks", params={"name": name})
        assert raw.status_code == 200, raw.text
    found = sdk.list_tasks(ListTasksRequest(instance_id=creds.instance_id, name="odd-name_1.x"))
    assert [t.task_id for t in found.entities] == [task_id]


def test_tampering_is_401(server, anon, creds, base_path) -> None:
    body = json.dumps({"action_id": "stop", "list": [{"task_id": "a" * 32}]}).encode()
    path = f"{base_path}/batch-operation/tasks"
    sign = {"ak": creds.ak, "sk": creds.sk, "project_id": creds.project_id}

    query = [("limit", "5"), ("name", "a b")]
    headers = hand_signed(server.url, "GET", f"{base_path}/tasks", query=query, **sign)
    # The controls: hand-signed requests pass. The query goes out in its canonical form
    # (spaces as %20), as the SDK sends it.
    url = f"{base_path}/tasks?{signing.canonical_query(query)}"
    assert anon.get(url, headers=headers).status_code == 200

    headers = hand_signed(server.url, "POST", path, body=body, **sign)
    assert anon.post(path, content=body, headers=headers).status_code == 200
    tampered = body.replace(b"stop", b"start")
    assert error_of(anon.post(path, content=tampered, headers=headers)) == (401, "APIG.0301")

    list_path = f"{base_path}/tasks"
    headers = hand_signed(server.url, "GET", list_path, query=[("limit", "1")], **sign)
    reply = anon.get(list_path, params={"limit": "2"}, headers=headers)
    assert error_of(reply) == (401, "APIG.0301")
    reply = anon.get(list_path, params={"limit": "1", "offset": "1"}, headers=headers)
    assert error_of(reply) == (401, "APIG.0301")

    headers = hand_signed(server.url, "GET", list_path, **sign)
    reply = anon.get(f"{base_path}/datasources", headers=headers)  # another path
    assert error_of(reply) == (401, "APIG.0301")
    reply = anon.request("DELETE", list_path, headers=headers)  # another method
    assert reply.status_code in (401, 404)
    assert reply.json()["error_code"].startswith("APIG.")
    altered = {**headers, "content-type": "application/xml"}  # a signed header changed
    assert error_of(anon.get(list_path, headers=altered)) == (401, "APIG.0301")


def test_wrong_unknown_or_revoked_keys_are_401(server, runtime, creds, base_path) -> None:
    path = f"{base_path}/tasks"
    for ak, sk in ((creds.ak, creds.sk + "x"), ("UNKNOWNAK00000000000", creds.sk)):
        with signed_client(server.url, ak, sk, creds.project_id) as client:
            reply = client.get(path)
            assert error_of(reply) == (401, "APIG.0301")
            assert "verify aksk signature fail" in reply.json()["error_msg"]

    ak, sk = identity.create_credential(runtime, creds.project_id)
    with signed_client(server.url, ak, sk, creds.project_id) as fresh:
        assert fresh.get(path).status_code == 200
        assert identity.revoke_credential(runtime, creds.project_id, ak)
        assert error_of(fresh.get(path)) == (401, "APIG.0301")
    with pytest.raises(exceptions.ClientRequestException) as caught:
        sdk_for(server.url, ak, sk, creds.project_id).list_tasks(
            ListTasksRequest(instance_id=creds.instance_id)
        )
    assert (caught.value.status_code, caught.value.error_code) == (401, "APIG.0301")


def test_malformed_authorization_is_401(anon, creds, base_path) -> None:
    path = f"{base_path}/tasks"
    date = datetime.now(UTC).strftime(signing.DATE_FORMAT)
    for value in (
        "Bearer abc",
        "SDK-HMAC-SHA256 garbage",
        f"SDK-HMAC-SHA256 Access={creds.ak}, SignedHeaders=host",
        f"SDK-HMAC-SHA256 Access={creds.ak}, SignedHeaders=host, Signature={'0' * 64}",
        "SDK-HMAC-SHA256",
    ):
        reply = anon.get(path, headers={"Authorization": value, "X-Sdk-Date": date})
        assert error_of(reply) == (401, "APIG.0301"), value


def test_clock_skew_beyond_15_minutes_is_401(server, anon, creds, base_path) -> None:
    path = f"{base_path}/tasks"
    now = datetime.now(UTC)
    sign = {"ak": creds.ak, "sk": creds.sk, "project_id": creds.project_id}
    for offset, expected in ((-16, 401), (16, 401), (-60 * 24, 401), (-10, 200), (10, 200)):
        when = now + timedelta(minutes=offset)
        headers = hand_signed(server.url, "GET", path, when=when, **sign)
        reply = anon.get(path, headers=headers)
        assert reply.status_code == expected, (offset, reply.text)
        if expected == 401:
            assert reply.json()["error_code"] == "APIG.0301"
    headers = hand_signed(server.url, "GET", path, **sign)
    headers["x-sdk-date"] = "yesterday"
    assert error_of(anon.get(path, headers=headers)) == (401, "APIG.0301")


# --- project and instance


def test_x_project_id_mismatch_is_fdi_3039(server, anon, creds, base_path) -> None:
    path = f"{base_path}/tasks"
    other = uuid.uuid4().hex
    headers = hand_signed(server.url, "GET", path, ak=creds.ak, sk=creds.sk, project_id=other)
    reply = anon.get(path, headers=headers)
    assert error_of(reply) == (400, "FDI.3039")
    # No X-Project-Id at all is fine: the AK names the project.
    headers = hand_signed(server.url, "GET", path, ak=creds.ak, sk=creds.sk, project_id=None)
    assert anon.get(path, headers=headers).status_code == 200


def test_credentials_of_one_project_on_another_projects_path(
    server, signed, token, anon, creds, base_path, project_b
) -> None:
    project, instance, ak, sk = project_b
    path_b = f"/v2/{project}/fdi/instances/{instance}/tasks"
    assert error_of(signed.get(path_b)) == (400, "FDI.3039")
    assert error_of(anon.get(path_b, headers={"X-Auth-Token": token})) == (400, "FDI.3039")
    with signed_client(server.url, ak, sk, project) as client_b:
        assert client_b.get(path_b).status_code == 200
        assert error_of(client_b.get(f"{base_path}/tasks")) == (400, "FDI.3039")
    # The SDK of project A pointed at project B: the path carries B, the AK belongs to A.
    with pytest.raises(exceptions.ClientRequestException) as caught:
        sdk_for(server.url, creds.ak, creds.sk, project).list_tasks(
            ListTasksRequest(instance_id=instance)
        )
    assert (caught.value.status_code, caught.value.error_code) == (400, "FDI.3039")


def test_unknown_instance_is_roma_00110002(signed, anon, token, creds, project_b) -> None:
    _, instance_b, _, _ = project_b
    for instance in (str(uuid.uuid4()), instance_b, "not-an-instance"):
        path = f"/v2/{creds.project_id}/fdi/instances/{instance}/tasks"
        for reply in (signed.get(path), anon.get(path, headers={"X-Auth-Token": token})):
            assert error_of(reply) == (404, "ROMA.00110002"), instance
            assert instance in reply.json()["error_msg"]


# --- tokens


def test_token_auth_works(anon, token, creds, base_path) -> None:
    headers = {"X-Auth-Token": token}
    ds = anon.post(
        f"{base_path}/datasources",
        json={
            "datasource_name": "token-ds",
            "datasource_type": "SQLITE",
            "content": {"database_name": "/tmp/t.db"},
        },
        headers=headers,
    )
    assert ds.status_code == 201, ds.text
    ds_id = ds.json()["datasource_id"]
    task = anon.post(
        f"{base_path}/tasks",
        json={
            "task": {
                "task_name": "token-task",
                "task_type": "REALTIME",
                "source_datasource_id": ds_id,
                "target_datasource_id": ds_id,
            },
            "task_detail": SQLITE_DETAIL,
        },
        headers=headers,
    )
    assert task.status_code == 200, task.text
    task_id = task.json()["task"]["task_id"]
    reply = anon.post(
        f"{base_path}/batch-operation/tasks",
        json={"action_id": "start", "list": [{"task_id": task_id}]},
        headers=headers,
    )
    assert reply.json()["success_count"] == 1
    assert anon.get(f"{base_path}/tasks", headers=headers).json()["entities"][0]["status"] == 1


def test_missing_or_bogus_token_is_401(anon, token, base_path) -> None:
    path = f"{base_path}/tasks"
    reply = anon.get(path)
    assert error_of(reply) == (401, "APIG.0301")
    assert "x-auth-token not found" in reply.json()["error_msg"]
    for bogus in ("bogus", token + "x", token[:-2], "fdi-" + "A" * 64):
        assert error_of(anon.get(path, headers={"X-Auth-Token": bogus})) == (401, "APIG.0301")
    assert error_of(anon.get(path, headers={"X-Auth-Token": ""})) == (401, "APIG.0301")


def test_expired_token_is_apig_0307(server, anon, runtime, creds, token, base_path, monkeypatch):
    path = f"{base_path}/tasks"
    real_clock = runtime.clock_ms
    ttl_ms = runtime.settings.token_ttl_seconds * 1000
    assert ttl_ms == 24 * 3600 * 1000
    monkeypatch.setattr(runtime, "clock_ms", lambda: real_clock() + ttl_ms - 60_000)
    assert anon.get(path, headers={"X-Auth-Token": token}).status_code == 200  # 23:59 later
    monkeypatch.setattr(runtime, "clock_ms", lambda: real_clock() + ttl_ms + 1_000)
    reply = anon.get(path, headers={"X-Auth-Token": token})
    assert error_of(reply) == (401, "APIG.0307")
    assert reply.json()["error_msg"] == "The token must be updated."

    # A token issued with a TTL of zero is expired at once.
    monkeypatch.undo()
    runtime.settings.token_ttl_seconds = 0
    reply = httpx.post(
        f"{server.url}/v3/auth/tokens",
        json={
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": creds.user, "password": creds.password}},
                },
                "scope": {"project": {"id": creds.project_id}},
            }
        },
    )
    assert reply.status_code == 201, reply.text
    expired = reply.headers["X-Subject-Token"]
    reply = anon.get(f"{base_path}/tasks", headers={"X-Auth-Token": expired})
    assert error_of(reply) == (401, "APIG.0307")


# --- gateway behaviour


@pytest.fixture
def small_body_limit(runtime) -> None:
    """Must come before the server fixture in a test's arguments: the app reads it at start."""
    runtime.settings.max_body_bytes = 4096


def test_every_response_has_a_request_id(server, signed, anon, token, base_path) -> None:
    seen = []
    ds = signed.post(
        f"{base_path}/datasources",
        json={
            "datasource_name": "rid",
            "datasource_type": "SQLITE",
            "content": {"database_name": "/tmp/r.db"},
        },
    )
    replies = [
        ds,
        signed.get(f"{base_path}/tasks"),
        signed.delete(f"{base_path}/datasources/{ds.json()['datasource_id']}"),
        signed.get(f"{base_path}/tasks/{uuid.uuid4().hex}"),
        signed.post(f"{base_path}/batch-operation/tasks", json={"action_id": "x"}),
        anon.get(f"{base_path}/tasks"),
        anon.get(f"{base_path}/tasks", headers={"X-Auth-Token": token}),
        anon.get("/no/such/path"),
        anon.get("/healthz"),
        anon.get("/openapi.json"),
        anon.post("/v3/auth/tokens", json={"auth": {}}),
    ]
    for reply in replies:
        rid = reply.headers.get("X-Request-Id", "")
        assert HEX32.match(rid), (reply.request.url, reply.status_code, rid)
        if reply.status_code >= 400:
            assert reply.json()["request_id"] == rid
        seen.append(rid)
    assert len(set(seen)) == len(seen)
    assert [r.status_code for r in replies] == [
        201,
        200,
        204,
        404,
        400,
        401,
        200,
        404,
        200,
        200,
        400,
    ]


def test_get_and_delete_with_json_content_type_and_no_body(sdk, signed, creds, base_path):
    task_id = create_task(sdk, creds.instance_id)
    headers = {"Content-Type": CONTENT_TYPE}
    assert signed.get(f"{base_path}/tasks", headers=headers).status_code == 200
    assert signed.get(f"{base_path}/tasks/{task_id}", headers=headers).status_code == 200
    assert signed.get(f"{base_path}/statistics/tasks", headers=headers).status_code == 200
    assert signed.delete(f"{base_path}/tasks/{task_id}", headers=headers).status_code == 204
    # What the SDK itself sends for a GET (Content-Type: application/json, no body).
    assert sdk.list_tasks(ListTasksRequest(instance_id=creds.instance_id)).total == 0


def test_unknown_path_or_method_is_apig_0101(signed, anon, base_path) -> None:
    for reply in (
        anon.get("/v2/nothing/here"),
        anon.post("/nope", json={}),
        signed.get(f"{base_path}/no-such-resource"),
        signed.get(f"{base_path}/tasks/a/b/c"),
    ):
        assert error_of(reply) == (404, "APIG.0101"), reply.request.url
        assert reply.json()["error_msg"].startswith("The API does not exist")
    reply = signed.patch(f"{base_path}/tasks", json={})  # a known path, an unknown method
    assert error_of(reply) == (404, "APIG.0101")


def test_oversized_body_is_413(small_body_limit, server, anon, signed, base_path) -> None:
    big = b'{"action_id": "start", "list": [], "pad": "' + b"x" * 5000 + b'"}'
    path = f"{base_path}/batch-operation/tasks"
    for client in (anon, signed):
        reply = client.post(path, content=big, headers={"Content-Type": CONTENT_TYPE})
        assert error_of(reply) == (413, "APIG.0201"), reply.text
        assert HEX32.match(reply.headers["X-Request-Id"])

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(10):
            yield b" " * 1000

    for target in (path, "/v3/auth/tokens"):
        reply = anon.post(target, content=chunks(), headers={"Content-Type": CONTENT_TYPE})
        assert error_of(reply) == (413, "APIG.0201"), (target, reply.text)
    small = {"action_id": "start", "list": []}
    assert error_of(signed.post(path, json=small)) == (400, "FDI.3150")


def test_authentication_precedes_body_parsing_on_every_body_route(signed, anon, base_path):
    some = uuid.uuid4().hex
    routes = [
        ("POST", f"{base_path}/tasks"),
        ("PUT", f"{base_path}/tasks/{some}"),
        ("POST", f"{base_path}/tasks/{some}/dispatches"),
        ("PUT", f"{base_path}/tasks/{some}/dispatches/{some}"),
        ("POST", f"{base_path}/datasources"),
        ("PUT", f"{base_path}/datasources/{some}"),
        ("POST", f"{base_path}/batch-operation/tasks"),
    ]
    headers = {"Content-Type": CONTENT_TYPE}
    for method, path in routes:
        for content in (b"{not json", b"[]"):
            reply = anon.request(method, path, content=content, headers=headers)
            assert error_of(reply) == (401, "APIG.0301"), (method, path, content)
            reply = signed.request(method, path, content=content, headers=headers)
            assert error_of(reply) == (400, "FDI.3002"), (method, path, content)
