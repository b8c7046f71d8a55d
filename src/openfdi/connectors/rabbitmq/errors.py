"""pika exceptions -> connector errors (layer: connectors), with the broker's reason."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager

import pika.exceptions

from openfdi.connectors.errors import (
    ConnectorError,
    TableNotFoundError,
    TerminalConnectorError,
    TransientConnectorError,
    translating,
)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, pika.exceptions.AMQPConnectionError) and exc.args:
        inner = exc.args[0]
        text = str(inner).strip() or repr(inner)
    return text or type(exc).__name__


def translate(exc: BaseException) -> ConnectorError | None:
    if not isinstance(exc, pika.exceptions.AMQPError):
        return None
    message = f"RabbitMQ: {type(exc).__name__}: {_reason(exc)}"
    if isinstance(exc, pika.exceptions.ChannelClosedByBroker):
        if exc.reply_code == 404:
            return TableNotFoundError(f"RabbitMQ: {exc.reply_text}", code="404")
        return TerminalConnectorError(f"RabbitMQ: {exc.reply_text}", code=str(exc.reply_code))
    if isinstance(
        exc,
        pika.exceptions.ProbableAuthenticationError
        | pika.exceptions.ProbableAccessDeniedError
        | pika.exceptions.AuthenticationError,
    ):
        return TerminalConnectorError(message)
    if isinstance(exc, pika.exceptions.ConnectionClosedByBroker) and exc.reply_code in (
        403,
        530,
    ):
        return TerminalConnectorError(f"RabbitMQ: {exc.reply_text}", code=str(exc.reply_code))
    if isinstance(exc, pika.exceptions.UnroutableError | pika.exceptions.NackError):
        return TerminalConnectorError(message)
    return TransientConnectorError(message)


def map_driver_errors(secrets: Iterable[str]) -> AbstractContextManager[None]:
    return translating(translate, secrets)
