"""PyMySQL and asyncmy exceptions -> connector errors (layer: connectors): the MySQL seam.

The drivers' exception classes do not follow the kind of failure (a lost connection and a syntax
error can both be OperationalError), so the server's error number decides. asyncmy (reads) has
the same classes and arguments as PyMySQL (everything else), `(errno, message)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import asyncmy.errors
import pymysql  # type: ignore[import-untyped]

from openfdi.connectors.errors import (
    ConnectorError,
    QueryCancelledError,
    TableNotFoundError,
    TerminalConnectorError,
    TransientConnectorError,
    translating,
)

ER_QUERY_INTERRUPTED = 1317
ER_NO_SUCH_TABLE = 1146
TRANSIENT_CODES = frozenset(
    {
        0,  # PyMySQL's InterfaceError(0, "") on a connection that went away
        1040,  # too many connections
        1053,  # server shutdown in progress
        1205,  # lock wait timeout
        1213,  # deadlock
        1927,  # MariaDB: connection was killed
        1969,  # MariaDB: max_statement_time exceeded
        2002,  # can't connect through socket
        2003,  # can't connect to server
        2006,  # server has gone away
        2013,  # lost connection during query
        2055,  # lost connection at handshake
        3024,  # MySQL: max_execution_time exceeded
    }
)
# A row's values were refused (strict mode): the same statement without that row may pass.
ROW_ERROR_CODES = frozenset(
    {
        1048,  # column cannot be null
        1062,  # duplicate entry
        1169,  # duplicate unique
        1216, 1217, 1451, 1452,  # foreign key
        1263,  # NULL into NOT NULL
        1264,  # out of range
        1265,  # data truncated
        1292,  # incorrect datetime/number value
        1300,  # invalid character string
        1366,  # incorrect value for column
        1367,  # illegal value for type
        1406,  # data too long
        1411,  # incorrect value for function
        1690,  # value out of range
        3140,  # MySQL: invalid JSON text
        3819,  # MySQL: check constraint violated
        4025,  # MariaDB: CONSTRAINT failed (JSON and CHECK columns)
    }
)  # fmt: skip


DRIVER_ERRORS: tuple[type[BaseException], ...] = (pymysql.err.MySQLError, asyncmy.errors.MySQLError)
_INTERFACE_ERRORS = (pymysql.err.InterfaceError, asyncmy.errors.InterfaceError)


def error_code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def translate(exc: BaseException, *, cancelled: bool) -> ConnectorError | None:
    """The connector error for a PyMySQL or asyncmy exception; None for anything else."""
    if not isinstance(exc, DRIVER_ERRORS):
        return None
    code = error_code(exc)
    args = exc.args
    text = args[1] if len(args) > 1 else str(exc)
    message = f"MySQL: {text}" if text else f"MySQL: {type(exc).__name__}"
    tag = str(code) if code is not None else None
    if code == ER_QUERY_INTERRUPTED or (cancelled and code in (2013, 1927)):
        if cancelled:
            return QueryCancelledError("MySQL: the statement was cancelled", code=tag)
        return TransientConnectorError(message, code=tag)
    if code == ER_NO_SUCH_TABLE:
        return TableNotFoundError(message, code=tag)
    if code in TRANSIENT_CODES or (code is None and isinstance(exc, _INTERFACE_ERRORS)):
        return TransientConnectorError(message, code=tag)
    return TerminalConnectorError(message, code=tag)


def is_row_error(exc: BaseException) -> bool:
    return isinstance(exc, DRIVER_ERRORS) and error_code(exc) in ROW_ERROR_CODES


def map_driver_errors(
    secrets: Iterable[str], cancelled: Callable[[], bool]
) -> AbstractContextManager[None]:
    """Translate driver exceptions raised in the block; `cancelled()` tells a KILL apart."""
    return translating(lambda exc: translate(exc, cancelled=cancelled()), secrets)
