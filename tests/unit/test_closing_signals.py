"""A worker told to stop by SIGTERM stops cleanly however many more arrive, wherever they land:
during its work (the handler takes no lock) and during its exit (the interpreter's finalisation
puts Python handlers back to the default action, which killed a stopping worker with -15)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

CHILD = """
import signal, sys
from openfdi.cli.signals import closing_on_signals, ignore_from_now
closing = closing_on_signals(signal.SIGTERM)
print("ready", flush=True)
closing.wait()
ignore_from_now(signal.SIGTERM)
"""


@pytest.mark.parametrize("attempt", range(5))
def test_a_stopping_process_survives_a_stream_of_sigterm_to_its_exit(attempt: int) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    sent = 0
    while child.poll() is None:  # signals until the very end of the process
        try:
            child.send_signal(signal.SIGTERM)
            sent += 1
        except ProcessLookupError:
            break
    assert child.wait(timeout=20) == 0, f"killed after {sent} signals"
