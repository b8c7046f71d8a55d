"""Where a file end's files live (layer: connectors): one folder, on this host (`LocalStore`,
confined to the allowed roots at every open) or on a server reached through an fsspec file
system (`FsspecStore`: FTP, FTPS, SFTP). Readers and writers see only file names in the folder."""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import fcntl
import logging
import os
import re
import stat
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from openfdi.connectors._paths import Place, confine
from openfdi.connectors.errors import InvalidContentError, TerminalConnectorError
from openfdi.connectors.spi import HostPaths

__all__ = ["FileEntry", "FsspecStore", "LocalStore", "Store", "temp_name"]

TEMP_PREFIX = "."
TEMP_SUFFIX = ".openfdi-tmp"
_COMMITTED = re.compile(r"^\.(?P<final>.+)\.(?P<uid>[0-9a-f]{12})\.c(?P<size>\d+)\.openfdi-tmp$")
_log = logging.getLogger(__name__)


def temp_name(final: str) -> str:
    """The hidden name a file is written under until it is complete (never matched by a glob
    without a leading dot, and removed or renamed at the end)."""
    return f"{TEMP_PREFIX}{final}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"


@dataclass(frozen=True, slots=True, order=True)
class FileEntry:
    """A regular file of the folder."""

    name: str
    size: int
    mtime_ns: int


class Store(abc.ABC):
    """One folder of files. Not thread-safe: one per connector, used by one thread."""

    reads_concurrently = False
    """Two files (or one file twice) may be read at once, from two threads (a local folder; an
    FTP control connection carries one transfer at a time)."""

    is_local = False
    """On this host: publishing a file (a local rename) cannot fail for want of a network, so
    it may wait until the connector closes (a pass-through target: see `FilesConnector`)."""

    @abc.abstractmethod
    def check(self) -> None:
        """Reach the folder (connect, log in, list it); raise a ConnectorError saying why not."""

    @abc.abstractmethod
    def entries(self) -> list[FileEntry]:
        """The regular files directly in the folder, hidden ones (a leading dot) left out."""

    @abc.abstractmethod
    def open_read(self, name: str) -> IO[bytes]:
        """The file's bytes, from the start."""

    @abc.abstractmethod
    def open_write(self, name: str) -> IO[bytes]:
        """A new file to write (a temp name: see `temp_name`)."""

    @abc.abstractmethod
    def publish(self, temp: str, final: str) -> None:
        """Give the complete file `temp` its name `final`, atomically: readers see no file or
        the whole of it. Refuses to replace an existing `final`."""

    @abc.abstractmethod
    def remove(self, name: str) -> None:
        """Delete the file (a temp file being abandoned); no error if it is gone."""

    def sync(self, handle: IO[bytes]) -> None:
        """Make what was written to `handle` durable before it is published."""
        handle.flush()

    def scratch(self) -> IO[bytes]:
        """An anonymous file for data on its way into the folder (gone when closed, or when the
        process dies): a pass-through slice waits there for its commit."""
        return tempfile.TemporaryFile()

    def mark_committed(self, temp: str, size: int) -> str:
        """Record that the first `size` bytes of the temp file being written are committed
        rows, so that `recover` can publish them after a crash; returns its (new) name. A store
        that cannot recover keeps the name."""
        return temp

    def recover(self) -> list[str]:
        """Publish the committed part of files left unfinished by a process that died; return
        their names."""
        return []

    def interrupt(self) -> None:
        """Make a transfer blocked on the network fail at once (from another thread: a stop's
        deadline); the store is not used again."""
        return None

    def close(self) -> None:
        """Release the connection, if any."""
        return None


FILE_PLACE = Place(field="address", what="FILE folder", setting="OPENFDI_FILE_ROOTS")


class LocalStore(Store):
    """A folder on this host, under the allowed roots (`HostPaths.file_roots`).

    The folder and each file are confined again at every open, following every link, and the
    path that passed is the one opened (without following a link at its end): a link swapped
    in after the data source was saved, or a file that is a link out of the roots, is refused.
    """

    reads_concurrently = True
    is_local = True

    def __init__(self, raw: object, host: HostPaths) -> None:
        self._raw = raw
        self._host = host
        self.folder()  # refuse at once what could never be opened

    def folder(self) -> Path:
        return confine(self._raw, FILE_PLACE, self._host.file_roots, self._host.forbidden)

    def _file(self, name: str) -> Path:
        if not name or "/" in name or "\x00" in name or name in (".", ".."):
            raise InvalidContentError(f"{name!r} is not a file name", field="address")
        folder = self.folder()
        path = confine(str(folder / name), FILE_PLACE, self._host.file_roots, self._host.forbidden)
        if path.parent != folder:  # a link to another folder, even inside the roots
            raise InvalidContentError(
                f"{name!r} leads out of the FILE folder (a link)", field="address"
            )
        return path

    def check(self) -> None:
        folder = self.folder()
        if not folder.is_dir():
            raise TerminalConnectorError(f"FILE folder {folder} does not exist")
        os.listdir(folder)

    def entries(self) -> list[FileEntry]:
        folder = self.folder()
        if not folder.is_dir():
            raise TerminalConnectorError(f"FILE folder {folder} does not exist")
        found: list[FileEntry] = []
        with os.scandir(folder) as scan:
            for entry in scan:
                if entry.name.startswith(TEMP_PREFIX) or not entry.is_file(follow_symlinks=False):
                    continue  # links are not listed: a link out of the folder is never read
                stat = entry.stat(follow_symlinks=False)
                found.append(FileEntry(entry.name, stat.st_size, stat.st_mtime_ns))
        return found

    def open_read(self, name: str) -> IO[bytes]:
        # Non-blocking, so that a FIFO put in the file's place after the listing fails here
        # instead of waiting for a writer for ever (a stop cannot end an open()); then only a
        # regular file is read (not a folder or a device swapped in either).
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self._file(name), flags)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise TerminalConnectorError(
                    "not a regular file any more (a FIFO, a folder or a device in its place)"
                )
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def open_write(self, name: str) -> IO[bytes]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self._file(name), flags, 0o644)
        # Held while this process writes it: `recover` leaves a locked file alone (its writer
        # is alive), and the kernel drops the lock when the writer dies.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return os.fdopen(fd, "wb")

    def sync(self, handle: IO[bytes]) -> None:
        handle.flush()
        os.fsync(handle.fileno())

    def scratch(self) -> IO[bytes]:
        # On the disk the files go to (never a RAM-backed /tmp), unlinked from the start.
        return tempfile.TemporaryFile(dir=self.folder())

    def mark_committed(self, temp: str, size: int) -> str:
        found = _COMMITTED.match(temp)
        base = f".{found['final']}.{found['uid']}" if found else temp.removesuffix(TEMP_SUFFIX)
        marked = f"{base}.c{size}{TEMP_SUFFIX}"
        os.rename(self._file(temp), self._file(marked))  # the open handle keeps writing to it
        self._sync_folder()
        return marked

    def recover(self) -> list[str]:
        published: list[str] = []
        folder = self.folder()
        for name in sorted(os.listdir(folder)):
            found = _COMMITTED.match(name)
            if found is None:
                continue
            fd = os.open(self._file(name), os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive
                os.ftruncate(fd, int(found["size"]))  # drop a commit that did not finish
                os.fsync(fd)
                try:
                    self.publish(name, found["final"])
                except TerminalConnectorError as exc:
                    _log.warning("an unfinished file %s is left as it is: %s", name, exc)
                    continue
                published.append(found["final"])
            finally:
                os.close(fd)
        return published

    def _sync_folder(self) -> None:
        dir_fd = os.open(self.folder(), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def publish(self, temp: str, final: str) -> None:
        source, target = self._file(temp), self._file(final)
        try:
            os.link(source, target)  # fails if `final` exists, unlike rename
        except FileExistsError:
            raise TerminalConnectorError(f"file {final} exists already; not replaced") from None
        except OSError:  # a file system without hard links: rename (names are unique)
            if target.exists():
                raise TerminalConnectorError(f"file {final} exists already") from None
            os.rename(source, target)
        else:
            os.unlink(source)
        self._sync_folder()  # the new name survives a power cut

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._file(name))


def _mtime_ns(info: dict[str, Any]) -> int:
    """A listing's modification time in ns: SFTP gives a datetime, FTP's MLSD a `modify` text
    (YYYYMMDDHHMMSS[.fff], UTC)."""
    value = info.get("mtime", info.get("modify"))
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, int | float):
        return int(value * 1e9)
    if isinstance(value, str):
        text = value.strip()
        whole, _, fraction = text.partition(".")
        with contextlib.suppress(ValueError):
            moment = dt.datetime.strptime(whole, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
            nanos = int((fraction + "000000000")[:9]) if fraction.isdigit() else 0
            return int(moment.timestamp()) * 1_000_000_000 + nanos
    return 0


class FsspecStore(Store):
    """A folder on a server, through an fsspec file system (`fs`) the caller built."""

    def __init__(self, fs: Any, folder: str) -> None:
        self._fs = fs
        self._folder = folder.rstrip("/") or "/"

    def _path(self, name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise InvalidContentError(f"{name!r} is not a file name")
        return f"{self._folder.rstrip('/')}/{name}"

    def check(self) -> None:
        self._fs.ls(self._folder, detail=True)

    def entries(self) -> list[FileEntry]:
        found: list[FileEntry] = []
        for info in self._fs.ls(self._folder, detail=True):
            name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
            if info.get("type") != "file" or name.startswith(TEMP_PREFIX):
                continue
            found.append(FileEntry(name, int(info.get("size") or 0), _mtime_ns(info)))
        return found

    def open_read(self, name: str) -> IO[bytes]:
        handle: IO[bytes] = self._fs.open(self._path(name), "rb", block_size=1 << 20)
        return handle

    def open_write(self, name: str) -> IO[bytes]:
        handle: IO[bytes] = self._fs.open(self._path(name), "wb", block_size=1 << 20)
        return handle

    def publish(self, temp: str, final: str) -> None:
        target = self._path(final)
        if self._fs.exists(target):
            raise TerminalConnectorError(f"file {final} exists already; not replaced")
        self._fs.mv(self._path(temp), target)

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self._fs.rm(self._path(name))

    def interrupt(self) -> None:
        interrupt = getattr(self._fs, "interrupt", None)
        if callable(interrupt):
            interrupt()

    def close(self) -> None:
        closer = getattr(self._fs, "close", None) or getattr(
            getattr(self._fs, "ftp", None), "close", None
        )
        if callable(closer):
            with contextlib.suppress(Exception):
                closer()
        client = getattr(self._fs, "client", None)  # SFTP: paramiko's SSHClient
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def iter_chunks(handle: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := handle.read(size):
        yield chunk
