"""The CLI's tests: `openfdi …` run in-process (typer's CliRunner) against a live server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from openfdi.cli.main import app
from tests.conftest import Credentials, LiveServer

Cli = Callable[..., Result]


@pytest.fixture
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """No OPENFDI_* of the caller's shell, and a profiles file of the test's own."""
    return {
        "OPENFDI_CONFIG_FILE": str(tmp_path / "config" / "openfdi.toml"),
        "OPENFDI_ENDPOINT": "",
        "OPENFDI_PROJECT_ID": "",
        "OPENFDI_INSTANCE_ID": "",
        "OPENFDI_AK": "",
        "OPENFDI_SK": "",
        "OPENFDI_TOKEN": "",
        "OPENFDI_PROFILE": "",
    }


@pytest.fixture
def bare_cli(isolated_env: dict[str, str]) -> Cli:
    """`openfdi ARGS` with no connection configured."""

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        merged = {**isolated_env, **(env or {})}
        # Empty values are unset: pydantic-settings would read "" as a value.
        unset = {k: None for k, v in merged.items() if v == ""}
        return CliRunner().invoke(
            app, list(args), env={**merged, **unset}, input=input, catch_exceptions=False
        )

    return run


@pytest.fixture
def cli_env(server: LiveServer, creds: Credentials) -> dict[str, str]:
    return {
        "OPENFDI_ENDPOINT": server.url,
        "OPENFDI_PROJECT_ID": creds.project_id,
        "OPENFDI_INSTANCE_ID": creds.instance_id,
        "OPENFDI_AK": creds.ak,
        "OPENFDI_SK": creds.sk,
    }


@pytest.fixture
def cli(bare_cli: Cli, cli_env: dict[str, str]) -> Cli:
    """`openfdi ARGS` against the live server, the connection given in the environment."""

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        return bare_cli(*args, env={**cli_env, **(env or {})}, input=input)

    return run


def json_out(result: Result) -> Any:
    return json.loads(result.stdout)
