"""`openfdi serve --demo` as a user runs it: a real process, the README's SDK example verbatim,
admin commands against the running server, and desired state surviving a restart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from openfdi.client import signed_client
from tests.e2e.process import Served

ROOT = Path(__file__).resolve().parents[2]
DEMO_PROJECT = "0123456789abcdef0123456789abcdef"
DEMO_INSTANCE = "fedcba98-7654-4321-8fed-cba987654321"


def _readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- sdk-example -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "README has no SDK example block"
    return match.group(1)


def test_readme_sdk_example_works_as_written(served: Served) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _readme_example()],
        env={**os.environ, "OPENFDI_ENDPOINT": served.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "demo-orders-nightly TIMING 0 UNSTARTED" in result.stdout
    assert "started: 2 failed: 0" in result.stdout
    assert "400 FDI.3150 The task list is empty." in result.stdout


def test_admin_commands_work_while_the_server_runs(served: Served) -> None:
    project = served.admin("project", "create", "--name", "analytics")
    project_id = str(project["project_id"])
    instance_id = str(served.admin("instance", "create", "--project", project_id)["instance_id"])
    cred = served.admin("credential", "create", "--project", project_id)
    path = f"/v2/{project_id}/fdi/instances/{instance_id}/tasks"
    with signed_client(served.url, str(cred["ak"]), str(cred["sk"]), project_id) as client:
        assert client.get(path).json() == {"total": 0, "size": 0, "entities": []}
        # The new project's credential does not reach the demo project.
        other = client.get(f"/v2/{DEMO_PROJECT}/fdi/instances/{DEMO_INSTANCE}/tasks")
        assert (other.status_code, other.json()["error_code"]) == (400, "FDI.3039")

        listed = served.admin("credential", "list", "--project", project_id)
        assert [c["ak"] for c in listed["credentials"]] == [cred["ak"]]  # type: ignore[index]
        served.admin("credential", "revoke", "--project", project_id, "--ak", str(cred["ak"]))
        refused = client.get(path)
        assert (refused.status_code, refused.json()["error_code"]) == (401, "APIG.0301")

    served.admin(
        "user", "create", "--project", project_id, "--name", "alice", "--password", "alice-pw-1"
    )
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "alice", "password": "alice-pw-1"}},
            },
            "scope": {"project": {"id": project_id}},
        }
    }
    reply = httpx.post(f"{served.url}/v3/auth/tokens", json=body)
    assert reply.status_code == 201
    tasks = httpx.get(
        f"{served.url}{path}", headers={"X-Auth-Token": reply.headers["X-Subject-Token"]}
    )
    assert tasks.status_code == 200


def test_desired_state_survives_a_restart(served: Served) -> None:
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkroma.v2 import (
        BatchStartOrStopTasksRequest,
        ListTasksRequest,
        OperateTasksBean,
        RomaClient,
        TaskBean,
    )

    def client() -> RomaClient:
        creds = BasicCredentials(
            ak="OPENFDIDEMOAK0000001",
            sk="openfdiDemoSecretKey00000000000000000001",
            project_id=DEMO_PROJECT,
        )
        return RomaClient.new_builder().with_credentials(creds).with_endpoints([served.url]).build()

    listed = client().list_tasks(ListTasksRequest(instance_id=DEMO_INSTANCE))
    nightly = next(t.task_id for t in listed.entities if t.task_name == "demo-orders-nightly")
    client().batch_start_or_stop_tasks(
        BatchStartOrStopTasksRequest(
            instance_id=DEMO_INSTANCE,
            body=OperateTasksBean(action_id="start", list=[TaskBean(task_id=nightly)]),
        )
    )
    first_err = served.stop()
    assert "AK           OPENFDIDEMOAK0000001" in first_err

    served.start()
    after = client().list_tasks(ListTasksRequest(instance_id=DEMO_INSTANCE))
    states = {t.task_name: (t.status, t.execute_status) for t in after.entities}
    assert states["demo-orders-nightly"] == (1, "WAITING")
    assert states["demo-orders-live"] == (0, "UNSTARTED")
    assert "first start" not in served.stop()  # credentials are printed once only
