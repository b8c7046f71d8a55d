"""How a run ends, by what ended it: the engine's one outcome table.

Every exception that can end a run is looked up here (most specific class first): the run's
final state, the `position_status` the monitor shows, and whether the work is tried again
inside the run (a transient connector error: lost connection, deadlock, server busy). A class
not in the table is a bug in openfdi: the run fails as an internal error and its traceback is
logged.
"""

from __future__ import annotations

from dataclasses import dataclass

from openfdi.connectors.errors import (
    ConnectorError,
    QueryCancelledError,
    SliceRefusedError,
    TerminalConnectorError,
    TransientConnectorError,
)
from openfdi.domain.states import RunState
from openfdi.store.runs import FencedError


class DirtyLimitExceeded(Exception):
    """More rows were refused by the target than the dirty-data limit allows."""


@dataclass(frozen=True, slots=True)
class Outcome:
    state: RunState
    status: str
    """The run's `position_status` (monitor-logs)."""
    retry: bool = False
    """Try the work again inside the run, with backoff (engine/backoff.py)."""
    internal: bool = False
    """openfdi's own fault: log the traceback."""


FENCED = Outcome(RunState.INTERRUPTED, "INTERNAL_ERR")
"""A newer claim owns the run: the runner stops without writing anything more."""

# Looked up along the exception's MRO, so a subclass not listed takes its parent's row.
OUTCOMES: dict[type[BaseException], Outcome] = {
    FencedError: FENCED,
    QueryCancelledError: Outcome(RunState.CANCELLED, "RUNTIME_CANCEL"),
    DirtyLimitExceeded: Outcome(RunState.FAILED, "RUNTIME_ERR"),
    TransientConnectorError: Outcome(RunState.FAILED, "RUNTIME_ERR", retry=True),
    TerminalConnectorError: Outcome(RunState.FAILED, "RUNTIME_ERR"),
    SliceRefusedError: Outcome(RunState.FAILED, "RUNTIME_ERR"),
    ConnectorError: Outcome(RunState.FAILED, "RUNTIME_ERR"),
    Exception: Outcome(RunState.FAILED, "INTERNAL_ERR", internal=True),
}

SUCCEEDED = Outcome(RunState.SUCCEEDED, "TASK_END")
STOPPED = Outcome(RunState.CANCELLED, "RUNTIME_CANCEL")


def outcome_of(exc: BaseException) -> Outcome:
    """The table's row for `exc` (its class or nearest listed ancestor)."""
    for cls in type(exc).__mro__:
        found = OUTCOMES.get(cls)
        if found is not None:
            return found
    return OUTCOMES[Exception]


def reason_of(exc: BaseException) -> str:
    """The run's remarks for `exc`: a connector's (redacted) message, else the exception text."""
    if isinstance(exc, QueryCancelledError):
        return "stopped at the deadline: the running statement was cancelled"
    if isinstance(exc, ConnectorError):
        return exc.message
    if outcome_of(exc).internal:
        return f"internal error: {exc}"
    return str(exc)
