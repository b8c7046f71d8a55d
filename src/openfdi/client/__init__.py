"""Clients for openfdi (and ROMA): a signed httpx client and the FDI API client of the CLI."""

from __future__ import annotations

from openfdi.client.fdi import (
    BatchItem,
    FdiApiError,
    FdiClient,
    FdiConnectionError,
    sign_in,
)
from openfdi.client.signed import SignedAuth, signed_client

__all__ = [
    "BatchItem",
    "FdiApiError",
    "FdiClient",
    "FdiConnectionError",
    "SignedAuth",
    "sign_in",
    "signed_client",
]
