"""`signed_client`: an httpx client whose requests are signed like the Huawei Cloud SDK's."""

from __future__ import annotations

import httpx

from openfdi.wire.signed_auth import SignedAuth

__all__ = ["SignedAuth", "signed_client"]


def signed_client(
    base_url: str, ak: str, sk: str, project_id: str | None = None, timeout: float = 30.0
) -> httpx.Client:
    return httpx.Client(base_url=base_url, auth=SignedAuth(ak, sk, project_id), timeout=timeout)
