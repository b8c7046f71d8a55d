"""`openfdi serve --demo` (what `make serve` runs) prints the console's address and the demo
credentials, and those credentials sign in to the console."""

from __future__ import annotations

import re

import httpx
import pytest

from openfdi.services import demo
from tests.e2e.process import Served


@pytest.mark.slow
def test_serve_prints_the_console_address_and_demo_credentials(served: Served) -> None:
    stderr = served.stop()
    line = f"openfdi: web console at {served.url}/console/ (user demo, password demo-password)"
    assert line in stderr
    served.start()  # a second start prints it too (the demo data exists by then)
    with httpx.Client(base_url=served.url, timeout=30) as client:
        page = client.get("/console/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        reply = client.post(
            "/console/login",
            data={"csrf": csrf.group(1), "username": demo.DEMO_USER,
                  "password": demo.DEMO_PASSWORD},
        )  # fmt: skip
        assert reply.status_code == 303
        overview = client.get(reply.headers["location"], follow_redirects=True).text
        assert "demo-orders-nightly" in overview
    assert line in served.stop()
