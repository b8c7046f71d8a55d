"""`openfdi --version`, plain help, lazy imports, connection resolution, `login` and exit codes."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import typer

import openfdi
from openfdi.cli.main import app
from tests.cli.conftest import Cli, json_out
from tests.conftest import Credentials, LiveServer
from tests.e2e.process import OPENFDI


def test_version_prints_the_package_version() -> None:
    out = subprocess.run([OPENFDI, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"openfdi {openfdi.__version__}\n"


def test_version_and_client_verbs_do_not_load_the_server() -> None:
    """The command line imports the web app, SQLAlchemy and the engine only in the commands
    that need them, so `--version`, the client verbs and worker start-up stay quick."""
    code = (
        "import sys\n"
        "from openfdi.cli import app\n"
        "heavy = [m for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'openfdi.services',"
        " 'openfdi.engine', 'openfdi.api') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _commands(group: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in getattr(group, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def test_help_shows_flags_as_flags(bare_cli: Cli) -> None:
    """A flag takes no value, so its help must not show one (`--demo <bool>` before)."""
    commands = _commands(typer.main.get_command(app))
    assert ("serve",) in commands
    assert ("task", "start") in commands
    for path in commands:
        result = bare_cli(*path, "--help")
        assert result.exit_code == 0, path
        assert "<bool>" not in result.stdout, path
        assert "BOOLEAN" not in result.stdout, path
    serve = bare_cli("serve", "--help").stdout
    assert "  --demo  " in serve or "  --demo\n" in serve
    assert "OPENFDI_PORT" in serve


def test_no_configuration_is_a_usage_error(bare_cli: Cli) -> None:
    result = bare_cli("task", "list")
    assert result.exit_code == 2
    assert "--endpoint / OPENFDI_ENDPOINT" in result.stderr
    assert "openfdi login" in result.stderr


def test_an_unreachable_server_exits_4(bare_cli: Cli, creds: Credentials) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        result = bare_cli(
            "--endpoint", f"http://127.0.0.1:{port}", "--project-id", creds.project_id,
            "--instance-id", creds.instance_id, "--ak", creds.ak, "--sk", creds.sk,
            "task", "list",
        )  # fmt: skip
    assert result.exit_code == 4
    assert "cannot reach the server" in result.stderr


def test_login_saves_a_private_profile_the_other_verbs_use(
    bare_cli: Cli, server: LiveServer, creds: Credentials, isolated_env: dict[str, str]
) -> None:
    config = Path(isolated_env["OPENFDI_CONFIG_FILE"])
    wrong = bare_cli(
        "login", "--endpoint", server.url, "--project-id", creds.project_id,
        "--instance-id", creds.instance_id, "--ak", creds.ak, "--sk", "not-the-secret",
    )  # fmt: skip
    assert wrong.exit_code == 3  # checked against the server before anything is saved
    assert "APIG." in wrong.stderr
    assert not config.exists()

    saved = bare_cli(
        "login", "--endpoint", server.url, "--project-id", creds.project_id,
        "--instance-id", creds.instance_id, "--ak", creds.ak, "--sk", creds.sk,
    )  # fmt: skip
    assert saved.exit_code == 0, saved.output
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    profile = tomllib.loads(config.read_text())["profiles"]["default"]
    assert (profile["endpoint"], profile["ak"], profile["sk"]) == (server.url, creds.ak, creds.sk)

    listed = bare_cli("task", "list", "--json")  # nothing in flags or the environment
    assert listed.exit_code == 0, listed.output
    assert json_out(listed) == []


def test_login_with_a_password_saves_a_token_not_the_password(
    bare_cli: Cli, server: LiveServer, creds: Credentials, isolated_env: dict[str, str]
) -> None:
    result = bare_cli(
        "--profile", "mine", "login", "--endpoint", server.url,
        "--project-id", creds.project_id, "--instance-id", creds.instance_id,
        "--user", creds.user,
        input=f"{creds.password}\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = Path(isolated_env["OPENFDI_CONFIG_FILE"]).read_text()
    assert creds.password not in text
    assert tomllib.loads(text)["profiles"]["mine"]["token"]
    assert bare_cli("task", "list").exit_code == 2  # the default profile is still empty
    assert bare_cli("--profile", "mine", "task", "list").exit_code == 0


def test_flags_win_over_the_environment(cli: Cli, token: str) -> None:
    assert cli("task", "list").exit_code == 0
    refused = cli("--sk", "wrong-secret-key", "task", "list")
    assert refused.exit_code == 3
    assert "APIG." in refused.stderr
    # A token given as a flag is used instead of the environment's AK/SK.
    assert cli("--token", token, "task", "list").exit_code == 0
    assert cli("--token", "not-a-token", "task", "list").exit_code == 3
