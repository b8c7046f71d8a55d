"""FTP, FTPS and SFTP as file ends, against real servers started by the tests: a round trip of
typed rows through each protocol, published only when complete; wrong credentials, an
untrusted certificate and a wrong host key are refused with the reason."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from decimal import Decimal
from typing import Any

import pytest

from openfdi.connectors.errors import ConnectorError, InvalidContentError, TerminalConnectorError
from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import Batch, Column, LogicalType, ReadPlan, TableSchema, WritePlan
from tests.files.servers import Server

SCHEMA = TableSchema(
    "orders",
    (
        Column("id", LogicalType.BIGINT),
        Column("amount", LogicalType.DECIMAL, precision=12, scale=2),
        Column("at", LogicalType.TIMESTAMPTZ),
        Column("note", LogicalType.TEXT),
    ),
)
ROWS = [
    (1, Decimal("10.25"), dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC), 'a, "q"\nü'),
    (2, None, None, None),
    (3, Decimal("-0.01"), dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.UTC), ""),
]


def _registry() -> Registry:
    return Registry.discover()


def _write(content: dict[str, Any], fmt: str) -> None:
    with _registry().open("FTP", content) as target:
        target.configure({"format": fmt})
        plan = WritePlan("orders", columns=SCHEMA.names, source_schema=SCHEMA)
        target.prepare_target(plan)
        target.write(Batch.of(SCHEMA.names, ROWS[:2]), plan)
        target.commit()
        target.write(Batch(SCHEMA.names, ROWS[2:], 0, last=True), plan)
        target.commit()


def _read(content: dict[str, Any], fmt: str) -> list[tuple[Any, ...]]:
    with _registry().open("FTP", content) as source:
        source.configure({"format": fmt, "min_age_seconds": 0})
        plan = ReadPlan("orders", incremental_column="_file_name")
        return [row for batch in source.read(plan) for row in batch.rows]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("protocol", ["ftp", "ftps", "sftp"])
def test_rows_go_round_trip_through_each_protocol(
    protocol: str, fmt: str, request: pytest.FixtureRequest
) -> None:
    server: Server = request.getfixturevalue(protocol)
    _write(server.content, fmt)
    files = sorted(p.name for p in server.root.iterdir())
    assert len(files) == 1, files  # one file for the run, no temp file left
    assert files[0].startswith("orders_")
    assert files[0].endswith("." + fmt)
    assert _read(server.content, fmt) == ROWS
    with _registry().open("FTP", server.content) as listing:
        listing.check()
        assert listing.list_tables() == files


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_run_that_resumes_past_its_commits_publishes_a_file_at_each(
    fmt: str, ftp: Server
) -> None:
    # A file on a server cannot be recovered after a crash (it is renamed only when finished):
    # for a run whose checkpoint moves past its commits, each commit publishes its file.
    with _registry().open("FTP", ftp.content) as target:
        target.configure({"format": fmt})
        plan = WritePlan("orders", columns=SCHEMA.names, source_schema=SCHEMA,
                         keeps_committed=True)  # fmt: skip
        target.prepare_target(plan)
        target.write(Batch.of(SCHEMA.names, ROWS[:2]), plan)
        target.commit()
        assert len([p for p in ftp.root.iterdir() if not p.name.startswith(".")]) == 1
        target.write(Batch.of(SCHEMA.names, ROWS[2:]), plan)
        target.commit()
        published = sorted(p.name for p in ftp.root.iterdir() if not p.name.startswith("."))
        assert len(published) == 2  # before the run's end: a crash now loses nothing
    assert sorted(_read(ftp.content, fmt)) == sorted(ROWS)


def test_wrong_password_fails_without_showing_it(ftp: Server) -> None:
    content = {**ftp.content, "password": "not-the-password"}
    with _registry().open("FTP", content) as source, pytest.raises(ConnectorError) as caught:
        source.check()
    assert isinstance(caught.value, TerminalConnectorError)
    assert "not-the-password" not in str(caught.value)
    assert "530" in str(caught.value)


def test_ftps_refuses_a_certificate_it_does_not_trust(ftps: Server) -> None:
    content = {k: v for k, v in ftps.content.items() if k != "ftp_ca_cert"}
    with _registry().open("FTP", content) as source, pytest.raises(TerminalConnectorError) as e:
        source.check()
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value) or "certificate" in str(e.value)


def test_sftp_refuses_a_server_with_another_host_key(sftp: Server) -> None:
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    content = {**sftp.content, "ftp_host_key": other}
    with _registry().open("FTP", content) as source, pytest.raises(TerminalConnectorError):
        source.check()


def _fingerprint(public: str) -> str:
    digest = hashlib.sha256(base64.b64decode(public.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def test_sftp_without_a_host_key_refuses_the_server_and_names_its_key(sftp: Server) -> None:
    public = sftp.content["ftp_host_key"]
    content = {k: v for k, v in sftp.content.items() if k != "ftp_host_key"}
    with _registry().open("FTP", content) as source, pytest.raises(TerminalConnectorError) as e:
        source.check()
    assert "cannot be verified" in str(e.value)
    assert public.split()[1] in str(e.value)  # what to check and set
    assert _fingerprint(public) in str(e.value)


@pytest.mark.parametrize("form", ["known_hosts", "fingerprint", "several"])
def test_sftp_takes_the_host_key_as_known_hosts_or_fingerprint(sftp: Server, form: str) -> None:
    public = sftp.content["ftp_host_key"]
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    text = {
        "known_hosts": f"# the server\n[127.0.0.1]:{sftp.port} {public}\n",
        "fingerprint": _fingerprint(public),
        "several": f"{other} old key\n{public} new key",
    }[form]
    with _registry().open("FTP", {**sftp.content, "ftp_host_key": text}) as source:
        source.check()
    with (
        _registry().open("FTP", {**sftp.content, "ftp_host_key": _fingerprint(other)}) as source,
        pytest.raises(TerminalConnectorError, match="not the one the data source trusts"),
    ):
        source.check()


def test_sftp_accepts_any_key_only_when_told_it_is_insecure(sftp: Server) -> None:
    content = {k: v for k, v in sftp.content.items() if k != "ftp_host_key"}
    with _registry().open("FTP", {**content, "ftp_insecure_skip_host_key": True}) as source:
        source.check()
    for bad in ({"ftp_host_key": "ssh-ed25519 not-base64!"}, {"ftp_host_key": "hello"},
                {"ftp_insecure_skip_host_key": "yes"}):  # fmt: skip
        with pytest.raises(InvalidContentError) as e:
            _registry().open("FTP", {**content, **bad})
        assert e.value.field == next(iter(bad))
