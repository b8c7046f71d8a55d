"""Identifier checks and quoting for the SQL connectors (layer: connectors).

Names from task details and API calls reach SQL only through `quote_ident`: checked, then quoted
with the dialect's quote character doubled inside, never pasted as they came.
"""

from __future__ import annotations

import re

from openfdi.connectors.errors import TerminalConnectorError

__all__ = ["InvalidIdentifierError", "check_identifier", "quote_ident", "split_qualified"]

MAX_IDENTIFIER_CHARS = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidIdentifierError(TerminalConnectorError):
    """A table or column name that cannot be a SQL identifier."""


def check_identifier(name: str) -> str:
    """Return `name` if it can be a quoted identifier in every supported dialect; else raise."""
    if not name or not name.strip():
        raise InvalidIdentifierError("empty identifier")
    if len(name) > MAX_IDENTIFIER_CHARS:
        raise InvalidIdentifierError(f"identifier longer than {MAX_IDENTIFIER_CHARS} characters")
    if _CONTROL.search(name):
        raise InvalidIdentifierError(f"identifier {name!r} contains a control character")
    return name


def quote_ident(name: str, quote: str = '"') -> str:
    """Quote one identifier for a dialect whose identifier quote is `quote` (`"` or a backtick)."""
    check_identifier(name)
    return quote + name.replace(quote, quote * 2) + quote


def split_qualified(name: str) -> tuple[str | None, str]:
    """Split `schema.table` at the first dot; a name without a dot has no schema.

    A table whose own name contains a dot is therefore reachable only through the connector's
    default schema, which is the price of accepting the common qualified form.
    """
    schema, dot, table = name.partition(".")
    if not dot:
        return None, name
    return check_identifier(schema), check_identifier(table)
