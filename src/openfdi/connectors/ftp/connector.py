"""FTP, FTPS and SFTP folders through fsspec (layer: connectors): ftplib for FTP and FTPS (TLS
verified against the system's or the data source's CA), paramiko for SFTP (the server's host key
verified against the data source's `ftp_host_key`: an unknown key is refused)."""

from __future__ import annotations

import base64
import contextlib
import ftplib
import hashlib
import logging
import socket
import ssl
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import paramiko
from fsspec.implementations.ftp import FTPFileSystem
from fsspec.implementations.sftp import SFTPFileSystem

from openfdi.connectors._files.connector import FilesConnector
from openfdi.connectors._files.store import FsspecStore, Store
from openfdi.connectors.errors import InvalidContentError, TerminalConnectorError
from openfdi.connectors.ftp.errors import map_driver_errors

__all__ = ["FtpConnector"]

PROTOCOLS = ("ftp", "ftps", "sftp")
_log = logging.getLogger(__name__)
MODES = ("passive", "active")
TIMEOUT_S = 30.0


class _Ftp(ftplib.FTP):
    """ftplib keeps a transfer's data connection to itself: kept here, so that `interrupt` can
    end a transfer blocked on a stalled server from another thread."""

    data: socket.socket | None = None

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = super().ntransfercmd(cmd, rest)
        self.data = conn
        return conn, size

    def interrupt(self) -> None:
        for sock in (self.data, self.sock):
            if sock is not None:
                with contextlib.suppress(OSError):
                    # The plain socket's shutdown, also under TLS: SSLSocket.shutdown drops the
                    # TLS state the blocked thread is using.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _FtpTls(_Ftp, ftplib.FTP_TLS):
    """FTPS, its transfers interruptible as `_Ftp`'s."""


class _FtpFileSystem(FTPFileSystem):  # type: ignore[misc]
    """fsspec's FTP file system, with FTPS verifying the server's certificate (ftplib's FTP_TLS
    verifies nothing without a context) and active mode when asked."""

    def __init__(self, *, context: ssl.SSLContext | None, passive: bool, **kwargs: Any) -> None:
        self._context = context
        self._passive = passive
        super().__init__(**kwargs)

    def _connect(self) -> None:
        self.ftp: ftplib.FTP
        if self._context is not None:
            self.ftp = _FtpTls(  # the data source asked for FTPS
                context=self._context, timeout=self.timeout, encoding=self.encoding
            )
        else:
            # Plain FTP when the data source says so (ftp_protocol): ROMA's FTP type is this.
            self.ftp = _Ftp(timeout=self.timeout, encoding=self.encoding)
        self.ftp.connect(self.host, self.port)
        self.ftp.login(*self.cred)  # FTP_TLS: AUTH TLS first, so the password is encrypted
        if isinstance(self.ftp, ftplib.FTP_TLS):
            self.ftp.prot_p()  # and the data connections too
        self.ftp.set_pasv(self._passive)

    def interrupt(self) -> None:
        """`Store.interrupt`: shut the control and data connections (another thread's)."""
        ftp = getattr(self, "ftp", None)
        if isinstance(ftp, _Ftp):
            ftp.interrupt()

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        # Listed afresh each time: fsspec keeps a folder's listing for the file system's life,
        # so a REALTIME run (one connector, polling the folder) never saw a file dropped after
        # its first poll, and `publish` could miss a file another writer made meanwhile.
        self.invalidate_cache()
        try:
            return super().ls(path, detail=detail, **kwargs)
        except KeyError:
            # A name holding a line break splits its MLSD line in two; fsspec fails on the half
            # without facts ("KeyError: 'type'") and so the whole folder did: skip that one.
            return self._mlsd_skipping_broken(path, detail)

    def _mlsd_skipping_broken(self, path: str, detail: bool) -> Any:
        path = self._strip_protocol(path)
        found: list[dict[str, Any]] = []
        for name, facts in self.ftp.mlsd(path):
            kind = facts.get("type")
            if kind is None:
                _log.warning("FTP: an entry of %s cannot be listed (%r): skipped", path, name)
                continue
            if name in (".", "..") or kind in ("pdir", "cdir"):
                continue
            entry: dict[str, Any] = dict(facts)
            entry["name"] = f"{path.rstrip('/')}/{name}"
            entry["type"] = "directory" if kind == "dir" else kind
            entry["size"] = int(facts.get("size") or 0) if kind == "file" else 0
            found.append(entry)
        return found if detail else sorted(e["name"] for e in found)


def fingerprint(key: paramiko.PKey) -> str:
    """A public key's SHA256 fingerprint as OpenSSH prints it (`ssh-keygen -lf`)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _TrustedHostKeys(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Accept the server only if it presents one of the configured keys (or a key with one of
    the configured fingerprints); refuse any other, naming the key it presented, so that an
    operator can check it out of band and set it."""

    def __init__(self, keys: frozenset[tuple[str, bytes]], fingerprints: frozenset[str]) -> None:
        self._keys, self._fingerprints = keys, fingerprints

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if (key.get_name(), key.asbytes()) in self._keys or fingerprint(key) in self._fingerprints:
            return
        presented = f"{key.get_name()} {key.get_base64()} ({fingerprint(key)})"
        if not self._keys and not self._fingerprints:
            raise TerminalConnectorError(
                f"SFTP: the host key of {hostname} cannot be verified: the data source has no "
                f"ftp_host_key. The server presented {presented}; check it with the server's "
                "administrator and set it as content.ftp_host_key"
            )
        raise TerminalConnectorError(
            f"SFTP: the host key of {hostname} is not the one the data source trusts "
            f"(ftp_host_key): the server presented {presented}. Refused: the server may be "
            "impersonated, or its key changed"
        )


class _AnyHostKey(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """`ftp_insecure_skip_host_key`: any server key is accepted (a man in the middle too)."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        _log.warning(
            "SFTP: the host key of %s (%s) is not verified: ftp_insecure_skip_host_key is set",
            hostname,
            fingerprint(key),
        )


def _key_line(line: str) -> tuple[str, bytes] | str:
    """One line of `ftp_host_key`: a fingerprint (`SHA256:...`), an OpenSSH public key
    (`ssh-ed25519 AAAA... [comment]`) or a known_hosts line (`host[,host] ssh-ed25519 AAAA...`;
    the host names are not compared: the line is the data source's own)."""
    words = line.split()
    if len(words) == 1 and words[0].startswith("SHA256:"):
        return words[0].rstrip("=")
    if words and words[0].startswith("@"):
        raise ValueError("known_hosts markers (@cert-authority, @revoked) are not supported")
    for i, word in enumerate(words[:-1]):
        if word.startswith(("ssh-", "ecdsa-", "sk-")):
            return word, base64.b64decode(words[i + 1], validate=True)
    raise ValueError("not a public key")


def _text(content: Mapping[str, Any], name: str, default: str = "") -> str:
    value = content.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidContentError(f"{name} must be text", field=name)
    return str(value).strip()


class FtpConnector(FilesConnector):
    def __init__(self, content: Mapping[str, Any]) -> None:
        super().__init__(content)
        self._protocol = _text(content, "ftp_protocol", "ftp").lower()
        if self._protocol not in PROTOCOLS:
            raise InvalidContentError(
                f"ftp_protocol must be one of {', '.join(PROTOCOLS)}", field="ftp_protocol"
            )
        self._mode = _text(content, "ftp_connect_mode", "passive").lower()
        if self._mode not in MODES:
            raise InvalidContentError(
                f"ftp_connect_mode must be one of {', '.join(MODES)}", field="ftp_connect_mode"
            )
        self._host = _text(content, "host")
        if not self._host:
            raise InvalidContentError("host is required", field="host")
        port = _text(content, "port", "22" if self._protocol == "sftp" else "21")
        self._port = int(port)  # the service checked it is 1..65535
        self._user = _text(content, "user_name", "anonymous" if self._protocol != "sftp" else "")
        self._password = _text(content, "password")
        self._folder = _text(content, "address", ".") or "."
        if "\x00" in self._folder:
            raise InvalidContentError("address holds a NUL character", field="address")
        self._context = self._tls_context(content) if self._protocol == "ftps" else None
        self._host_key = self._pinned(content) if self._protocol == "sftp" else None

    @staticmethod
    def _tls_context(content: Mapping[str, Any]) -> ssl.SSLContext:
        ca = _text(content, "ftp_ca_cert")
        try:
            return ssl.create_default_context(cadata=ca or None)
        except (ssl.SSLError, ValueError) as exc:
            raise InvalidContentError(
                f"ftp_ca_cert is not a PEM certificate: {exc}", field="ftp_ca_cert"
            ) from None

    @staticmethod
    def _pinned(content: Mapping[str, Any]) -> paramiko.MissingHostKeyPolicy:
        skip = content.get("ftp_insecure_skip_host_key")
        if skip not in (None, "", True, False, "true", "false"):
            raise InvalidContentError(
                "ftp_insecure_skip_host_key must be true or false",
                field="ftp_insecure_skip_host_key",
            )
        text = content.get("ftp_host_key") or ""
        if not isinstance(text, str):
            raise InvalidContentError("ftp_host_key must be text", field="ftp_host_key")
        if skip in (True, "true") and not text.strip():
            return _AnyHostKey()
        keys: set[tuple[str, bytes]] = set()
        fingerprints: set[str] = set()
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                found = _key_line(line)
            except ValueError as exc:
                raise InvalidContentError(
                    f"ftp_host_key line {number} is not an OpenSSH public key (`ssh-ed25519 "
                    f"AAAA...`), a known_hosts line or a SHA256 fingerprint: {exc}",
                    field="ftp_host_key",
                ) from None
            if isinstance(found, str):
                fingerprints.add(found)
            else:
                keys.add(found)
        return _TrustedHostKeys(frozenset(keys), frozenset(fingerprints))

    def errors(self) -> AbstractContextManager[None]:
        return map_driver_errors([self._password])

    def open_store(self) -> Store:
        with self.errors():
            if self._protocol == "sftp":
                fs = SFTPFileSystem(
                    self._host,
                    port=self._port,
                    username=self._user or None,
                    password=self._password or None,
                    host_key_policy=self._host_key,
                    timeout=TIMEOUT_S,
                    look_for_keys=False,
                    allow_agent=False,
                    skip_instance_cache=True,
                )
            else:
                fs = _FtpFileSystem(
                    context=self._context,
                    passive=self._mode == "passive",
                    host=self._host,
                    port=self._port,
                    username=self._user,
                    password=self._password,
                    timeout=TIMEOUT_S,
                    skip_instance_cache=True,
                )
        folder = self._folder
        if not folder.startswith("/"):
            home = fs.ftp.pwd() if self._protocol != "sftp" else fs.ftp.normalize(".")
            folder = home if folder == "." else f"{home.rstrip('/')}/{folder}"
        return FsspecStore(fs, folder)
