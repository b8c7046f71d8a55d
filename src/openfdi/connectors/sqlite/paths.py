"""Where a SQLite data source's file may be (layer: connectors): `content.database_name`,
confined by the shared rules of `connectors._paths` to the host's SQLite roots.

The connector calls `confined_path` each time it opens the file (every run, test, table
listing), and opens the path it returned, so what was checked is what is opened.
"""

from __future__ import annotations

from pathlib import Path

from openfdi.connectors._paths import NAME_MAX, PATH_MAX, Place, confine
from openfdi.connectors.spi import HostPaths

__all__ = ["FIELD", "MEMORY", "NAME_MAX", "PATH_MAX", "PLACE", "confined_path"]

FIELD = "database_name"
MEMORY = ":memory:"
"""SQLite's private in-memory database: no file, so nothing to confine."""
PLACE = Place(field=FIELD, what="SQLite database path", setting="OPENFDI_SQLITE_ROOTS")


def confined_path(raw: object, host: HostPaths) -> Path:
    """The real path (absolute, every link followed) of the SQLite file `raw` names.

    Raises:
        InvalidContentError: (field `database_name`) see `connectors._paths.confine`.
    """
    return confine(raw, PLACE, host.roots, host.forbidden)
