"""The FILE connector's spec (layer: connectors): `content.address` is a folder on this host,
under the directories OPENFDI_FILE_ROOTS allows; its files are CSV, JSON lines or Parquet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec


def _load() -> type[Connector]:
    from openfdi.connectors.file.connector import FileConnector

    return FileConnector


def check_options(options: Mapping[str, Any]) -> None:
    from openfdi.connectors._files.options import parse_options  # no pyarrow: cheap

    parse_options(options)


SPEC = ConnectorSpec(
    type="FILE",
    required_content=("address",),
    capabilities=Capabilities(read=True, write=True, incremental=True, bulk=True, passthrough=True),
    load=_load,
    check_options=check_options,
)
