"""The IAM subset: `POST /v3/auth/tokens` and `GET /v3/projects` (fdi-api.md E, H.9)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from openfdi.services import identity


def token_body(user: str, password: str, scope: dict[str, Any] | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "identity": {
            "methods": ["password"],
            "password": {
                "user": {"name": user, "password": password, "domain": {"name": "account"}}
            },
        }
    }
    if scope is not None:
        auth["scope"] = {"project": scope}
    return {"auth": auth}


def error_of(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, reply.json()["error_code"]


def test_token_scoped_by_project_id(anon, creds, base_path) -> None:
    reply = anon.post(
        "/v3/auth/tokens", json=token_body(creds.user, creds.password, {"id": creds.project_id})
    )
    assert reply.status_code == 201, reply.text
    token = reply.headers["X-Subject-Token"]
    assert token
    body = reply.json()["token"]
    assert body["project"]["id"] == creds.project_id
    assert body["user"]["name"] == creds.user
    assert body["methods"] == ["password"]
    issued = datetime.fromisoformat(body["issued_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert round((expires - issued).total_seconds()) == 24 * 3600
    assert anon.get(f"{base_path}/tasks", headers={"X-Auth-Token": token}).status_code == 200


def test_token_scoped_by_project_name_or_unscoped(anon, creds, base_path) -> None:
    for scope in ({"name": "default"}, None, {"id": creds.project_id, "name": "default"}):
        reply = anon.post("/v3/auth/tokens", json=token_body(creds.user, creds.password, scope))
        assert reply.status_code == 201, (scope, reply.text)
        assert reply.json()["token"]["project"] == {
            "id": creds.project_id,
            "name": "default",
            "domain": {"id": creds.project_id, "name": "default"},
        }
        token = reply.headers["X-Subject-Token"]
        assert anon.get(f"{base_path}/tasks", headers={"X-Auth-Token": token}).status_code == 200


def test_wrong_password_or_user_is_401(anon, creds) -> None:
    for user, password in (
        (creds.user, "wrong-password"),
        (creds.user, ""),
        ("nobody", creds.password),
    ):
        reply = anon.post("/v3/auth/tokens", json=token_body(user, password))
        assert error_of(reply) == (401, "APIG.0301"), user
        assert "X-Subject-Token" not in reply.headers


def test_wrong_project_scope_is_401(anon, runtime, creds) -> None:
    other = identity.create_project(runtime, "other-project")
    for scope in ({"id": other}, {"name": "other-project"}, {"name": "nope"}, {"id": "0" * 32}):
        reply = anon.post("/v3/auth/tokens", json=token_body(creds.user, creds.password, scope))
        assert error_of(reply) == (401, "APIG.0301"), scope


def test_user_of_another_project(anon, runtime, creds, base_path) -> None:
    other = identity.create_project(runtime, "other-project")
    instance = identity.create_instance(runtime, other)
    identity.create_user(runtime, other, "bob", "bob-password")
    reply = anon.post("/v3/auth/tokens", json=token_body("bob", "bob-password", {"id": other}))
    assert reply.status_code == 201, reply.text
    headers = {"X-Auth-Token": reply.headers["X-Subject-Token"]}
    assert anon.get(f"/v2/{other}/fdi/instances/{instance}/tasks", headers=headers).is_success
    assert error_of(anon.get(f"{base_path}/tasks", headers=headers)) == (400, "FDI.3039")


def test_bad_token_requests(anon, creds) -> None:
    not_password = token_body(creds.user, creds.password)
    not_password["auth"]["identity"]["methods"] = ["token"]
    assert error_of(anon.post("/v3/auth/tokens", json=not_password)) == (401, "APIG.0301")
    for body in ({}, {"auth": {}}, {"auth": {"identity": {"methods": "password"}}}, []):
        assert error_of(anon.post("/v3/auth/tokens", json=body)) == (400, "FDI.3002"), body
    reply = anon.post("/v3/auth/tokens", content=b"{", headers={"Content-Type": "application/json"})
    assert error_of(reply) == (400, "FDI.3002")


def test_list_projects_by_name(anon, signed, token, creds) -> None:
    headers = {"X-Auth-Token": token}
    reply = anon.get("/v3/projects", params={"name": "default"}, headers=headers)
    assert reply.status_code == 200, reply.text
    (project,) = reply.json()["projects"]
    assert (project["id"], project["name"]) == (creds.project_id, "default")
    assert anon.get("/v3/projects", headers=headers).json()["projects"][0]["id"] == (
        creds.project_id
    )
    assert anon.get("/v3/projects", params={"name": "x"}, headers=headers).json()["projects"] == []
    signed_reply = signed.get("/v3/projects", params={"name": "default"})
    assert signed_reply.json()["projects"][0]["id"] == creds.project_id
    assert error_of(anon.get("/v3/projects", params={"name": "default"})) == (401, "APIG.0301")
