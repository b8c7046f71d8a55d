"""A SQLite data source never reaches openfdi's own files, whatever the spelling or link, and never
leaves the allowed roots (OPENFDI_SQLITE_ROOTS): refused at create/update (400 FDI.3033 naming
content.database_name) and again wherever the file is opened (test-connect, tables, columns).
The run-time side (a link swapped after create) is in tests/engine/test_sqlite_confinement_runs."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from openfdi.services.runtime import Runtime

both_backends = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
pytestmark = both_backends


def _sqlite_body(path: str, name: str = "ds") -> dict[str, Any]:
    return {
        "datasource_name": name,
        "datasource_type": "SQLITE",
        "content": {"database_name": path},
    }


def _assert_refused(reply: httpx.Response) -> None:
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["error_code"] == "FDI.3033", body
    assert "content.database_name" in body["error_msg"], body


def _private_file(runtime: Runtime) -> Path:
    """A SQLite file inside the data dir with something worth stealing, on either backend."""
    data = runtime.settings.data_dir.resolve()
    metadata = data / "openfdi.db"
    if metadata.exists():
        return metadata
    private = data / "private.db"
    with sqlite3.connect(private) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS credentials (ak TEXT, sk TEXT)")
    return private


def _spellings(runtime: Runtime, tmp_path: Path) -> list[str]:
    data = runtime.settings.data_dir.resolve()
    private = _private_file(runtime)
    alias = tmp_path / "alias"
    alias.symlink_to(data, target_is_directory=True)
    return [
        f" {private}",
        f"\n{private}",
        f"\t{private}",
        f"{private}\n",
        f" \t\n{private} ",
        f"{data}/../{data.name}/{private.name}",
        f"{data.parent}//{data.name}/./{private.name}",
        f"{alias}/{private.name}",
        os.path.relpath(private),
        str(data / "secret.key"),
        f"{private}-wal",
    ]


def test_create_refuses_every_spelling_of_the_data_dir(
    signed: httpx.Client, base_path: str, runtime: Runtime, tmp_path: Path
) -> None:
    for i, spelling in enumerate(_spellings(runtime, tmp_path)):
        _assert_refused(
            signed.post(f"{base_path}/datasources", json=_sqlite_body(spelling, f"d{i}"))
        )
    assert signed.get(f"{base_path}/datasources").json()["total"] == 0


def test_update_refuses_every_spelling_of_the_data_dir(
    signed: httpx.Client, base_path: str, runtime: Runtime, tmp_path: Path
) -> None:
    good = signed.post(
        f"{base_path}/datasources", json=_sqlite_body(str(tmp_path / "mine.db"), "mine")
    )
    assert good.status_code == 201, good.text
    url = f"{base_path}/datasources/{good.json()['datasource_id']}"
    for spelling in _spellings(runtime, tmp_path):
        _assert_refused(signed.put(url, json=_sqlite_body(spelling, "mine")))
    assert signed.get(url).json()["content"]["database_name"] == str(tmp_path / "mine.db")


@pytest.mark.parametrize(
    "path",
    [
        "/" + "a" * 5000,
        "/tmp/" + "/".join(["d" * 200] * 25) + "/x.db",
        "/tmp/nul\x00.db",
        "/etc/hostname",
        "relative-outside.db",
        "",
        "   ",
    ],
    ids=["5000-chars", "4.5k-path", "nul", "outside-roots", "relative", "empty", "blank"],
)
def test_create_refuses_paths_that_cannot_or_may_not_be_opened(
    signed: httpx.Client, base_path: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A relative path is taken from the server's working directory: "/" here, outside the
    # test's roots (the temp dir), wherever the checkout running the tests lies (CI clones
    # into the temp dir).
    monkeypatch.chdir("/")
    reply = signed.post(f"{base_path}/datasources", json=_sqlite_body(path))
    if reply.status_code == 400 and reply.json()["error_code"] == "FDI.3002":
        return  # refused as text at the boundary (a NUL or blank string), also fine
    _assert_refused(reply)


def test_a_link_swapped_after_create_is_refused_where_the_file_is_opened(
    signed: httpx.Client, base_path: str, runtime: Runtime, tmp_path: Path
) -> None:
    real = tmp_path / "real.db"
    with sqlite3.connect(real) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount REAL)")
    link = tmp_path / "link.db"
    link.symlink_to(real)
    created = signed.post(f"{base_path}/datasources", json=_sqlite_body(str(link)))
    assert created.status_code == 201, created.text
    url = f"{base_path}/datasources/{created.json()['datasource_id']}"
    probes: list[Callable[[], httpx.Response]] = [
        lambda: signed.post(f"{url}/test-connect"),
        lambda: signed.get(f"{url}/tables"),
        lambda: signed.get(f"{url}/columns", params={"table_name": "orders"}),
    ]
    for probe in probes:
        assert probe().status_code == 200

    link.unlink()
    link.symlink_to(_private_file(runtime))  # swapped behind openfdi's back
    for probe in probes:
        reply = probe()
        assert reply.status_code == 400, reply.text
        assert reply.json()["error_code"] == "FDI.3016"
        assert "data directory" in reply.json()["error_msg"]


def test_the_allowed_roots_and_the_demo_directory(tmp_path: Path, backend: str) -> None:
    """OPENFDI_SQLITE_ROOTS defaults to data_dir/sqlite; the demo's folder is always allowed."""
    from openfdi.connectors.errors import InvalidContentError
    from openfdi.connectors.sqlite.paths import confined_path
    from openfdi.services.runtime import host_paths
    from openfdi.settings import Settings

    data = tmp_path / "data"
    host = host_paths(Settings(data_dir=data))
    for allowed in (data / "sqlite" / "a.db", data / "demo" / "shop.db"):
        assert confined_path(str(allowed), host) == allowed.resolve()
    for refused in (data / "openfdi.db", tmp_path / "a.db", data / "sqlite" / ".." / "x.db"):
        with pytest.raises(InvalidContentError):
            confined_path(str(refused), host)
    # A root that is the data dir itself does not open the data dir's own files.
    host = host_paths(Settings(data_dir=data, sqlite_roots=f"{data}{os.pathsep}{tmp_path}"))
    assert confined_path(str(tmp_path / "a.db"), host) == (tmp_path / "a.db").resolve()
    with pytest.raises(InvalidContentError):
        confined_path(str(data / "openfdi.db"), host)
