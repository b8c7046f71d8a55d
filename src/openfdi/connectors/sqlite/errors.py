"""sqlite3 exceptions -> connector errors (layer: connectors). The SQLite side of the seam."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

from openfdi.connectors.errors import (
    ConnectorError,
    QueryCancelledError,
    TerminalConnectorError,
    TransientConnectorError,
    translating,
)

# Primary result codes (the low byte of an extended code) worth another try later.
_TRANSIENT = frozenset(
    {
        sqlite3.SQLITE_BUSY,  # another connection holds the lock past the busy timeout
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_PROTOCOL,
    }
)
# Constraint, type and size errors: a row's values are refused, not the statement.
ROW_ERROR_CODES = frozenset(
    {sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG}
)


def primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def translate(exc: BaseException, *, cancelled: bool) -> ConnectorError | None:
    """The connector error for a sqlite3 exception; None for anything else."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = primary_code(exc)
    name = getattr(exc, "sqlite_errorname", None)
    message = f"SQLite: {exc}"
    if code == sqlite3.SQLITE_INTERRUPT or str(exc) == "interrupted":
        if cancelled:
            return QueryCancelledError("SQLite: the statement was cancelled", code=name)
        return TransientConnectorError(message, code=name)
    if code in _TRANSIENT:
        return TransientConnectorError(message, code=name)
    return TerminalConnectorError(message, code=name)


def map_driver_errors(
    secrets: Iterable[str], cancelled: Callable[[], bool]
) -> AbstractContextManager[None]:
    """Translate sqlite3 exceptions raised in the block; `cancelled()` tells an interrupt apart."""
    return translating(lambda exc: translate(exc, cancelled=cancelled()), secrets)
