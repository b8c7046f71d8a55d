"""The API connector (layer: connectors): an HTTP API as a source (TIMING, or REALTIME polling
its time windows) or as a target, over one httpx client per run end (docs/http-api.md).

The `message` object of the task end (the one object task_detail hands a connector) says how to
ask (method, path, headers, query, body, paging, time window) and how records map to columns; the
data source `content` says where and as whom (url, api_method, api_auth_detail).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from openfdi.connectors._messages import OptionsError, parse_options
from openfdi.connectors.api.auth import auth_for
from openfdi.connectors.api.http import Requester
from openfdi.connectors.api.network import AddressRefusedError, NetworkRules, guarded_transport
from openfdi.connectors.api.options import (
    SOURCE_KEYS,
    TARGET_KEYS,
    RetryPolicy,
    check_options,
    parse_content,
    parse_source,
    parse_target,
)
from openfdi.connectors.api.records import schema_of
from openfdi.connectors.api.source import PageReader, read_batches
from openfdi.connectors.api.target import Sender
from openfdi.connectors.errors import (
    InvalidContentError,
    QueryCancelledError,
    TerminalConnectorError,
    translating,
)
from openfdi.connectors.spi import (
    Batch,
    Connector,
    HostPaths,
    ReadPlan,
    TableSchema,
    WritePlan,
    WriteResult,
)
from openfdi.errors import NetworkSegmentRefused

__all__ = ["ApiConnector"]

_CHECK_POLICY = RetryPolicy(retries=1, max_s=5.0, timeout_s=10.0)
"""test-connect answers within seconds, whatever a task end's own policy is."""


def _resource_name(url: str) -> str:
    """What `tables` lists: the URL's last path segment as a plain name (else "api")."""
    last = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in last).strip("_")
    return name if name and not name[0].isdigit() else "api"


def _translate(exc: BaseException) -> TerminalConnectorError | None:
    if isinstance(exc, httpx.HTTPError | OSError):
        return TerminalConnectorError(f"{type(exc).__name__}: {exc}")
    return None


class ApiConnector(Connector):
    def __init__(self, content: Mapping[str, Any], host: HostPaths | None = None) -> None:
        self.content = parse_content(content)
        host = host or HostPaths()
        self._rules = NetworkRules.of(host.denied_networks, host.allowed_networks)
        # An address is refused at create already; a name when a request resolves it.
        self._rules.check_literal(urlsplit(self.content.url).hostname or "")
        self.options: Mapping[str, Any] = {}
        self.cancelled = threading.Event()
        self._secrets = self.content.auth.secrets() if self.content.auth is not None else ()
        self._requesters: list[Requester] = []
        self._sender: Sender | None = None
        self.clock = lambda: datetime.now(UTC)
        """Now, for the end of the last time window (a test may move it)."""

    @classmethod
    def create(cls, content: Mapping[str, Any], host: HostPaths) -> Self:
        return cls(content, host)

    # --- shared ----------------------------------------------------------------------------

    def configure(self, options: Mapping[str, Any] | None) -> None:
        options = options or {}
        try:
            check_options(options)
        except OptionsError as exc:
            raise InvalidContentError(f"{exc.field}: {exc.message}", field=exc.field) from None
        self.options = options

    def live(self) -> None:
        if self.cancelled.is_set():
            raise QueryCancelledError("the read or write was cancelled")

    def _requester(self, policy: RetryPolicy, max_bytes: int = 64 * 1024 * 1024) -> Requester:
        timeout = httpx.Timeout(policy.timeout_s, connect=min(10.0, policy.timeout_s))
        client = httpx.Client(
            transport=guarded_transport(self._rules),
            auth=auth_for(self.content.auth),
            timeout=timeout,
            follow_redirects=False,  # credentials never follow a redirect elsewhere
            headers={"User-Agent": "openfdi"},
            trust_env=False,  # no proxy from the environment: the data source says where
        )
        requester = Requester(client, policy, self.cancelled, max_bytes)
        self._requesters.append(requester)
        return requester

    def _errors(self) -> Any:
        return translating(_translate, self._secrets)

    def check(self) -> None:
        try:
            with self._errors():
                answer = self._requester(_CHECK_POLICY).send(
                    self.content.method, self.content.url, headers={"Accept": "application/json"}
                )
        except AddressRefusedError as exc:
            # test-connect answers FDI.3043 itself, not "connectivity failed" (FDI.3016).
            raise NetworkSegmentRefused(detail=exc.detail) from None
        if answer.status >= 300:
            with self._errors():
                raise TerminalConnectorError(
                    f"{self.content.method} {self.content.url} answered {answer.status}: "
                    f"{answer.snippet()}"
                )

    def list_tables(self) -> list[str]:
        return [_resource_name(self.content.url)]

    def describe(self, table: str) -> TableSchema:
        with self._errors():
            fields = parse_options(self.options, SOURCE_KEYS + TARGET_KEYS).fields
        return schema_of(fields if self.options.get("fields") is not None else (), table)

    def cancel(self) -> None:
        self.cancelled.set()

    def close(self) -> None:
        requesters, self._requesters = self._requesters, []
        for requester in requesters:
            requester.close()

    # --- source ----------------------------------------------------------------------------

    def read(self, plan: ReadPlan) -> Iterator[Batch]:
        self.live()
        with self._errors():
            options = _role(parse_source, self.options)
            reader = PageReader(
                self.content, options, self._requester(options.retry, options.max_response_bytes)
            )
            yield from read_batches(reader, plan, self.clock, self.live)

    # --- target ----------------------------------------------------------------------------

    def prepare_target(self, plan: WritePlan) -> TableSchema:
        self.live()
        options = _role(parse_target, self.options)
        schema = plan.source_schema or self.describe(plan.table)
        columns = plan.columns or schema.names
        self._sender = Sender(
            self.content, options, self._requester(options.retry), columns, schema
        )
        return schema

    def write(self, batch: Batch, plan: WritePlan) -> WriteResult:
        self.live()
        if self._sender is None:
            self.prepare_target(plan)
        assert self._sender is not None
        with self._errors():
            return self._sender.write(batch.rows, self.live)

    def commit(self) -> None:
        """Nothing to do: a request counts as written only once the API answered 2xx."""
        self.live()

    def rollback(self) -> None:
        """Delivered requests cannot be taken back (see docs/http-api.md, at-least-once)."""


def _role(parse: Any, options: Mapping[str, Any]) -> Any:
    """The end's options read in its role; a key of the other role is named as the problem."""
    try:
        return parse(options)
    except OptionsError as exc:
        raise InvalidContentError(f"{exc.field}: {exc.message}", field=exc.field) from None
