"""The MEMORY connector's spec (layer: connectors): tables held in this process, for engine
tests that need no server. `content.name` names the store; every connector opened on the same
name sees the same tables (committed writes only)."""

from __future__ import annotations

from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec


def _load() -> type[Connector]:
    from openfdi.connectors.memory.connector import MemoryConnector

    return MemoryConnector


SPEC = ConnectorSpec(
    type="MEMORY",
    required_content=("name",),
    capabilities=Capabilities(read=True, write=True, incremental=True),
    load=_load,
)
