"""Real FTP, FTPS and SFTP servers for the file tests, each on a free loopback port serving a
temp dir, started in a thread of the test process and stopped afterwards: pyftpdlib (FTPS with a
self-signed certificate made here with `cryptography`) and asyncssh's SFTP server."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER, PASSWORD = "files-user", "files-secret-pw"


@dataclass
class Server:
    port: int
    root: Path
    content: dict[str, Any] = field(default_factory=dict)


def self_signed(folder: Path) -> tuple[Path, Path, str]:
    """A certificate for 127.0.0.1 and its key (files), and its PEM (the CA to trust)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openfdi test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, pem.decode()


@contextmanager
def ftp_server(root: Path, *, tls: bool = False) -> Iterator[Server]:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(root), perm="elradfmwMT")
    content = {"host": "127.0.0.1", "user_name": USER, "password": PASSWORD}
    if tls:
        cert, key, pem = self_signed(root.parent)
        handler: Any = type(
            "Handler",
            (TLS_FTPHandler,),
            {"authorizer": authorizer, "certfile": str(cert), "keyfile": str(key),
             "tls_control_required": True, "tls_data_required": True},
        )  # fmt: skip
        content |= {"ftp_protocol": "ftps", "ftp_ca_cert": pem}
    else:
        handler = type("Handler", (FTPHandler,), {"authorizer": authorizer})
        content |= {"ftp_protocol": "ftp"}
    handler.passive_ports = None
    server = ThreadedFTPServer(("127.0.0.1", 0), handler)
    port = server.address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(port, root, {**content, "port": str(port)})
    finally:
        server.close_all()
        thread.join(timeout=10)


@contextmanager
def sftp_server(root: Path) -> Iterator[Server]:
    with warnings.catch_warnings():  # asyncssh still names DSA, which cryptography deprecates
        warnings.simplefilter("ignore")
        import asyncssh

    class _Auth(asyncssh.SSHServer):  # type: ignore[misc]
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return bool(username == USER and password == PASSWORD)

    loop = asyncio.new_event_loop()
    key = asyncssh.generate_private_key("ssh-ed25519")
    started: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            started["server"] = await asyncssh.listen(
                "127.0.0.1",
                0,
                server_host_keys=[key],
                server_factory=_Auth,
                sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root)),
            )
            ready.set()

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "the SFTP server did not start"
    server = started["server"]
    port = server.sockets[0].getsockname()[1]
    public = key.export_public_key("openssh").decode().strip()
    content = {"host": "127.0.0.1", "port": str(port), "user_name": USER,
               "password": PASSWORD, "ftp_protocol": "sftp", "ftp_host_key": public,
               "address": "/"}  # fmt: skip
    try:
        yield Server(port, root, content)
    finally:

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
