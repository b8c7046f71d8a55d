"""The `openfdi` command line (Typer): serve, migrate, admin."""

from __future__ import annotations

from openfdi.cli.main import app


def main() -> None:
    app()


__all__ = ["app", "main"]
