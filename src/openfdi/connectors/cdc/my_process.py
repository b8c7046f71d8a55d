"""The binlog reader's own process: it opens the `BinlogStream`, reads and converts its events,
and sends the items to the parent (`my_reader.BinlogReader`) in batches over a pipe.

The decode is pure Python (my_binlog.py); in a thread of the server it would hold the
interpreter's lock much of the time, so reading and applying would share one core's worth of
Python. In a process of its own the decode has an interpreter, and a core, to itself.

One thread reads and sends (`_follow`): a message goes with `BATCH_ITEMS`, or at a
transaction's end once `GATHER_S` passed or the replication socket has nothing more waiting,
so an idle log's last change is sent at once, not after the next event. A send blocks while
the parent (the target) is slower: then the child reads nothing more, and its memory stays one
message and the pipe's buffer. Between messages it checks the parent is still there (its pid;
the kernel's parent-death signal is the first line of defence) and the pipe is open (the
parent's `stop` closes it).

On the wire the items are plain tuples (`encode`, `decode`), not the frozen dataclasses:
pickling a slotted dataclass goes through its `__getstate__` and unpickling through
`__setstate__`, which measured 4.4 and 4.3 µs an item against 0.4 (convert and dump) and 1.8
(load and rebuild) for the tuples (`bench`-style loop over 4,000 items of the catch-up's kind).
A failure crosses as (kind, message, code, traceback) and is rebuilt in the parent: exceptions
with constructors of their own do not unpickle.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from openfdi.connectors.cdc.my_binlog import Gtid, RowChange, TxnCommit
from openfdi.connectors.cdc.my_source import BinlogStream
from openfdi.connectors.errors import (
    ConnectorError,
    TerminalConnectorError,
    TransientConnectorError,
)
from openfdi.domain.cdc import TableName
from openfdi.lifetime import signal_on_parent_death

BATCH_ITEMS = 2_000
"""Items in one message at most."""
GATHER_S = 0.005
"""A message holds what was read within this long (at most BATCH_ITEMS)."""

Wire = tuple[Any, ...]
"""One item on the wire: a RowChange as (kind, schema, table, columns, new, old), a TxnCommit
as (position, commit_time_us) or (position, commit_time_us, domain, server, seq)."""
CONNECTOR_KINDS = ("terminal", "transient", "connector")
ERROR = "error"
"""A message `(ERROR, kind, message, code, traceback)`: the child's failure, its last word."""


def encode(items: Sequence[RowChange | TxnCommit], out: list[Wire]) -> None:
    for item in items:
        if isinstance(item, RowChange):
            out.append(
                (item.kind, item.table.schema, item.table.name, item.columns, item.new, item.old)
            )
        elif item.gtid is None:
            out.append((item.position, item.commit_time_us))
        else:
            g = item.gtid
            out.append((item.position, item.commit_time_us, g.domain, g.server, g.seq))


def decode(
    wire: Sequence[Wire], tables: dict[tuple[str, str], TableName]
) -> list[RowChange | TxnCommit]:
    """The items of one message; `tables` keeps one TableName per table across messages."""
    out: list[RowChange | TxnCommit] = []
    for t in wire:
        if len(t) == 6:
            table = tables.get((t[1], t[2]))
            if table is None:
                table = tables[t[1], t[2]] = TableName(t[1], t[2])
            out.append(RowChange(t[0], table, t[3], t[4], t[5]))
        elif len(t) == 2:
            out.append(TxnCommit(t[0], t[1]))
        else:
            out.append(TxnCommit(t[0], t[1], Gtid(t[2], t[3], t[4])))
    return out


def failure(exc: BaseException) -> tuple[str, str, str, str | None, str]:
    """`exc` as a message the parent rebuilds (`rebuilt`)."""
    if isinstance(exc, TerminalConnectorError):
        kind = "terminal"
    elif isinstance(exc, TransientConnectorError):
        kind = "transient"
    elif isinstance(exc, ConnectorError):
        kind = "connector"
    else:
        kind = type(exc).__qualname__
    message = exc.message if isinstance(exc, ConnectorError) else str(exc)
    code = exc.code if isinstance(exc, ConnectorError) else None
    return (ERROR, kind, message, code, "".join(traceback.format_exception(exc)))


def rebuilt(kind: str, message: str, code: str | None) -> Exception:
    """The child's failure as the parent raises it: a connector error of the same class and
    message, anything else (a bug) as a RuntimeError naming what it was."""
    if kind == "terminal":
        return TerminalConnectorError(message, code=code)
    if kind == "transient":
        return TransientConnectorError(message, code=code)
    if kind == "connector":
        return ConnectorError(message, code=code)
    return RuntimeError(f"the binlog reader process failed: {kind}: {message}")


def _follow(stream: BinlogStream, pipe: Connection, parent_pid: int) -> None:
    """Read and send until the parent stops (closes the pipe) or is gone. A message goes with
    BATCH_ITEMS, or once GATHER_S passed since its first item, or at a transaction's end when
    nothing more is on its way: no item waits for the next event of an idle log."""
    batch: list[Wire] = []
    started = 0.0
    while True:
        items = stream.read()
        if items:
            if not batch:
                started = time.monotonic()
            encode(items, batch)
        if not batch:
            if pipe.poll() or os.getppid() != parent_pid:
                return
            continue
        if len(batch) < BATCH_ITEMS and time.monotonic() - started < GATHER_S:
            if not items:
                continue  # a GTID: its transaction follows (a heartbeat comes 0.2 s after all)
            if not isinstance(items[-1], TxnCommit) or stream.arriving():
                continue  # the rest of the transaction, or the next one, is on its way
        pipe.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
        batch = []


def serve(
    pipe: Connection, parent_pid: int, content: Mapping[str, Any], task_id: str, wait_s: float
) -> None:
    """The child process's life once it knows its source (`main`): wait for where to read
    from (`BinlogReader.follow`), then read and send until stopped."""
    while not pipe.poll(wait_s):
        if os.getppid() != parent_pid:
            return
    try:
        position, log_file, schemas, gtids = pipe.recv()
    except EOFError:  # stopped before it began
        return
    stream: BinlogStream | None = None
    try:
        stream = BinlogStream(content, task_id, position, log_file, schemas, gtids)
        _follow(stream, pipe, parent_pid)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent closed its end while a message was on its way: it stopped
    except BaseException as exc:
        with contextlib.suppress(OSError):
            pipe.send_bytes(pickle.dumps(failure(exc), pickle.HIGHEST_PROTOCOL))
    finally:
        if stream is not None:
            stream.close()


def main() -> None:
    """The child's entry (`my_reader.BinlogReader.start`): `python -c "…main()" <fd> <pid>`,
    the fd its end of the pipe, the pid its parent's. The parent sends the source's content,
    the task id and the wait first (over the pipe: the content holds a password)."""
    fd, parent_pid = int(sys.argv[1]), int(sys.argv[2])
    # SIGKILL from the kernel when the parent goes (elsewhere the pid check between messages
    # does it). `BinlogReader` is started and stopped on the run's thread, which outlives us.
    if signal_on_parent_death(parent_pid, signal.SIGKILL):
        os._exit(0)
    # A Ctrl-C in a terminal reaches the whole process group: the parent decides when the
    # reader ends (its stop closes the pipe), not the keyboard.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pipe = Connection(fd)
    try:
        content, task_id, wait_s = pipe.recv()
    except EOFError:  # stopped before it began
        return
    serve(pipe, parent_pid, content, task_id, wait_s)
