"""The MYSQL connector's spec (layer: connectors); its drivers are imported only by `load`."""

from __future__ import annotations

from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec


def _load() -> type[Connector]:
    from openfdi.connectors.mysql.connector import MysqlConnector

    return MysqlConnector


SPEC = ConnectorSpec(
    type="MYSQL",
    required_content=("host", "port", "database_name", "user_name"),
    capabilities=Capabilities(read=True, write=True, incremental=True, bulk=True, passthrough=True),
    load=_load,
)
