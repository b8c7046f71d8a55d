"""The Dockerfile, compose.yaml, .dockerignore and LICENSE say what a deployment needs.

No Docker daemon runs on the test machine, so no image is built here: these tests read the files
instead (compose.yaml as YAML, the Dockerfile instruction by instruction) and run the image's
health check command itself against a live server.
"""

from __future__ import annotations

import fnmatch
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
PORT = "8080"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        found.append((keyword.upper(), rest.strip()))
        pending = ""
    return found


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def _exec_form(arguments: str) -> list[str]:
    return list(yaml.safe_load(arguments))  # a JSON array, which YAML reads too


def test_the_license_file_is_the_one_pyproject_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_the_image_installs_the_package_and_runs_unprivileged() -> None:
    steps = _instructions()
    build = " ".join(args for keyword, args in steps if keyword == "RUN")
    assert "pip install ." in build
    copied = " ".join(args for keyword, args in steps if keyword == "COPY")
    for needed in ("pyproject.toml", "README.md", "src"):
        assert needed in copied
    final = _final_stage()
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the runtime stage must not run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    # Nothing runs as root after the switch.
    assert [k for k, _ in final].index("USER") > max(
        i for i, (k, _) in enumerate(final) if k == "RUN"
    )
    assert ("EXPOSE", PORT) in final
    command = _exec_form(dict(final)["CMD"])
    assert command[0] == "serve"
    assert command[command.index("--host") + 1] == "0.0.0.0"  # reachable from outside
    assert command[command.index("--port") + 1] == PORT
    entry = _exec_form(dict(final)["ENTRYPOINT"])
    assert entry == ["openfdi"]


def _health_command(arguments: str) -> list[str]:
    """The exec-form command of a HEALTHCHECK instruction (after its options)."""
    _options, _, command = arguments.partition("CMD ")
    return _exec_form(command)


def _probe(command: list[str], url: str) -> int:
    """Run a health check command (python ...) here, aimed at `url` instead of the image's port."""
    assert command[0] == "python"
    argv = [sys.executable, *[a.replace(f"http://127.0.0.1:{PORT}", url) for a in command[1:]]]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode


def test_the_health_checks_pass_against_a_live_server_and_fail_without_one(server) -> None:  # type: ignore[no-untyped-def]
    image_check = _health_command(dict(_final_stage())["HEALTHCHECK"])
    compose_check = _compose()["services"]["openfdi"]["healthcheck"]["test"]
    assert compose_check[0] == "CMD"
    for command in (image_check, compose_check[1:]):
        assert any(f"127.0.0.1:{PORT}/healthz" in part for part in command)
        assert _probe(command, server.url) == 0
        assert _probe(command, "http://127.0.0.1:9") != 0  # nothing listens on port 9


def test_compose_runs_openfdi_on_postgresql_metadata_with_workers() -> None:
    services = _compose()["services"]
    assert set(services) == {"metadata", "openfdi", "worker"}

    metadata = services["metadata"]
    assert metadata["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(metadata["healthcheck"]["test"])
    db = metadata["environment"]

    openfdi, worker = services["openfdi"], services["worker"]
    assert openfdi["build"] == "."
    assert worker["image"] == openfdi["image"]
    assert openfdi["command"][0] == "serve"
    assert openfdi["command"][openfdi["command"].index("--port") + 1] == PORT
    assert f"{PORT}:{PORT}" in openfdi["ports"]
    assert int(openfdi["environment"]["OPENFDI_WORKER_PROCESSES"]) > 0
    assert shlex.split(" ".join(worker["command"])) == ["worker"]
    assert openfdi["depends_on"]["metadata"]["condition"] == "service_healthy"
    assert worker["depends_on"]["openfdi"]["condition"] == "service_healthy"

    for service in (openfdi, worker):
        env = service["environment"]
        url = make_url(env["OPENFDI_DATABASE_URL"].replace("${OPENFDI_DB_PASSWORD:-openfdi}", "x"))
        assert url.drivername == "postgresql+psycopg"
        assert (url.host, url.port, url.database, url.username) == (
            "metadata", 5432, db["POSTGRES_DB"], db["POSTGRES_USER"])  # fmt: skip
        # Every process must decrypt what the others stored: one key, required.
        assert env["OPENFDI_SECRET_KEY"].startswith("${OPENFDI_SECRET_KEY:?")
    assert (
        openfdi["environment"]["OPENFDI_DATABASE_URL"]
        == worker["environment"]["OPENFDI_DATABASE_URL"]
    )
    assert "healthcheck" in worker


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore's rule: the last pattern matching the path (or a parent of it) decides."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern[1:] if negated else pattern
        glob = glob.rstrip("/")
        if any(
            fnmatch.fnmatch(p, glob) or fnmatch.fnmatch(p, glob.replace("**/", ""))
            for p in prefixes
        ):
            ignored = not negated
    return ignored


def test_the_build_context_holds_what_the_image_copies_and_no_local_state() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for needed in ("pyproject.toml", "README.md", "LICENSE", "src/openfdi/__init__.py"):
        assert not _ignored(needed, patterns), needed
    for local in (".venv/bin/python", ".openfdi/secret.key", ".git/config", "tests/conftest.py",
                  "src/openfdi/__pycache__/x.pyc"):  # fmt: skip
        assert _ignored(local, patterns), local
