"""The SQLITE connector's spec (layer: connectors): `content.database_name` is the file's path."""

from __future__ import annotations

from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec


def _load() -> type[Connector]:
    from openfdi.connectors.sqlite.connector import SqliteConnector

    return SqliteConnector


SPEC = ConnectorSpec(
    type="SQLITE",
    required_content=("database_name",),
    capabilities=Capabilities(read=True, write=True, incremental=True, bulk=True, passthrough=True),
    load=_load,
)
