"""paho-mqtt and socket errors -> connector errors (layer: connectors), with the broker's reason.

paho reports most failures as return codes and reason codes rather than exceptions: those are
turned into errors where they are read (`refused`, `failed`); what paho raises (socket errors
while connecting) goes through `map_driver_errors`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from openfdi.connectors.errors import (
    ConnectorError,
    TerminalConnectorError,
    TransientConnectorError,
    translating,
)

# CONNACK / DISCONNECT reason codes that no retry cures (MQTT 5, 3.2.2.2): the data source or
# the task must change first.
_TERMINAL_REASONS = frozenset(
    {
        0x84,  # Unsupported Protocol Version
        0x85,  # Client Identifier not valid
        0x86,  # Bad User Name or Password
        0x87,  # Not authorized
        0x8C,  # Bad authentication method
        0x8F,  # Topic Filter invalid
        0x90,  # Topic Name invalid
        0x95,  # Packet too large
        0x9A,  # Retain not supported
        0x9B,  # QoS not supported
        0x9E,  # Shared Subscriptions not supported
        0xA2,  # Wildcard Subscriptions not supported
    }
)


def refused(what: str, reason: Any) -> ConnectorError:
    """The error for a failure reason code (`reason` is paho's ReasonCode or an int)."""
    value = reason.value if hasattr(reason, "value") else int(reason)
    name = reason.getName() if hasattr(reason, "getName") else str(reason)
    message = f"MQTT: {what}: {name} (reason code 0x{value:02X})"
    if value in _TERMINAL_REASONS:
        return TerminalConnectorError(message, code=f"0x{value:02X}")
    return TransientConnectorError(message, code=f"0x{value:02X}")


def failed(what: str, rc: MQTTErrorCode) -> TransientConnectorError:
    """The error for a paho return code other than success (the connection is gone, mostly)."""
    return TransientConnectorError(f"MQTT: {what}: {mqtt.error_string(rc)}", code=str(int(rc)))


def _translator(address: str) -> Any:
    def translate(exc: BaseException) -> ConnectorError | None:
        if isinstance(exc, socket.gaierror):
            return TerminalConnectorError(f"MQTT: cannot resolve {address}: {exc.strerror}")
        if isinstance(exc, TimeoutError | socket.timeout):
            return TransientConnectorError(f"MQTT: connecting to {address} timed out")
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc) or type(exc).__name__
            return TransientConnectorError(f"MQTT: cannot connect to {address}: {reason}")
        if isinstance(exc, mqtt.WebsocketConnectionError):
            return TransientConnectorError(f"MQTT: {address}: {exc}")
        return None

    return translate


def map_driver_errors(address: str, secrets: Iterable[str]) -> AbstractContextManager[None]:
    return translating(_translator(address), secrets)
