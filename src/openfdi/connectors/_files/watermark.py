"""Which files a read takes, and the watermark of an incremental one (layer: connectors).

An incremental file read (`incremental.column` `_file_mtime` or `_file_name`) takes files in
the order of (modification time, name) or of name, and its watermark, saved with each committed
batch, is `<mtime ns>|<records done>|<name>` of the file it was in: `-1` records means the file
is done. A run resumes after the last file done, or in the middle of a file at the next record,
so a file is read once, even across a crash. A file modified less than `min_age_seconds` ago is
still being written: neither it nor any file after it is read until a later run.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import time
from collections.abc import Iterator
from dataclasses import dataclass

from openfdi.connectors._files.options import MTIME, NAME
from openfdi.connectors._files.store import FileEntry
from openfdi.connectors.errors import TerminalConnectorError

__all__ = ["DONE", "Mark", "Watermark", "selected"]

DONE = -1


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a read is: in file `key` (its order), `records` of it done (DONE: all)."""

    key: tuple[int, str]
    records: int

    def text(self) -> str:
        return f"{self.key[0]}|{self.records}|{self.key[1]}"


class Watermark:
    """The order of files for one incremental column, and parsing a saved watermark."""

    def __init__(self, column: str | None) -> None:
        if column not in (None, MTIME, NAME):
            raise TerminalConnectorError(
                f"a file source is incremental by {MTIME} or {NAME}, not by {column!r}"
            )
        self.column = column

    def key(self, entry: FileEntry) -> tuple[int, str]:
        return (entry.mtime_ns if self.column == MTIME else 0, entry.name)

    def parse(self, text: object) -> Mark | None:
        """A saved watermark; also an ISO time (by mtime) or a file name (by name) as the
        task's `incremental.start`: files after it are read."""
        if text is None or text == "":
            return None
        raw = str(text)
        parts = raw.split("|", 2)
        if len(parts) == 3 and parts[0].lstrip("-").isdigit() and parts[1].lstrip("-").isdigit():
            return Mark((int(parts[0]), parts[2]), int(parts[1]))
        if self.column == NAME:
            return Mark((0, raw), DONE)
        try:
            moment = dt.datetime.fromisoformat(raw.strip())
        except ValueError:
            raise TerminalConnectorError(
                f"{raw!r} is not a file watermark or an ISO time"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return Mark((int(moment.timestamp() * 1e9), "\U0010ffff"), DONE)


def selected(
    entries: list[FileEntry],
    pattern: str,
    order: Watermark,
    mark: Mark | None,
    min_age_s: float,
) -> Iterator[tuple[FileEntry, int]]:
    """The files to read, in order, each with the records of it already done."""
    matching = sorted((e for e in entries if fnmatch.fnmatchcase(e.name, pattern)), key=order.key)
    settled_before = time.time_ns() - int(min_age_s * 1e9)
    for entry in matching:
        key = order.key(entry)
        skip = 0
        if mark is not None:
            if key < mark.key or (key == mark.key and mark.records == DONE):
                continue
            if key == mark.key:
                skip = mark.records
        if entry.mtime_ns > settled_before:
            if order.column is None:
                continue  # a full read leaves a file being written for the next run
            return  # nor may an incremental one pass it: its watermark would skip it
        yield entry, skip
