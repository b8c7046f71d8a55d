"""The POSTGRESQL connector's spec (layer: connectors); psycopg is imported only by `load`."""

from __future__ import annotations

from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec


def _load() -> type[Connector]:
    from openfdi.connectors.postgres.connector import PostgresConnector

    return PostgresConnector


SPEC = ConnectorSpec(
    type="POSTGRESQL",
    required_content=("host", "port", "database_name", "user_name"),
    capabilities=Capabilities(read=True, write=True, incremental=True, bulk=True, passthrough=True),
    load=_load,
)
