"""File tests: the engine on, FILE data sources allowed under the test's own `files` folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from openfdi.services import identity
from openfdi.services.runtime import Runtime
from tests.conftest import make_settings
from tests.engine.conftest import pg_schema  # noqa: F401 - a fixture
from tests.files.servers import Server, ftp_server, sftp_server


@pytest.fixture
def engine_enabled() -> bool:
    return True


@pytest.fixture
def files_root(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    root.mkdir()
    return root


@pytest.fixture
def runtime(tmp_path: Path, files_root: Path, engine_enabled: bool) -> Iterator[Runtime]:
    settings = make_settings(tmp_path / "data", engine=engine_enabled)
    rt = Runtime.open(settings.model_copy(update={"file_roots": (files_root,)}))
    identity.bootstrap(rt)
    yield rt
    rt.close()


@pytest.fixture
def ftp(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "ftp").mkdir()
    with ftp_server(tmp_path / "ftp") as server:
        yield server


@pytest.fixture
def ftps(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "ftps").mkdir()
    with ftp_server(tmp_path / "ftps", tls=True) as server:
        yield server


@pytest.fixture
def sftp(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "sftp").mkdir()
    with sftp_server(tmp_path / "sftp") as server:
        yield server
