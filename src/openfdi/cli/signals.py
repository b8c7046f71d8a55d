"""Turning SIGTERM/SIGINT into a `threading.Event`, safely under a burst of signals.

A Python signal handler runs on the main thread between two bytecodes of whatever it was doing.
Setting an Event there, or starting a thread there, takes locks (the Event's condition, the
threading module's `_active_limbo_lock`) that the interrupted code, or an earlier handler
interrupted by this one, may hold (the server's SIGTERM and the kernel's, when the server exits,
arrive together), and the worker could deadlock and never stop. The handler here only writes a
byte to a non-blocking pipe (no lock); one thread, started before any handler is installed,
reads it and sets the Event. The first signal of a kind also makes the process ignore the
rest of that kind: the stop is under way, and its deadline does not need them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading


def closing_on_signals(*signums: signal.Signals) -> threading.Event:
    """An Event set once any of `signums` arrives (however many arrive, wherever they land)."""
    closing = threading.Event()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def watch() -> None:
        os.read(read_fd, 1)
        closing.set()

    threading.Thread(target=watch, name="closing", daemon=True).start()

    def on_signal(signum: int, _frame: object) -> None:
        # The news is taken: more of this signal would only nest handlers (a dense stream of
        # them overflowed the stack) and, at exit, find the default action again.
        signal.signal(signum, signal.SIG_IGN)
        # A full pipe already holds the news: the watcher will set the Event.
        with contextlib.suppress(BlockingIOError):
            os.write(write_fd, b"x")

    for signum in signums:
        signal.signal(signum, on_signal)
    return closing


def ignore_from_now(*signums: signal.Signals) -> None:
    """Ignore `signums` from here on: for a process on its way out once the Event is set.

    At exit the interpreter puts every signal with a Python handler back to the default action
    (ignored ones it leaves alone), so a late SIGTERM (the kernel's, as the server exits after
    sending its own) killed a worker that was already stopping cleanly: exit status -15 instead
    of 0, and its clean-up cut short."""
    for signum in signums:
        signal.signal(signum, signal.SIG_IGN)
