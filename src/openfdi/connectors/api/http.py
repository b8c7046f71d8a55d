"""One HTTP exchange with retries, bounded size and clear failures (layer: connectors).

A request that meets 429, 408, a 5xx or a lost connection is tried again (tenacity): after the
wait the server asks for in `Retry-After` (seconds or an HTTP date) when it gives one, else after
an exponential backoff with jitter; at most `retries` more times and `max_s` seconds of waiting in
all, so a run never hangs on a sick API. A stop (`cancel()`) ends a wait at once. Any other answer
is returned to the caller, who decides what a 4xx means (a source fails the run, a target refuses
the rows).
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from openfdi.connectors.api.auth import TokenError
from openfdi.connectors.api.options import RetryPolicy
from openfdi.connectors.errors import QueryCancelledError, TerminalConnectorError

__all__ = ["RETRY_STATUSES", "Answer", "Requester", "retry_after_s"]

RETRY_STATUSES = frozenset({408, 429} | set(range(500, 600)) - {501, 505})
"""Answers that mean "not now": tried again. 501 Not Implemented and 505 HTTP Version Not
Supported are answers about the request itself, which a retry cannot change."""
_BACKOFF = tenacity.wait_exponential_jitter(initial=0.2, max=10.0)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL
    tries: int

    def snippet(self, limit: int = 300) -> str:
        """The start of the body as text, for a run remark or a dirty row's reason."""
        return self.body[:limit].decode("utf-8", "replace").strip()


class _TryAgain(Exception):
    def __init__(self, what: str, retry_after: str | None = None, answer: Answer | None = None):
        super().__init__(what)
        self.what = what
        self.retry_after = retry_after
        self.answer = answer


class TooLargeError(TerminalConnectorError):
    """The response is bigger than the end's `max_response_bytes`."""


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """A `Retry-After` header in seconds from now (delta-seconds or an HTTP date); None if absent
    or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Requester:
    """Sends requests through one httpx client (one connection pool) with the retry policy."""

    def __init__(
        self,
        client: httpx.Client,
        policy: RetryPolicy,
        cancelled: threading.Event,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.client = client
        self.policy = policy
        self.cancelled = cancelled
        self.max_bytes = max_bytes
        self._worker: ThreadPoolExecutor | None = None
        self.waited_s = 0.0
        """Seconds spent waiting between tries so far (all requests)."""

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        asked = retry_after_s(exc.retry_after) if isinstance(exc, _TryAgain) else None
        wait = asked if asked is not None else _BACKOFF(state)
        left = self.policy.max_s - (time.monotonic() - state.start_time)
        return max(0.0, min(wait, left))

    def _sleep(self, seconds: float) -> None:
        self.waited_s += seconds
        if self.cancelled.wait(seconds):
            raise QueryCancelledError("the read or write was cancelled")

    def send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        on_this_thread: bool = False,
    ) -> Answer:
        """The first answer that is not worth trying again (any status), or
        TerminalConnectorError with the last answer once the policy's tries or time are spent
        (terminal: the policy is the bound the user chose; the engine must not multiply it).

        `on_this_thread`: the caller is a background thread whose own waiter sees a cancel (the
        source's page reader), so the exchange runs right here instead of on the requester's
        worker thread: each hop between threads waits for the GIL, up to the switch interval
        (5 ms) while the consumer decodes a page, a quarter of a 200-page read's time
        (bench/http_api.py)."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_TryAgain),
            stop=tenacity.stop_after_attempt(self.policy.retries + 1)
            | tenacity.stop_after_delay(self.policy.max_s),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(
                        method,
                        url,
                        params,
                        content,
                        json_body,
                        headers,
                        attempt.retry_state,
                        on_this_thread,
                    )
        except _TryAgain as exc:
            tries = retrying.statistics.get("attempt_number", 1)
            raise TerminalConnectorError(
                f"{method} {_shown(url)}: {exc.what}, still after {tries} tries "
                f"in {self.waited_s:.1f} s of waiting"
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _once(
        self,
        method: str,
        url: str | httpx.URL,
        params: Mapping[str, Any] | None,
        content: bytes | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
        state: tenacity.RetryCallState,
        on_this_thread: bool = False,
    ) -> Answer:
        if self.cancelled.is_set():
            raise QueryCancelledError("the read or write was cancelled")
        try:
            request = self.client.build_request(
                method, url, params=params, content=content, json=json_body, headers=headers
            )
            exchange = self._exchange_now if on_this_thread else self._exchange
            response, body = exchange(request)
        except TokenError as exc:
            if exc.status in RETRY_STATUSES or exc.status == 0:
                raise _TryAgain(str(exc), exc.retry_after) from None
            raise TerminalConnectorError(str(exc)) from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            if isinstance(exc, httpx.UnsupportedProtocol | httpx.DecodingError):
                raise TerminalConnectorError(f"{method} {_shown(url)}: {exc}") from None
            raise _TryAgain(f"{type(exc).__name__}: {exc or 'no answer'}") from None
        answer = Answer(
            response.status_code, response.headers, body, response.url, state.attempt_number
        )
        if answer.status in RETRY_STATUSES:
            raise _TryAgain(
                f"answered {answer.status} {answer.snippet(200)}",
                response.headers.get("Retry-After"),
                answer,
            )
        return answer

    def _exchange(self, request: httpx.Request) -> tuple[httpx.Response, bytes]:
        """Send and read the answer on the requester's worker thread, waiting for it here in
        slices of 0.1 s: a `cancel()` then ends the wait at once, as the SPI promises, instead of
        after the API's answer or the timeout (the worker finishes or fails on its own, and its
        answer is dropped)."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="openfdi-api")
        future = self._worker.submit(self._exchange_now, request)
        while True:
            try:
                return future.result(timeout=0.1)
            except FutureTimeout:
                if self.cancelled.is_set():
                    raise QueryCancelledError("the read or write was cancelled") from None

    def _exchange_now(self, request: httpx.Request) -> tuple[httpx.Response, bytes]:
        response = self.client.send(request, stream=True)
        try:
            return response, self._body(response)
        finally:
            response.close()

    def close(self) -> None:
        """Close the connections; a request still running on the worker fails and is dropped."""
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def _body(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise TooLargeError(self._too_large(response))
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise TooLargeError(self._too_large(response))
            chunks.append(chunk)
            if self.cancelled.is_set():
                raise QueryCancelledError("the read or write was cancelled")
        return b"".join(chunks)

    def _too_large(self, response: httpx.Response) -> str:
        return (
            f"{response.request.method} {_shown(response.url)}: the response is larger than "
            f"max_response_bytes ({self.max_bytes} bytes)"
        )


def _shown(url: str | httpx.URL) -> str:
    """A URL for a message: without its query, which may carry a key or a token."""
    return str(httpx.URL(str(url)).copy_with(query=None))
