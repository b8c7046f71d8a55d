"""A child process that must not outlive its parent (the server's worker processes, a binlog
reader's process): Linux's parent-death signal."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def signal_on_parent_death(parent_pid: int, signal_number: signal.Signals) -> bool:
    """Ask Linux to send `signal_number` when the parent goes, even by SIGKILL (elsewhere a
    no-op: the caller also checks `os.getppid()` now and then). Linux sends it when the parent
    *thread* that started the child ends, not the process: start such children from a thread
    that outlives them. True if the parent is gone already (before the request took effect):
    the caller should exit."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal_number)
    return os.getppid() != parent_pid
