"""A FILE data source reaches only folders under OPENFDI_FILE_ROOTS, never openfdi's data dir:
refused at create and update (400 FDI.3033 content.address) and again at every open, where a
link swapped in after create is caught (FDI.3016); a file that is a link out is never read."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from openfdi.connectors.errors import InvalidContentError
from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import HostPaths, ReadPlan
from openfdi.services.runtime import Runtime
from tests.factories import unique


def _body(address: str) -> dict[str, object]:
    return {"datasource_name": unique("f"), "datasource_type": "FILE",
            "content": {"address": address}}  # fmt: skip


def _refused(reply: httpx.Response) -> None:
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "FDI.3033"
    assert "content.address" in reply.json()["error_msg"]


def test_folders_outside_the_roots_are_refused_at_create_and_update(
    signed: httpx.Client, base_path: str, files_root: Path, runtime: Runtime, tmp_path: Path
) -> None:
    (files_root / "in").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    spellings = [
        str(outside),
        f"{files_root}/../outside",
        f"{files_root}/in/../../outside",
        f"  {outside}  ",
        f"{files_root}//..//outside",
        str(runtime.settings.data_dir),
        "/etc",
        "relative/folder",
        "",
        "   ",
    ]
    for spelling in spellings:
        _refused(signed.post(f"{base_path}/datasources", json=_body(spelling)))
    good = signed.post(f"{base_path}/datasources", json=_body(f" {files_root}/in "))
    assert good.status_code == 201, good.text
    url = f"{base_path}/datasources/{good.json()['datasource_id']}"
    for spelling in spellings[:6]:
        _refused(signed.put(url, json=_body(spelling)))
    assert signed.post(f"{url}/test-connect").status_code == 200


def test_a_link_swapped_after_create_is_caught_where_the_folder_is_opened(
    signed: httpx.Client, base_path: str, files_root: Path, tmp_path: Path
) -> None:
    inside, outside = files_root / "real", tmp_path / "secret"
    inside.mkdir()
    outside.mkdir()
    (outside / "orders_1.csv").write_text("id\n1\n")
    link = files_root / "link"
    link.symlink_to(inside)
    created = signed.post(f"{base_path}/datasources", json=_body(str(link)))
    assert created.status_code == 201, created.text
    url = f"{base_path}/datasources/{created.json()['datasource_id']}"
    assert signed.post(f"{url}/test-connect").status_code == 200

    link.unlink()
    link.symlink_to(outside)  # swapped behind openfdi's back
    for reply in (
        signed.post(f"{url}/test-connect"),
        signed.get(f"{url}/tables"),
        signed.get(f"{url}/columns", params={"table_name": "orders"}),
    ):
        assert reply.status_code == 400, reply.text
        assert reply.json()["error_code"] == "FDI.3016"
        assert "OPENFDI_FILE_ROOTS" in reply.json()["error_msg"]


def test_a_file_that_links_out_of_the_folder_is_never_read(tmp_path: Path) -> None:
    root, secret = tmp_path / "root", tmp_path / "secret.csv"
    root.mkdir()
    secret.write_text("id\n666\n")
    old = time.time() - 60
    (root / "orders_1.csv").write_text("id\n1\n")
    os.utime(root / "orders_1.csv", (old, old))
    (root / "orders_2.csv").symlink_to(secret)
    host = HostPaths(file_roots=(root,))
    with Registry.discover().bound(host).open("FILE", {"address": str(root)}) as source:
        source.configure({"min_age_seconds": 0})
        rows = [r for b in source.read(ReadPlan("orders")) for r in b.rows]
    assert rows == [(1,)]
    with pytest.raises(InvalidContentError):
        Registry.discover().bound(host).open("FILE", {"address": str(tmp_path)})
