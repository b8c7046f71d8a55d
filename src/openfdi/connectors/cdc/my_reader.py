"""The binlog, read and parsed in a process of its own (`my_process`), handed to the run's
thread in batches: python-mysql-replication parses in pure Python, the larger half of the work,
which then runs on another core while the run applies the previous changes to the target.

The process is a fresh interpreter started with `subprocess` (`my_process.main`), never a
`fork`: the server is multi-threaded, and a forked child would inherit locks (the logging
module's, the allocator's, a connection pool's) held by threads that do not exist in it, and
hang on the first of them. Not multiprocessing's `spawn` either: it also started a resource
tracker process per server (12 MB) and made the child import the server's `__main__` (the
CLI), for nothing the reader uses. The pipe is a socket pair, one end passed to the child;
the source's content (its password) goes over it, never on the command line.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from openfdi.connectors.cdc import my_process
from openfdi.connectors.cdc.my_binlog import Gtid, RowChange, TxnCommit
from openfdi.connectors.errors import TransientConnectorError
from openfdi.domain.cdc import TableName

log = logging.getLogger(__name__)

Item = list[RowChange | TxnCommit]
_CHILD = "from openfdi.connectors.cdc.my_process import main; main()"


class BinlogReader:
    """The parent's side: `start`, then `next` until done, then `stop` (always)."""

    def __init__(
        self, content: Mapping[str, Any], task_id: str, wait_s: float, *, join_s: float = 2.0
    ) -> None:
        """`wait_s`: how often the child, until told where to read from (`follow`), checks
        that its parent is still there; `join_s`: `stop`'s budget."""
        self._args = (dict(content), task_id)
        self.wait_s = wait_s
        self.join_s = join_s
        self._position = 0
        self._tables: dict[tuple[str, str], TableName] = {}
        self._pipe: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def position(self) -> int:
        """The position after the last commit handed over by `next` (not necessarily applied)."""
        return self._position

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the child: its interpreter comes up and imports the decoder (a few tenths of a
        second, more on a busy machine) while the caller gets the position to `follow` from."""
        ours, theirs = socket.socketpair()
        with ours, theirs:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-c", _CHILD, str(theirs.fileno()), str(os.getpid())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
            # The child's end lives in the child only (its exit is our EOF); ours becomes the
            # Connection's.
            pipe = Connection(ours.detach())
        self._pipe, self._process = pipe, process
        try:
            pipe.send((*self._args, self.wait_s))
        except OSError:
            raise self._died() from None

    def follow(
        self, position: int, log_file: str | None, schemas: Sequence[str], gtids: Sequence[Gtid]
    ) -> None:
        """Read from `position` in `log_file`, or without a file from just after the MariaDB
        `gtids` (`BinlogStream`'s arguments; the stream is opened in the child)."""
        assert self._pipe is not None, "start() first"
        self._position = position
        try:
            self._pipe.send((position, log_file, list(schemas), list(gtids)))
        except OSError:
            raise self._died() from None

    def next(self, timeout_s: float) -> Item | None:
        """The items read since the last call (many events' worth), or None after `timeout_s`
        without any; the child's failure is raised here, and its death without a word as a
        TransientConnectorError naming its exit code."""
        pipe = self._pipe
        assert pipe is not None, "start() first"
        try:
            if not pipe.poll(timeout_s):
                return None
            message = pickle.loads(pipe.recv_bytes())  # noqa: S301 - from our own child
        except (EOFError, OSError):
            raise self._died() from None
        if isinstance(message, tuple):
            _, kind, text, code, trace = message
            if kind not in my_process.CONNECTOR_KINDS:  # a bug: its traceback is in the child
                log.error("the binlog reader process failed:\n%s", trace)
            raise my_process.rebuilt(kind, text, code)
        items = my_process.decode(message, self._tables)
        for item in reversed(items):
            if isinstance(item, TxnCommit):
                self._position = item.position
                break
        return items

    def _died(self) -> TransientConnectorError:
        assert self._process is not None
        try:
            code: int | None = self._process.wait(self.join_s)
        except subprocess.TimeoutExpired:
            code = None
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return TransientConnectorError(
            f"the binlog reader process (pid {self._process.pid}) ended without a word: {how}"
        )

    def stop(self) -> None:
        """End the child: closing the pipe tells it (it exits at its next message, or on an
        idle log after the server's next heartbeat, 0.2 s), then SIGTERM, then SIGKILL; returns
        within `join_s`."""
        if self._pipe is not None:
            self._pipe.close()
        process, self._process = self._process, None  # a second stop has nothing to do
        if process is None:
            return
        deadline = time.monotonic() + self.join_s
        if _ended(process, self.join_s / 2) is None:
            process.terminate()
            if _ended(process, max(0.0, deadline - time.monotonic()) / 2) is None:
                log.warning("the binlog reader process %s ignored SIGTERM: killing it", process.pid)
                process.kill()
                _ended(process, max(0.0, deadline - time.monotonic()))


def _ended(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """The process's exit status once it has ended within `timeout_s` (reaped), else None."""
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return None
