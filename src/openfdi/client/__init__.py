"""A signed httpx client for openfdi (and ROMA): used by the CLI, the tests and users."""

from __future__ import annotations

from openfdi.client.signed import SignedAuth, signed_client

__all__ = ["SignedAuth", "signed_client"]
