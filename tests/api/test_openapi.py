"""`GET /healthz` and `GET /openapi.json`: every FDI path documented, every 4xx an error body."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute

PREFIX = "/v2/{project_id}/fdi/instances/{instance_id}"
FDI_OPERATIONS = {
    ("post", f"{PREFIX}/batch-operation/tasks"),
    ("get", f"{PREFIX}/statistics/tasks"),
    ("post", f"{PREFIX}/tasks"),
    ("get", f"{PREFIX}/tasks"),
    ("get", f"{PREFIX}/tasks/{{task_id}}"),
    ("put", f"{PREFIX}/tasks/{{task_id}}"),
    ("delete", f"{PREFIX}/tasks/{{task_id}}"),
    ("post", f"{PREFIX}/tasks/{{task_id}}/dispatches"),
    ("get", f"{PREFIX}/tasks/{{task_id}}/dispatches"),
    ("put", f"{PREFIX}/tasks/{{task_id}}/dispatches/{{dispatch_id}}"),
    ("get", f"{PREFIX}/task-monitors"),
    ("post", f"{PREFIX}/datasources"),
    ("get", f"{PREFIX}/datasources"),
    ("get", f"{PREFIX}/datasources/{{datasource_id}}"),
    ("put", f"{PREFIX}/datasources/{{datasource_id}}"),
    ("delete", f"{PREFIX}/datasources/{{datasource_id}}"),
    ("post", "/v3/auth/tokens"),
    ("get", "/v3/projects"),
}
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """The app's endpoints, also inside included routers (kept lazily by newer FastAPI)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)
        elif isinstance(route, APIRoute):
            yield route


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_healthz(anon, backend) -> None:
    reply = anon.get("/healthz")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "ok"
    assert body["database"] == ("sqlite" if backend == "sqlite" else "postgresql")
    assert body["version"]


def test_every_fdi_path_is_documented(server, anon) -> None:
    reply = anon.get("/openapi.json")
    assert reply.status_code == 200
    doc = reply.json()
    assert doc["openapi"].startswith("3.")
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented >= FDI_OPERATIONS

    served = {
        (method.lower(), route.path)
        for route in api_routes(server.server.config.app.routes)
        if route.path.startswith(("/v2/", "/v3/"))
        for method in route.methods
    }
    assert served >= FDI_OPERATIONS
    assert {op for op in documented if op[1].startswith(("/v2/", "/v3/"))} == served
    for method, path in FDI_OPERATIONS:
        operation = doc["paths"][path][method]
        assert operation.get("operationId"), (method, path)
        if path.startswith("/v2/"):
            names = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert {"project_id", "instance_id"} <= names


def test_every_documented_4xx_is_an_error_response(anon) -> None:
    doc = anon.get("/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    error = doc["components"]["schemas"]["ErrorResponse"]
    assert set(error["required"]) == {"error_code", "error_msg"}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert "422" not in codes, (method, path)  # never answered: validation is FDI.3002
            for code, response in operation["responses"].items():
                if code.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == ERROR_REF, (method, path, code)
            if path.startswith("/v2/"):
                assert {"400", "401", "404"} <= codes, (method, path)
    created = doc["paths"][f"{PREFIX}/datasources"]["post"]["responses"]
    assert "201" in created
    deleted = doc["paths"][f"{PREFIX}/tasks/{{task_id}}"]["delete"]["responses"]
    assert "204" in deleted


def test_declared_errors_are_what_the_server_answers(signed, anon, base_path) -> None:
    """Spot-check: the documented error body is the one on the wire."""
    for reply in (
        signed.get(f"{base_path}/tasks", params={"limit": "abc"}),
        anon.get(f"{base_path}/tasks"),
        signed.get(f"{base_path}/tasks/{'0' * 32}"),
    ):
        body = reply.json()
        assert set(body) == {"error_code", "error_msg", "request_id"}
        assert 8 <= len(body["error_code"]) <= 36
        assert 2 <= len(body["error_msg"]) <= 512


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_another_host(anon, page) -> None:
    """The pages work offline: every script, style and icon comes from this server."""
    reply = anon.get(page)
    assert reply.status_code == 200
    html = reply.text
    assert "http://" not in html
    assert "https://" not in html
    assert "//" not in "".join(re.findall(r"(?:src|href)=\"([^\"]*)\"", html))
    assets = re.findall(r"(?:src|href)=\"(/[^\"]+)\"", html)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        served = anon.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 1000, asset
        kind = served.headers["content-type"]
        expected = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
        assert expected[asset[asset.rindex(".") :]] in kind, (asset, kind)
    assert "/openapi.json" in html
    assert anon.get("/docs/assets/no-such-file.js").json()["error_code"] == "APIG.0101"


def test_openapi_declares_the_ak_sk_signature_and_the_token(anon) -> None:
    doc = anon.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["AkSkSignature"]["type"] == "apiKey"
    assert (schemes["AkSkSignature"]["in"], schemes["AkSkSignature"]["name"]) == (
        "header",
        "Authorization",
    )
    assert "SDK-HMAC-SHA256" in schemes["AkSkSignature"]["description"]
    assert (schemes["IamToken"]["in"], schemes["IamToken"]["name"]) == ("header", "X-Auth-Token")
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            alternatives = [set(requirement) for requirement in operation.get("security", [])]
            if path == "/v3/auth/tokens" or not path.startswith(("/v2/", "/v3/")):
                assert alternatives == [], (method, path)
            else:  # either one will do: two requirement objects, not one with both
                assert sorted(map(sorted, alternatives)) == [["AkSkSignature"], ["IamToken"]], (
                    method,
                    path,
                )
