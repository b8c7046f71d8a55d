"""The one place a SQLite data source's path is normalised and confined (layer: connectors).

A path is what a caller typed, so it is hostile: leading blanks or a newline, `..`, doubled
slashes, links (possibly swapped in after the data source was saved), NUL, lone surrogates,
thousands of characters. `confined_path` turns it into the real path to open, following every
link, and refuses it unless that real path is allowed by the host's `HostPaths`. The connector
calls it each time it opens the file (every run, test, table listing), and opens the path it
returned, so what was checked is what is opened.
"""

from __future__ import annotations

import os
from pathlib import Path

from openfdi.connectors.errors import InvalidContentError
from openfdi.connectors.spi import HostPaths

__all__ = ["FIELD", "MEMORY", "NAME_MAX", "PATH_MAX", "confined_path"]

FIELD = "database_name"
MEMORY = ":memory:"
"""SQLite's private in-memory database: no file, so nothing to confine."""
PATH_MAX = 4096
"""Bytes in a path, its terminating NUL included (Linux); longer fails with ENAMETOOLONG."""
NAME_MAX = 255
"""Bytes in one component of a path (Linux file systems)."""


def _refuse(raw: str, why: str) -> InvalidContentError:
    shown = raw if len(raw) <= 80 else raw[:60] + "..." + raw[-12:]
    return InvalidContentError(f"SQLite database path {shown!r} {why}", field=FIELD)


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def normalised(raw: object) -> str:
    """The path text as it will be resolved: surrounding blanks stripped, then vetted as text."""
    if not isinstance(raw, str):
        raise InvalidContentError("SQLite database path must be text", field=FIELD)
    text = raw.strip()
    if not text:
        raise InvalidContentError("SQLite database path is empty", field=FIELD)
    if "\x00" in text:
        raise _refuse(text, "contains a NUL character")
    try:
        encoded = os.fsencode(text)
    except UnicodeEncodeError:
        raise _refuse(text, "is not valid text (a lone surrogate)") from None
    if len(encoded) >= PATH_MAX:
        raise _refuse(text, f"is longer than {PATH_MAX - 1} bytes")
    if any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        raise _refuse(text, f"has a component longer than {NAME_MAX} bytes")
    return text


def confined_path(raw: object, host: HostPaths) -> Path:
    """The real path (absolute, every link followed) of the SQLite file `raw` names.

    Raises:
        InvalidContentError: (field `database_name`) the path is not text, empty, too long, has a
            NUL, resolves under a forbidden path (openfdi's data dir) that no root nested in it
            allows, or lies outside every root.
    """
    text = normalised(raw)
    try:
        real = _real(text)  # relative to the working directory, like sqlite3 would
    except (OSError, ValueError) as exc:
        raise _refuse(text, f"cannot be resolved ({type(exc).__name__})") from None
    if len(os.fsencode(real)) >= PATH_MAX:  # a link can lead somewhere longer
        raise _refuse(text, f"resolves to a path longer than {PATH_MAX - 1} bytes")
    roots = None if host.roots is None else [_real(r) for r in host.roots]
    for forbidden in map(_real, host.forbidden):
        if not _inside(real, forbidden):
            continue
        nested = [r for r in roots or () if r != forbidden and r.is_relative_to(forbidden)]
        if not any(_inside(real, r) for r in nested):
            raise _refuse(text, "lies inside openfdi's own data directory")
    if roots is not None and not any(_inside(real, r) for r in roots):
        raise _refuse(
            text,
            "is outside the directories allowed for SQLite files (OPENFDI_SQLITE_ROOTS)",
        )
    return real
