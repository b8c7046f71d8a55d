"""The one place a local path a data source names is normalised and confined (layer: connectors).

A path is what a caller typed, so it is hostile: leading blanks or a newline, `..`, doubled
slashes, links (possibly swapped in after the data source was saved), NUL, lone surrogates,
thousands of characters. `confine` turns it into the real path to open, following every link,
and refuses it unless that real path lies under one of the allowed roots and outside openfdi's
own data (see `HostPaths`). Connectors call it each time they open (every run, test, listing),
and open the path it returned, so what was checked is what is opened. SQLite files
(`connectors/sqlite/paths.py`) and FILE directories (`connectors/file`) share it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openfdi.connectors.errors import InvalidContentError

__all__ = ["NAME_MAX", "PATH_MAX", "Place", "confine", "inside", "normalised", "real"]

PATH_MAX = 4096
"""Bytes in a path, its terminating NUL included (Linux); longer fails with ENAMETOOLONG."""
NAME_MAX = 255
"""Bytes in one component of a path (Linux file systems)."""


@dataclass(frozen=True, slots=True)
class Place:
    """What kind of path is confined, for the refusal's words: the content `field` it came from,
    what it names (`"SQLite database path"`) and the setting that lists its roots."""

    field: str
    what: str
    setting: str


def _refuse(place: Place, raw: str, why: str) -> InvalidContentError:
    shown = raw if len(raw) <= 80 else raw[:60] + "..." + raw[-12:]
    return InvalidContentError(f"{place.what} {shown!r} {why}", field=place.field)


def real(path: str | Path) -> Path:
    """The absolute path with every link followed (what the kernel would open)."""
    return Path(os.path.realpath(path))


def inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def normalised(raw: object, place: Place) -> str:
    """The path text as it will be resolved: surrounding blanks stripped, then vetted as text."""
    if not isinstance(raw, str):
        raise InvalidContentError(f"{place.what} must be text", field=place.field)
    text = raw.strip()
    if not text:
        raise InvalidContentError(f"{place.what} is empty", field=place.field)
    if "\x00" in text:
        raise _refuse(place, text, "contains a NUL character")
    try:
        encoded = os.fsencode(text)
    except UnicodeEncodeError:
        raise _refuse(place, text, "is not valid text (a lone surrogate)") from None
    if len(encoded) >= PATH_MAX:
        raise _refuse(place, text, f"is longer than {PATH_MAX - 1} bytes")
    if any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        raise _refuse(place, text, f"has a component longer than {NAME_MAX} bytes")
    return text


def confine(
    raw: object,
    place: Place,
    roots: Sequence[Path] | None,
    forbidden: Sequence[Path],
) -> Path:
    """The real path (absolute, every link followed) that `raw` names, if it is allowed.

    Args:
        raw: The path as the data source gives it (relative paths resolve against the working
            directory, as the driver opening it would).
        place: The field and the words of a refusal.
        roots: Directories the path must lie under; None allows anywhere (library use).
        forbidden: openfdi's own data: refused unless under a root strictly nested inside it
            (the data dir's `sqlite`, `files` and `demo` folders).

    Raises:
        InvalidContentError: (field `place.field`) the path is not text, empty, too long, has a
            NUL, resolves under a forbidden path that no root nested in it allows, or lies
            outside every root.
    """
    text = normalised(raw, place)
    try:
        resolved = real(text)
    except (OSError, ValueError) as exc:
        raise _refuse(place, text, f"cannot be resolved ({type(exc).__name__})") from None
    if len(os.fsencode(resolved)) >= PATH_MAX:  # a link can lead somewhere longer
        raise _refuse(place, text, f"resolves to a path longer than {PATH_MAX - 1} bytes")
    real_roots = None if roots is None else [real(r) for r in roots]
    for banned in map(real, forbidden):
        if not inside(resolved, banned):
            continue
        nested = [r for r in real_roots or () if r != banned and r.is_relative_to(banned)]
        if not any(inside(resolved, r) for r in nested):
            raise _refuse(place, text, "lies inside openfdi's own data directory")
    if real_roots is not None and not any(inside(resolved, r) for r in real_roots):
        raise _refuse(place, text, f"is outside the directories allowed ({place.setting})")
    return resolved
