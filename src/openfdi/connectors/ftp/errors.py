"""ftplib, ssl and paramiko exceptions -> connector errors (layer: connectors)."""

from __future__ import annotations

import ftplib
import socket
import ssl
from collections.abc import Iterable
from contextlib import AbstractContextManager

import paramiko

from openfdi.connectors.errors import (
    ConnectorError,
    TableNotFoundError,
    TerminalConnectorError,
    TransientConnectorError,
    translating,
)

__all__ = ["map_driver_errors", "translate"]


def translate(exc: BaseException) -> ConnectorError | None:
    text = f"{type(exc).__name__}: {str(exc).strip() or repr(exc)}"
    if isinstance(exc, ssl.SSLCertVerificationError | ssl.SSLError):
        return TerminalConnectorError(f"FTPS: {text}")
    if isinstance(exc, paramiko.AuthenticationException | paramiko.BadHostKeyException):
        return TerminalConnectorError(f"SFTP: {text}")
    if isinstance(exc, paramiko.SSHException):
        return TransientConnectorError(f"SFTP: {text}")
    if isinstance(exc, EOFError):  # ftplib and paramiko alike: the server closed the connection
        return TransientConnectorError(f"FTP: the connection was closed: {text}")
    if isinstance(exc, ftplib.error_perm):
        if str(exc).startswith("550"):
            return TableNotFoundError(f"FTP: {text}")
        return TerminalConnectorError(f"FTP: {text}")
    if isinstance(exc, ftplib.error_temp | ftplib.error_reply | ftplib.error_proto):
        return TransientConnectorError(f"FTP: {text}")
    if isinstance(exc, FileNotFoundError):
        return TableNotFoundError(f"FTP: {text}")
    if isinstance(exc, PermissionError):
        return TerminalConnectorError(f"FTP: {text}")
    if isinstance(exc, socket.gaierror):
        return TerminalConnectorError(f"FTP: cannot resolve the host: {text}")
    if isinstance(exc, OSError):  # refused, reset, timed out: the server may come back
        return TransientConnectorError(f"FTP: {text}")
    return None


def map_driver_errors(secrets: Iterable[str]) -> AbstractContextManager[None]:
    return translating(translate, secrets)
