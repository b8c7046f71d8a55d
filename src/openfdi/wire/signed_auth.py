"""`SignedAuth`: httpx authentication that signs like the Huawei Cloud SDK (SDK-HMAC-SHA256).

In the wire layer, beside the signature itself, because two layers send signed requests: the
client (the CLI, the tests) and the connectors (an API data source with AK/SK auth).
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import httpx

from openfdi.wire import signing


class SignedAuth(httpx.Auth):
    """Signs each request with an AK/SK; `project_id` is sent as X-Project-Id, like the SDK."""

    requires_request_body = True

    def __init__(self, ak: str, sk: str, project_id: str | None = None) -> None:
        self.ak = ak
        self.sk = sk
        self.project_id = project_id

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Sdk-Date"] = datetime.now(UTC).strftime(signing.DATE_FORMAT)
        if self.project_id:
            request.headers["X-Project-Id"] = self.project_id
        signed = sorted(
            name.lower()
            for name in request.headers
            if "_" not in name
            and name.lower() not in ("authorization", "content-length", "accept-encoding")
            and name.lower() not in ("connection", "accept")
        )
        headers = {k.lower(): v for k, v in request.headers.items()}
        query = parse_qsl(request.url.query.decode(), keep_blank_values=True)
        # Send the query exactly in its canonical form (spaces as %20, never '+'), as the SDK does.
        request.url = request.url.copy_with(query=signing.canonical_query(query).encode() or None)
        canonical = signing.canonical_request(
            request.method,
            request.url.raw_path.split(b"?")[0].decode(),
            query,
            headers,
            signed,
            request.content,
        )
        to_sign = signing.string_to_sign(canonical, request.headers["X-Sdk-Date"])
        request.headers["Authorization"] = signing.authorization_header(
            self.ak, signed, signing.signature(self.sk, to_sign)
        )
        yield request
