"""FILE: a folder on this host (layer: connectors), confined to the allowed roots at every
open (see `_files.store.LocalStore`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from openfdi.connectors._files.connector import FilesConnector
from openfdi.connectors._files.store import LocalStore, Store
from openfdi.connectors.spi import HostPaths

__all__ = ["FileConnector"]


class FileConnector(FilesConnector):
    def __init__(self, content: Mapping[str, Any], host: HostPaths | None = None) -> None:
        super().__init__(content)
        # Built (and so the folder confined) at once: create and update refuse a folder
        # outside the roots; every later open confines it again.
        self._local = LocalStore(self.content.get("address"), host or HostPaths())

    @classmethod
    def create(cls, content: Mapping[str, Any], host: HostPaths) -> Self:
        return cls(content, host)

    def open_store(self) -> Store:
        return self._local
