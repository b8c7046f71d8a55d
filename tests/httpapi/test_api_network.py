"""The API connector's network guard (SSRF): link-local (cloud metadata) addresses are refused
by default, at create for an address and where a request resolves a name; the settings deny or
allow networks; every connection is checked (a token request too), and the answer is FDI.3043."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from openfdi.connectors.api import SPEC
from openfdi.connectors.errors import ConnectorError
from openfdi.connectors.spi import HostPaths, ReadPlan
from openfdi.errors import FdiError
from openfdi.settings import Settings
from tests.httpapi import fake_api
from tests.httpapi.fake_api import FakeApi

PAGE = {"fields": [{"name": "id", "path": "$.id", "type": "bigint"}],
        "records": "$.data.items",
        "paging": {"type": "page", "param": "page", "start": 1, "size_param": "size",
                   "size": 10, "total_path": "$.total"}}  # fmt: skip
LOOPBACK = HostPaths(denied_networks=("127.0.0.0/8", "::1/128"))


def _read(content: dict[str, Any], host: HostPaths) -> None:
    with SPEC.open(content, host) as connector:
        connector.configure(PAGE)
        list(connector.read(ReadPlan(table="orders")))


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/",
     "http://[fe80::1]:8080/"],
)  # fmt: skip
def test_a_link_local_address_is_refused_at_create_by_default(url: str) -> None:
    with pytest.raises(ConnectorError) as e:
        SPEC.open({"url": url})
    assert isinstance(e.value, FdiError)
    assert (e.value.code, e.value.status) == ("FDI.3043", 400)


def test_a_name_is_checked_where_a_request_resolves_it(api: FakeApi) -> None:
    api.state.records = [{"id": 1}]
    by_name = {"url": api.url.replace("127.0.0.1", "localhost") + "/orders"}
    connector = SPEC.open(by_name, LOOPBACK)  # a name: nothing to check before it resolves
    with pytest.raises(FdiError) as probe:
        connector.check()  # test-connect answers FDI.3043, not FDI.3016
    assert probe.value.code == "FDI.3043"
    assert not isinstance(probe.value, ConnectorError)
    connector.close()
    with pytest.raises(ConnectorError, match=r"FDI\.3043.*localhost is (127\.0\.0\.1|::1)"):
        _read(by_name, LOOPBACK)
    assert api.state.requests == []  # never connected
    _read(by_name, HostPaths())  # the same read, allowed
    assert len(api.state.requests) == 1


def test_every_connection_is_checked_a_token_request_too(api: FakeApi) -> None:
    api.state.auth = "oauth2"
    api.state.records = [{"id": 1}]
    port = httpx.URL(api.url).port
    content = {"url": f"{api.url}/orders", "api_auth_detail": {
        "auth_method": "oauth2.0", "token_url": f"http://[::1]:{port}/token",
        "client_id": fake_api.CLIENT_ID, "client_secret": fake_api.CLIENT_SECRET}}  # fmt: skip
    only_v4 = HostPaths(allowed_networks=("127.0.0.1/32",))
    with pytest.raises(ConnectorError, match=r"FDI\.3043.*outside OPENFDI_API_ALLOWED_NETWORKS"):
        _read(content, only_v4)
    assert api.state.requests == []


def test_the_settings_take_networks_separated_by_commas() -> None:
    settings = Settings(api_denied_networks="10.0.0.0/8, 169.254.169.254",
                        api_allowed_networks="192.168.1.7/24")  # fmt: skip
    assert settings.api_denied_networks == ("10.0.0.0/8", "169.254.169.254/32")
    assert settings.api_allowed_networks == ("192.168.1.0/24",)
    assert Settings().api_denied_networks == ("169.254.0.0/16", "fe80::/10")
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        Settings(api_denied_networks="not-a-network")


def test_create_answers_fdi_3043(signed: httpx.Client, base_path: str) -> None:
    body = {"datasource_name": "metadata", "datasource_type": "API",
            "content": {"url": "http://169.254.169.254/latest/meta-data/iam"}}  # fmt: skip
    reply = signed.post(f"{base_path}/datasources", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "FDI.3043"
