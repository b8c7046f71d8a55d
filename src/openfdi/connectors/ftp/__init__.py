"""The FTP connector's spec (layer: connectors): a folder on an FTP, FTPS or SFTP server.

`content`: `host`, `port` (21, or 22 for SFTP), `user_name`, `password`, `ftp_protocol`
(`ftp`, `ftps` or `sftp`, as ROMA's FTP data source has it, plus `ftps`), `ftp_connect_mode`
(`passive` or `active`), `address` (the folder, default the login folder), `ftp_ca_cert`
(FTPS: the PEM of the certificate authority to trust instead of the system's) and
`ftp_host_key` (SFTP: the server's public keys or fingerprints, one a line; any other key is
refused) and `ftp_insecure_skip_host_key` (SFTP: accept any key; insecure, docs/files.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec


def _load() -> type[Connector]:
    from openfdi.connectors.ftp.connector import FtpConnector

    return FtpConnector


def check_options(options: Mapping[str, Any]) -> None:
    from openfdi.connectors._files.options import parse_options  # no pyarrow: cheap

    parse_options(options)


SPEC = ConnectorSpec(
    type="FTP",
    required_content=("host",),
    capabilities=Capabilities(read=True, write=True, incremental=True, bulk=True, passthrough=True),
    load=_load,
    check_options=check_options,
)
