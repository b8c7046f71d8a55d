"""A small real HTTP API for the API connector's tests: Starlette under uvicorn on a free loopback
port, in a thread. It pages four ways, filters by a time window, requires the auth kind it is set
to (basic, bearer, OAuth2 client credentials with its own token endpoint, Huawei AK/SK), answers
queued faults (429 with Retry-After, 503, ...), serves hostile bodies, and receives rows."""

from __future__ import annotations

import base64
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from openfdi.wire import signing

AK, SK = "APIAK0000000000000001", "api-secret-key-0000000000000000001"
CLIENT_ID, CLIENT_SECRET = "client-1", "client-secret-1"
USER, PASSWORD = "api-user", "api-pässword"
BEARER = "static-bearer-token-1"
API_KEY = "api-key-0001"


@dataclass
class State:
    records: list[dict[str, Any]] = field(default_factory=list)
    """What the read endpoints serve, in order (events need a `ts`, ISO-8601 UTC)."""
    auth: str = "none"
    faults: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    """Answers to give, one per request, before answering normally."""
    tokens: set[str] = field(default_factory=set)
    tokens_issued: int = 0
    requests: list[str] = field(default_factory=list)
    """Path and query of each data request (not token requests), in order."""
    received: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    """Idempotency-Key of each accepted request to /sink."""
    refuse_ids: set[int] = field(default_factory=set)
    """/sink answers 422 to a request holding one of these ids."""
    on_request: Callable[[int], None] | None = None
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _unauthorized() -> Response:
    return JSONResponse({"error": "unauthorized"}, status_code=401)


async def _authorized(state: State, request: Request) -> bool:
    header = request.headers.get("authorization", "")
    if state.auth == "none":
        return True
    if state.auth == "basic":
        expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return hmac.compare_digest(header.encode(), f"Basic {expected}".encode())
    if state.auth == "bearer":
        return header == f"Bearer {BEARER}"
    if state.auth == "apikey":
        return request.headers.get("x-api-key") == API_KEY
    if state.auth == "oauth2":
        return header.startswith("Bearer ") and header[7:] in state.tokens
    if state.auth == "aksk":
        parsed = signing.parse_authorization(header)
        if parsed is None or parsed.access_key != AK:
            return False
        headers = {n: request.headers.get(n, "") for n in parsed.signed_headers}
        canonical = signing.canonical_request(
            request.method,
            request.scope["raw_path"].decode(),
            request.query_params.multi_items(),
            headers,
            parsed.signed_headers,
            await request.body(),
        )
        to_sign = signing.string_to_sign(canonical, headers.get("x-sdk-date", ""))
        return hmac.compare_digest(signing.signature(SK, to_sign), parsed.signature)
    return False


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class FakeApi:
    def __init__(self) -> None:
        self.state = State()
        routes = [
            Route("/token", self.token, methods=["POST"]),
            Route("/orders", self.pages),
            Route("/offset", self.offsets),
            Route("/cursor", self.cursor),
            Route("/link", self.link),
            Route("/events", self.events, methods=["GET", "POST"]),
            Route("/sink", self.sink, methods=["POST"]),
            Route("/v1/orders", self.documented),
            Route("/v1/orders/bulk", self.sink, methods=["POST"]),
            Route("/hostile/{kind}", self.hostile),
        ]
        self.app = Starlette(routes=routes)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> FakeApi:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the fake API did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *_exc: object) -> None:
        # force_exit: no wait for answers still pending (a test's deliberately slow endpoint
        # would hold every teardown for its whole delay).
        self.server.should_exit = self.server.force_exit = True
        self.thread.join(10)

    # --- plumbing ---------------------------------------------------------------------------

    async def _gate(self, request: Request) -> Response | None:
        """A queued fault, or 401, or None to go on."""
        s = self.state
        with s.lock:
            s.requests.append(
                request.url.path + ("?" + request.url.query if request.url.query else "")
            )
            count = len(s.requests)
            fault = s.faults.pop(0) if s.faults else None
        if s.on_request is not None:
            s.on_request(count)
        if s.delay_s:
            time.sleep(s.delay_s)  # a slow API (runs in the event loop: one request at a time)
        if fault is not None:
            status, headers = fault
            return JSONResponse(
                {"error": f"injected {status}"}, status_code=status, headers=headers
            )
        if not await _authorized(s, request):
            return _unauthorized()
        return None

    async def token(self, request: Request) -> Response:
        form = await request.form()
        header = request.headers.get("authorization", "")
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        by_body = form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET
        if form.get("grant_type") != "client_credentials" or not (
            header == f"Basic {basic}" or by_body
        ):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = uuid.uuid4().hex
        with self.state.lock:
            self.state.tokens.add(token)
            self.state.tokens_issued += 1
        return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": 3600})

    # --- reads ------------------------------------------------------------------------------

    async def pages(self, request: Request) -> Response:
        """Page numbers from 1: {"data": {"items": [...]}, "total": n}."""
        if (refused := await self._gate(request)) is not None:
            return refused
        page = int(request.query_params.get("page", 1))
        size = int(request.query_params.get("size", 10))
        items = self.state.records[(page - 1) * size : page * size]
        return _json({"data": {"items": items}, "total": len(self.state.records)})

    async def offsets(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        offset, limit = int(request.query_params["offset"]), int(request.query_params["limit"])
        return _json(self.state.records[offset : offset + limit])

    async def cursor(self, request: Request) -> Response:
        """Cursor = the index to start at, opaque-looking; 7 records a page."""
        if (refused := await self._gate(request)) is not None:
            return refused
        at = int(request.query_params.get("cursor", "c0")[1:])
        items = self.state.records[at : at + 7]
        nxt = f"c{at + 7}" if at + 7 < len(self.state.records) else None
        return _json({"items": items, "next_cursor": nxt})

    async def link(self, request: Request) -> Response:
        """A next link in the Link header, relative, 9 records a page."""
        if (refused := await self._gate(request)) is not None:
            return refused
        at = int(request.query_params.get("after", "0"))
        items = self.state.records[at : at + 9]
        headers = {}
        if at + 9 < len(self.state.records):
            headers["Link"] = f'</link?after={at + 9}>; rel="next"'
        response = _json(items)
        response.headers.update(headers)
        return response

    async def events(self, request: Request) -> Response:
        """Records with `ts` in [from, to), by page number from 1 (query, or a POST body)."""
        if (refused := await self._gate(request)) is not None:
            return refused
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            params.update(json.loads(await request.body()))
        start, end = _time(str(params["from"])), _time(str(params["to"]))
        page, size = int(params.get("page", 1)), int(params.get("size", 1000))
        inside = [r for r in self.state.records if start <= _time(r["ts"]) < end]
        return _json({"items": inside[(page - 1) * size : page * size]})

    async def documented(self, request: Request) -> Response:
        """docs/http-api.md's source example: paid records with `updated_at` in [from, to), by
        `page`/`page_size`, under $.data.items with the window's $.total."""
        if (refused := await self._gate(request)) is not None:
            return refused
        q = request.query_params
        if q.get("status") != "paid":
            return JSONResponse({"error": "status=paid is required"}, status_code=400)
        start, end = _time(q["from"]), _time(q["to"])
        page, size = int(q["page"]), int(q["page_size"])
        inside = [r for r in self.state.records if start <= _time(r["updated_at"]) < end]
        items = inside[(page - 1) * size : page * size]
        return _json({"data": {"items": items}, "total": len(inside)})

    async def hostile(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind == "huge":

            def chunks() -> Iterator[bytes]:
                yield b'{"items": ["'
                for _ in range(200):
                    yield b"x" * 1024 * 1024
                yield b'"]}'

            return StreamingResponse(chunks(), media_type="application/json")
        if kind == "deep":
            return Response(b"[" * 200_000 + b"]" * 200_000, media_type="application/json")
        if kind == "utf8":
            return Response(b'{"items": ["\xff\xfe"]}', media_type="application/json")
        if kind == "html":
            return Response(b"<html><body>Maintenance</body></html>", media_type="text/html")
        if kind == "object":
            return _json({"items": {"not": "a list"}})
        return Response(status_code=404)

    # --- writes -----------------------------------------------------------------------------

    async def sink(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        doc = json.loads(await request.body(), parse_float=str)
        rows = doc["data"] if isinstance(doc, dict) and "data" in doc else doc
        rows = rows if isinstance(rows, list) else [rows]
        bad = [r for r in rows if r.get("id") in self.state.refuse_ids]
        if bad:
            return JSONResponse({"error": f"refused id {bad[0]['id']}"}, status_code=422)
        key = request.headers.get("idempotency-key", "")
        with self.state.lock:
            if key and key in self.state.keys:
                return JSONResponse({"duplicate": True})
            self.state.keys.append(key)
            self.state.received.extend(rows)
        return JSONResponse({"accepted": len(rows)})


_NUMBER = re.compile(r'"\\u0000N:([-+0-9.eE]+)"')


def _marked(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"\0N:{value}"
    if isinstance(value, dict):
        return {k: _marked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_marked(v) for v in value]
    return value


def _json(doc: Any) -> Response:
    """JSON with each Decimal written as its own digits, a JSON number (json.dumps cannot)."""
    text = json.dumps(_marked(doc), ensure_ascii=False)
    return Response(_NUMBER.sub(r"\1", text), media_type="application/json")
