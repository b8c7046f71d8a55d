"""What a signature covers: the body, Host, X-Sdk-Date, each signed header once, the query as the
handlers read it. Requests are signed by the official SDK's own `Signer` and replayed raw, the
way an attacker on the path would replay a captured one."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkroma.v2 import BatchStartOrStopTasksRequest, OperateTasksBean, TaskBean

from openfdi.wire import signing
from tests.factories import create_task

JSON = "application/json;charset=utf-8"


def sdk_signed(
    server_url: str,
    creds,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """The headers the SDK sends for this request, signed by the SDK's own Signer."""
    request = SdkRequest(
        method=method,
        schema="http",
        host=urlsplit(server_url).netloc,
        resource_path=path,
        query_params=list(query or []),
        header_params={"Content-Type": JSON, "X-Project-Id": creds.project_id, **(headers or {})},
        body=body,
    )
    Signer(BasicCredentials(ak=creds.ak, sk=creds.sk)).sign(request)
    return {k: str(v) for k, v in request.header_params.items()}


def error_of(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, reply.json()["error_code"]


@pytest.fixture
def started_task(sdk, creds) -> str:
    task_id = create_task(sdk, creds.instance_id)
    sdk.batch_start_or_stop_tasks(
        BatchStartOrStopTasksRequest(
            instance_id=creds.instance_id,
            body=OperateTasksBean(action_id="start", list=[TaskBean(task_id=task_id)]),
        )
    )
    return task_id


def status_of(signed, base_path: str, task_id: str) -> str:
    return signed.get(f"{base_path}/tasks/{task_id}").json()["task"]["status"]


def test_a_captured_request_replayed_with_another_body_is_401(
    server, anon, signed, creds, base_path, started_task
) -> None:
    """The declared X-Sdk-Content-Sha256 (not among the signed headers) named the captured body's
    hash, and the server used it instead of hashing the body it got: stop became start."""
    path = f"{base_path}/batch-operation/tasks"
    stop = json.dumps({"action_id": "stop", "list": [{"task_id": started_task}]}).encode()
    captured = sdk_signed(server.url, creds, "POST", path, body=stop)
    assert "X-Sdk-Content-Sha256" not in captured  # the SDK hashes a JSON body itself

    start = stop.replace(b"stop", b"start")
    forged = {**captured, "X-Sdk-Content-Sha256": hashlib.sha256(stop).hexdigest()}
    reply = anon.post(path, content=start, headers=forged)
    assert error_of(reply) == (401, "APIG.0301"), reply.text
    # Without the header, the body's own hash does not match the signature either.
    assert error_of(anon.post(path, content=start, headers=captured)) == (401, "APIG.0301")
    assert status_of(signed, base_path, started_task) == "running"

    # The controls: the captured request itself passes, with or without an honest declaration.
    honest = {**captured, "X-Sdk-Content-Sha256": hashlib.sha256(stop).hexdigest()}
    assert anon.post(path, content=stop, headers=honest).status_code == 200
    assert anon.post(path, content=stop, headers=captured).status_code == 200
    assert status_of(signed, base_path, started_task) == "stop"


def test_a_declared_hash_must_be_the_bodys(server, anon, creds, base_path) -> None:
    """A hash the client declared and signed binds the body too: another body is refused."""
    path = f"{base_path}/batch-operation/tasks"
    body = b'{"action_id": "start", "list": []}'
    declared = {"X-Sdk-Content-Sha256": hashlib.sha256(body).hexdigest()}
    headers = sdk_signed(server.url, creds, "POST", path, body=body, headers=declared)
    assert "x-sdk-content-sha256" in headers["Authorization"]
    assert error_of(anon.post(path, content=body, headers=headers)) == (400, "FDI.3150")
    other = b'{"action_id": "stop", "list": []}'
    assert error_of(anon.post(path, content=other, headers=headers)) == (401, "APIG.0301")
    # Declared twice (the right hash and another): which one was signed? Neither is trusted.
    twice = [*headers.items(), ("X-Sdk-Content-Sha256", "0" * 64)]
    assert error_of(anon.post(path, content=body, headers=twice)) == (401, "APIG.0301")
    for bad in ("0" * 64, declared["X-Sdk-Content-Sha256"].upper(), "not-a-hash"):
        headers = sdk_signed(
            server.url, creds, "POST", path, body=body, headers={"X-Sdk-Content-Sha256": bad}
        )
        assert error_of(anon.post(path, content=body, headers=headers)) == (401, "APIG.0301")


def test_unsigned_payload_is_refused_unless_allowed(server, runtime, anon, creds, base_path):
    path = f"{base_path}/batch-operation/tasks"
    body = b'{"action_id": "start", "list": []}'
    # What the SDK sends for a body that is not JSON: the payload declared UNSIGNED-PAYLOAD.
    plain = sdk_signed(
        server.url, creds, "POST", path, body=body, headers={"Content-Type": "text/plain"}
    )
    assert plain["X-Sdk-Content-Sha256"] == signing.UNSIGNED_PAYLOAD
    assert error_of(anon.post(path, content=body, headers=plain)) == (401, "APIG.0301")
    unsigned = {"X-Sdk-Content-Sha256": signing.UNSIGNED_PAYLOAD}
    headers = sdk_signed(server.url, creds, "POST", path, body=body, headers=unsigned)
    reply = anon.post(path, content=body, headers=headers)
    assert error_of(reply) == (401, "APIG.0301")
    assert "X-Sdk-Content-Sha256" in reply.json()["error_msg"]

    runtime.settings.allow_unsigned_payload = True
    assert error_of(anon.post(path, content=body, headers=headers)) == (400, "FDI.3150")
    # Allowed means the body is not covered: any body passes the signature.
    other = b'{"action_id": "start", "list": [], "x": 1}'
    assert error_of(anon.post(path, content=other, headers=headers)) == (400, "FDI.3150")


def test_the_sdk_works_unmodified(sdk, signed, creds, base_path, started_task) -> None:
    reply = sdk.batch_start_or_stop_tasks(
        BatchStartOrStopTasksRequest(
            instance_id=creds.instance_id,
            body=OperateTasksBean(action_id="stop", list=[TaskBean(task_id=started_task)]),
        )
    )
    assert reply.success_count == 1
    assert status_of(signed, base_path, started_task) == "stop"


def resigned_without(server_url, creds, path: str, left_out: str) -> dict[str, str]:
    """Headers signed by hand with one header left out of SignedHeaders (the SDK never does)."""
    headers = {
        "content-type": JSON,
        "host": urlsplit(server_url).netloc,
        "x-sdk-date": sdk_signed(server_url, creds, "GET", path)["X-Sdk-Date"],
        "x-project-id": creds.project_id,
    }
    names = sorted(name for name in headers if name != left_out)
    canonical = signing.canonical_request("GET", path, [], headers, names, b"")
    sig = signing.signature(creds.sk, signing.string_to_sign(canonical, headers["x-sdk-date"]))
    headers["authorization"] = signing.authorization_header(creds.ak, names, sig)
    return headers


def test_host_and_sdk_date_must_be_signed(server, anon, creds, base_path) -> None:
    path = f"{base_path}/tasks"
    assert anon.get(path, headers=resigned_without(server.url, creds, path, "")).status_code == 200
    for left_out in ("host", "x-sdk-date"):
        headers = resigned_without(server.url, creds, path, left_out)
        assert error_of(anon.get(path, headers=headers)) == (401, "APIG.0301"), left_out


def test_a_signed_header_sent_twice_is_401(server, anon, creds, base_path) -> None:
    path = f"{base_path}/tasks"
    headers = sdk_signed(server.url, creds, "GET", path)
    assert anon.get(path, headers=headers).status_code == 200
    for name in ("X-Project-Id", "Content-Type", "X-Sdk-Date"):  # h11 refuses two Hosts
        doubled = [*headers.items(), (name, headers[name])]
        reply = anon.get(path, headers=doubled)
        assert error_of(reply) == (401, "APIG.0301"), name


def test_an_unsigned_second_project_header_is_refused(server, anon, creds, base_path) -> None:
    """X-Project-Id left out of the signature and sent twice: every value must be the AK's."""
    path = f"{base_path}/tasks"
    headers = resigned_without(server.url, creds, path, "x-project-id")
    assert anon.get(path, headers=headers).status_code == 200
    for foreign_first in (True, False):
        pair = [("x-project-id", "0" * 32), ("x-project-id", creds.project_id)]
        rest = [(k, v) for k, v in headers.items() if k != "x-project-id"]
        doubled = [*rest, *(pair if foreign_first else pair[::-1])]
        assert error_of(anon.get(path, headers=doubled)) == (400, "FDI.3039"), foreign_first


def test_a_plus_in_place_of_a_signed_2b_is_401(server, anon, creds, base_path) -> None:
    """'+' reads as a space: swapping it for the %2B the client signed changes the query."""
    path = f"{base_path}/tasks"
    headers = sdk_signed(server.url, creds, "GET", path, query=[("name", "a+b")])
    assert anon.get(f"{path}?name=a%2Bb", headers=headers).status_code == 200
    assert error_of(anon.get(f"{path}?name=a+b", headers=headers)) == (401, "APIG.0301")
    spaced = sdk_signed(server.url, creds, "GET", path, query=[("name", "a b")])
    assert anon.get(f"{path}?name=a%20b", headers=spaced).status_code == 200
    assert anon.get(f"{path}?name=a+b", headers=spaced).status_code == 200  # the same query


def test_a_non_ascii_signature_is_401_not_500(server, anon, creds, base_path) -> None:
    path = f"{base_path}/tasks"
    headers = sdk_signed(server.url, creds, "GET", path)
    forged = headers["Authorization"].rsplit("=", 1)[0] + "=" + "é" * 64
    reply = anon.get(path, headers={**headers, "Authorization": forged.encode("latin-1")})
    assert error_of(reply) == (401, "APIG.0301")
