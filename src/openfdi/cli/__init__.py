"""The `openfdi` command line (Typer): serve, migrate, admin."""

from __future__ import annotations

from openfdi import memory

memory.configure()  # before anything allocates: see openfdi.memory

from openfdi.cli.main import app  # noqa: E402


def main() -> None:
    app()


__all__ = ["app", "main"]
