"""The API connector's spec (layer: connectors): an HTTP API (FDI type `API`) as a source (paged,
optionally in incremental time windows) and as a target (rows POSTed as JSON).

`content`: `url`, `api_method` (GET), `api_auth_detail` ({"auth_method": none | basicauth |
bearer | apikey | oauth2.0 | aksk, ...}). A task end's `message` object holds the request,
paging, window and field keys (`options.py`; docs/http-api.md). Importing this imports no HTTP
library.
"""

from __future__ import annotations

from openfdi.connectors.api.options import check_options
from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec


def _load() -> type[Connector]:
    from openfdi.connectors.api.connector import ApiConnector

    return ApiConnector


SPEC = ConnectorSpec(
    type="API",
    required_content=("url",),
    capabilities=Capabilities(read=True, write=True, incremental=True),
    load=_load,
    check_options=check_options,
)
