"""psycopg exceptions -> connector errors (layer: connectors). The PostgreSQL side of the seam.

Classified by SQLSTATE class where the server sent one; connection failures raised by libpq
carry none and are told apart by their text (authentication and unknown database are terminal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import psycopg

from openfdi.connectors.errors import (
    ConnectorError,
    QueryCancelledError,
    TableNotFoundError,
    TerminalConnectorError,
    TransientConnectorError,
    translating,
)

# SQLSTATE classes worth another try: connection exception, transaction rollback (serialization
# failure, deadlock), insufficient resources, operator intervention (shutdown), system error.
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_TRANSIENT_STATES = frozenset({"55P03", "55006"})  # lock not available, object in use
_QUERY_CANCELED = "57014"
_UNDEFINED_TABLE = "42P01"
# Connection failures that trying again will not cure.
_TERMINAL_CONNECT_TEXT = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "permission denied",
    "invalid",
)
# SQLSTATE classes meaning a row's values were refused: data exception, integrity violation.
ROW_ERROR_CLASSES = frozenset({"22", "23"})


CREATED_CONCURRENTLY = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.DuplicateTable,
    psycopg.errors.DuplicateObject,
)
"""What `CREATE TABLE IF NOT EXISTS` raises when another session created the same table at the
same moment: both checked and found none, and the second fails on pg_type's unique index, as a
duplicate table or as a duplicate type (the table's row type) once the first commits. The table
exists once this is seen."""


def translate(exc: BaseException, *, cancelled: bool) -> ConnectorError | None:
    """The connector error for a psycopg exception; None for anything else."""
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate
    message = f"PostgreSQL: {str(exc).strip()}"
    if state == _QUERY_CANCELED:
        if cancelled:
            return QueryCancelledError("PostgreSQL: the statement was cancelled", code=state)
        return TransientConnectorError(message, code=state)  # statement_timeout
    if state is None:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            text = str(exc).lower()
            if any(marker in text for marker in _TERMINAL_CONNECT_TEXT):
                return TerminalConnectorError(message)
            return TransientConnectorError(message)
        return TerminalConnectorError(message)
    if state == _UNDEFINED_TABLE:
        return TableNotFoundError(message, code=state)
    if state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES:
        return TransientConnectorError(message, code=state)
    return TerminalConnectorError(message, code=state)


def is_row_error(exc: BaseException) -> bool:
    """Whether `exc` means some row's values were refused (so smaller slices may succeed)."""
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        return True
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state[:2] in ROW_ERROR_CLASSES


def map_driver_errors(
    secrets: Iterable[str], cancelled: Callable[[], bool]
) -> AbstractContextManager[None]:
    """Translate psycopg exceptions raised in the block; `cancelled()` tells a cancel apart."""
    return translating(lambda exc: translate(exc, cancelled=cancelled()), secrets)
