"""Which addresses an API data source may reach (layer: connectors): the SSRF guard.

A data source names any URL, and openfdi requests it from inside the operator's network: without
a guard, `http://169.254.169.254/...` reads the cloud host's metadata (its credentials). The
guard sits where a connection is opened (`GuardedBackend.connect_tcp`, httpcore's network
backend): the host is resolved there, every address it resolves to is checked against the
networks the host settings deny (`OPENFDI_API_DENIED_NETWORKS`, link-local by default) or, when
set, allow (`OPENFDI_API_ALLOWED_NETWORKS`), and the socket connects to the address that was
checked, never to a second resolution (a name that resolves to a public address once and to the
metadata address the next time gains nothing). Every connection goes through it: the first
request, each next page or next link, an OAuth token request, a redirect a client would follow.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from openfdi.connectors.errors import TerminalConnectorError
from openfdi.errors import NetworkSegmentRefused

__all__ = ["AddressRefusedError", "GuardedBackend", "NetworkRules", "guarded_transport"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# For mypy, ConnectorError's `code` (an instance attribute) clashes with FdiError's (a class
# one); both hold "FDI.3043" here (set below), so the API renders it and a run records it.
class AddressRefusedError(TerminalConnectorError, NetworkSegmentRefused):  # type: ignore[misc]
    """The host resolves to an address the settings refuse: a run fails with FDI.3043's text;
    create answers 400 FDI.3043 (it is also that FdiError)."""

    def __init__(self, detail: str) -> None:
        text = NetworkSegmentRefused.template.format(detail=detail)
        TerminalConnectorError.__init__(self, f"{NetworkSegmentRefused.code}: {text}")
        self.detail = detail
        self.params = {"detail": detail}
        self.code = NetworkSegmentRefused.code


@dataclass(frozen=True, slots=True)
class NetworkRules:
    denied: tuple[Network, ...]
    allowed: tuple[Network, ...] | None

    @classmethod
    def of(cls, denied: Iterable[str], allowed: Iterable[str] | None) -> NetworkRules:
        def nets(texts: Iterable[str]) -> tuple[Network, ...]:
            return tuple(ipaddress.ip_network(t, strict=False) for t in texts)

        return cls(nets(denied), None if allowed is None else nets(allowed))

    def check(self, host: str, address: str) -> None:
        """Raise AddressRefusedError unless `address` (what `host` resolved to) may be reached."""
        ip: Address = ipaddress.ip_address(address.split("%", 1)[0])  # no IPv6 zone
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
        for network in self.denied:
            if ip.version == network.version and ip in network:
                raise AddressRefusedError(
                    f"{host} is {ip}, in {network}, which OPENFDI_API_DENIED_NETWORKS refuses"
                )
        if self.allowed is not None and not any(
            ip.version == n.version and ip in n for n in self.allowed
        ):
            raise AddressRefusedError(f"{host} is {ip}, outside OPENFDI_API_ALLOWED_NETWORKS")

    def check_literal(self, host: str) -> None:
        """At create: a host that is an IP address is checked at once (a name only when a
        request resolves it)."""
        try:
            ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            return
        self.check(host, host.strip("[]"))


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses `rules` allow."""

    def __init__(self, rules: NetworkRules) -> None:
        self._rules = rules

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        for address in addresses:  # every one: the name must not lead anywhere refused
            self._rules.check(host, address)
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last if last is not None else httpcore.ConnectError(f"{host}: no address")


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, rules: NetworkRules) -> None:
        # httpx's transport takes no network backend: its one attribute, the pool, is built
        # here with one (httpx's own __init__ would load the CA bundle for a pool thrown away:
        # 0.1 s), with httpx's default TLS context (verified, the system's CAs) and limits.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(rules),
        )


def guarded_transport(rules: NetworkRules) -> httpx.BaseTransport:
    """An httpx transport (no proxy) whose every connection passes `rules`."""
    return _GuardedTransport(rules)
