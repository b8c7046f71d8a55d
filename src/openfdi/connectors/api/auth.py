"""httpx authentication for the API connector's `api_auth_detail` kinds (layer: connectors).

Basic and bearer are one header each. OAuth 2.0 client credentials fetches a token from the
token endpoint, keeps it until shortly before `expires_in`, and fetches a new one once when the
API answers 401 (a token revoked or expired early). AK/SK signs each request exactly as the Huawei
Cloud SDK does, with the `SignedAuth` the CLI uses (`wire/signed_auth.py`, on the canonical-form
functions the openfdi server verifies with), so the two cannot disagree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

import httpx

from openfdi.connectors.api.options import Auth
from openfdi.connectors.errors import TerminalConnectorError
from openfdi.wire.signed_auth import SignedAuth

__all__ = [
    "ApiKeyAuth",
    "BearerAuth",
    "OAuth2ClientCredentials",
    "SignedAuth",
    "TokenError",
    "auth_for",
]

EARLY_S = 30.0
"""A cached token is renewed this long before it expires, so no request carries a dying one."""
DEFAULT_TTL_S = 300.0
"""How long a token without `expires_in` is used before asking again (a 401 renews it sooner)."""


class TokenError(Exception):
    """The token endpoint did not give a token; `status` is its HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class ApiKeyAuth(httpx.Auth):
    """A key sent in a header (default `X-API-Key`) or a query parameter, kept encrypted with the
    data source rather than written into a task's headers or query in clear."""

    def __init__(self, key: str, name: str = "X-API-Key", *, in_query: bool = False) -> None:
        self.key = key
        self.name = name
        self.in_query = in_query

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.in_query:
            request.url = request.url.copy_merge_params({self.name: self.key})
        else:
            request.headers[self.name] = self.key
        yield request


class OAuth2ClientCredentials(httpx.Auth):
    """RFC 6749 4.4: a client-credentials token, cached, renewed before expiry and on a 401."""

    requires_response_body = True  # the token endpoint's answer is read inside the flow

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        client_auth: str = "basic",
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.client_auth = client_auth
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        self.fetched = 0
        """Tokens fetched so far (what a test or a log can tell about caching)."""

    def _token_request(self) -> httpx.Request:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        headers = {"Accept": "application/json"}
        if self.client_auth == "body":
            form.update(client_id=self.client_id, client_secret=self.client_secret)
            return httpx.Request("POST", self.token_url, data=form, headers=headers)
        basic = httpx.BasicAuth(self.client_id, self.client_secret)
        request = httpx.Request("POST", self.token_url, data=form, headers=headers)
        return next(basic.auth_flow(request))

    def _keep(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            raise TokenError(
                response.status_code,
                f"the OAuth2 token endpoint answered {response.status_code}: {response.text[:300]}",
                response.headers.get("Retry-After"),
            )
        try:
            doc = response.json()
            token = str(doc["access_token"])
            ttl = float(doc.get("expires_in") or DEFAULT_TTL_S)
        except (ValueError, KeyError, TypeError):
            raise TokenError(
                200, "the OAuth2 token endpoint's answer has no access_token"
            ) from None
        self._token = token
        self._expires = time.monotonic() + max(ttl - EARLY_S, ttl / 2)
        self.fetched += 1

    def _current(self) -> str | None:
        return self._token if self._token and time.monotonic() < self._expires else None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:
            token = self._current()
        if token is None:
            self._keep((yield self._token_request()))
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            # Revoked or expired early: one new token, one more try; a second 401 is the answer.
            self._keep((yield self._token_request()))
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request


def auth_for(auth: Auth | None) -> httpx.Auth | None:
    """The httpx auth of a parsed `api_auth_detail` (None: send no credentials)."""
    if auth is None:
        raise TerminalConnectorError("the data source's api_auth_detail was not decrypted")
    v = auth.values
    if auth.kind == "basic":
        return httpx.BasicAuth(v["user_name"], v["password"])
    if auth.kind == "bearer":
        return BearerAuth(v["token"])
    if auth.kind == "oauth2":
        return OAuth2ClientCredentials(
            v["token_url"],
            v["client_id"],
            v["client_secret"],
            scope=v.get("scope") or None,
            client_auth=v.get("client_auth", "basic"),
        )
    if auth.kind == "apikey":
        return ApiKeyAuth(
            v["key"], v.get("name") or "X-API-Key", in_query=v.get("in", "header") == "query"
        )
    if auth.kind == "aksk":
        return SignedAuth(v["ak"], v["sk"], v.get("project_id") or None)
    return None
