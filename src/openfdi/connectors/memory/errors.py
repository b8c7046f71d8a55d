"""The MEMORY connector's errors: it has no server, so only the SPI's own."""

from __future__ import annotations

from openfdi.connectors.errors import InvalidContentError, QueryCancelledError, TableNotFoundError

__all__ = ["InvalidContentError", "QueryCancelledError", "TableNotFoundError"]
