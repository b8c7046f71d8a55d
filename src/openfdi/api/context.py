"""Per-request context: request id, body size limit, Prometheus request metrics (pure ASGI)."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openfdi import logs
from openfdi.errors import RequestTooLarge


class Metrics:
    """The app's own registry, so two apps in one process (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "openfdi_http_requests_total",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "openfdi_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )


# A request id the client sends is kept (so its logs and ours share it) when it is this tame.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(scope: Scope) -> str:
    state: dict[str, Any] = scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        sent = next((v for k, v in scope.get("headers", []) if k == b"x-request-id"), b"")
        text = sent.decode("latin-1")
        rid = state["request_id"] = text if _CLIENT_ID.fullmatch(text) else uuid.uuid4().hex
    return str(rid)


class _BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    """Adds `X-Request-Id` to every response (the client's own when it sent a tame one) and to
    every log line of the request (`logs.request_id`); refuses oversized bodies with APIG.0201
    (413)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)
        token = logs.request_id.set(rid)  # every log line of this request carries it
        try:
            await self._handle(scope, receive, send, rid)
        finally:
            logs.request_id.reset(token)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            await _send_too_large(send_with_id, rid)
            self._observe(scope, 413, started)
            return

        received = 0
        exceeded = responded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # Once the body is too large the answer is 413, whatever the framework makes of
            # the exception (FastAPI turns an error while reading a body into a 400).
            nonlocal responded
            if exceeded and not responded:
                return
            responded = responded or message["type"] == "http.response.start"
            await send_with_id(message)

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if exceeded and not responded:
            await _send_too_large(send_with_id, rid)
        self._observe(scope, status_holder["status"], started)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", "unmatched")
        self.metrics.requests.labels(scope["method"], template, str(status)).inc()
        self.metrics.latency.labels(template).observe(time.perf_counter() - started)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_too_large(send: Send, rid: str) -> None:
    import json

    err = RequestTooLarge()
    body = json.dumps({"error_code": err.code, "error_msg": err.message, "request_id": rid})
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})
