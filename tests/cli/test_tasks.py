"""`openfdi task …` against a live server: batches of any size, per-task outcomes as the batch
answers give them, FDI.3083, exit codes, and the other task verbs."""

from __future__ import annotations

import json
from typing import Any

from openfdi.client.fdi import BATCH_LIMIT
from openfdi.errors import TaskNotFound
from tests.cli.conftest import Cli, json_out
from tests.conftest import Credentials
from tests.factories import SQLITE_DETAIL, create_plan, create_sqlite_datasource, create_task

UNKNOWN = "0" * 32


def _started(cli: Cli, task_ids: list[str]) -> dict[str, int]:
    listed = json_out(cli("task", "list", "--limit", "0", "--json"))
    return {t["task_id"]: t["status"] for t in listed if t["task_id"] in task_ids}


def test_start_twelve_with_an_unknown_one_reports_eleven_successes_and_its_code(
    cli: Cli, sdk: Any, creds: Credentials
) -> None:
    source = create_sqlite_datasource(sdk, creds.instance_id)
    ids = [create_task(sdk, creds.instance_id, source=source) for _ in range(11)]
    # The unknown id sits in the first batch of 10, so both calls carry known tasks.
    given = [*ids[:4], UNKNOWN, *ids[4:]]
    assert len(given) == 12 > BATCH_LIMIT

    result = cli("task", "start", *given, "--json")

    assert result.exit_code == 1, result.output  # some failed
    answer = json_out(result)
    assert (answer["success_count"], answer["failure_count"]) == (11, 1)
    assert [r["task_id"] for r in answer["results"]] == given
    [failure] = [r for r in answer["results"] if not r["ok"]]
    assert failure == {
        "task_id": UNKNOWN,
        "task_name": None,
        "ok": False,
        "error_code": TaskNotFound.code,
        "error_msg": TaskNotFound.template,
    }
    assert set(_started(cli, ids).values()) == {1}

    text = cli("task", "stop", *given)
    assert text.exit_code == 1
    assert f"failed  {UNKNOWN}  {TaskNotFound.code} {TaskNotFound.template}" in text.stdout
    assert "stopped: 11, failed: 1" in text.stdout
    assert set(_started(cli, ids).values()) == {0}


def test_a_timing_task_without_a_plan_refuses_its_batch_with_fdi_3083(
    cli: Cli, sdk: Any, creds: Credentials
) -> None:
    source = create_sqlite_datasource(sdk, creds.instance_id)
    unplanned = create_task(sdk, creds.instance_id, "TIMING", source=source)
    realtime = create_task(sdk, creds.instance_id, source=source)

    result = cli("task", "start", unplanned, realtime, "--json")

    assert result.exit_code == 1
    answer = json_out(result)
    assert answer["success_count"] == 0
    codes = {r["task_id"]: (r["error_code"], r["error_msg"]) for r in answer["results"]}
    assert {c for c, _ in codes.values()} == {"FDI.3083"}
    assert unplanned in codes[realtime][1]  # the message names the task without a plan
    assert _started(cli, [unplanned, realtime]) == {unplanned: 0, realtime: 0}  # nothing changed

    create_plan(sdk, creds.instance_id, unplanned)
    assert cli("task", "start", unplanned, realtime).exit_code == 0


def test_start_by_filter(cli: Cli, sdk: Any, creds: Credentials) -> None:
    source = create_sqlite_datasource(sdk, creds.instance_id)
    tagged = [
        create_task(sdk, creds.instance_id, source=source, name=f"nightly-{i}") for i in (1, 2)
    ]
    other = create_task(sdk, creds.instance_id, source=source, name="other-task")

    result = cli("task", "start", "--name", "nightly")

    assert result.exit_code == 0, result.output
    assert "started: 2, failed: 0" in result.stdout
    assert _started(cli, [*tagged, other]) == {tagged[0]: 1, tagged[1]: 1, other: 0}
    assert cli("task", "start").exit_code == 2  # neither ids nor a filter


def test_create_show_update_delete(cli: Cli, sdk: Any, creds: Credentials) -> None:
    source = create_sqlite_datasource(sdk, creds.instance_id)
    created = cli(
        "task", "create", "--name", "cli-made", "--type", "REALTIME",
        "--source", source, "--target", source, "--detail", SQLITE_DETAIL,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    task_id = created.stdout.strip()

    shown = json_out(cli("task", "show", task_id, "--json"))
    assert shown["task"]["task_name"] == "cli-made"
    assert json.loads(shown["task_detail"]) == json.loads(SQLITE_DETAIL)

    assert cli("task", "update", task_id, "--description", "changed").exit_code == 0
    shown = json_out(cli("task", "show", task_id, "--json"))
    assert (shown["task"]["description"], shown["task"]["task_name"]) == ("changed", "cli-made")

    deleted = cli("task", "delete", task_id, UNKNOWN)
    assert deleted.exit_code == 1
    assert f"ok      {task_id}" in deleted.stdout
    assert f"failed  {UNKNOWN}  FDI." in deleted.stdout


def test_a_server_error_exits_3_with_the_fdi_code(cli: Cli) -> None:
    result = cli("task", "show", UNKNOWN)
    assert result.exit_code == 3
    assert result.stderr.startswith("error: FDI.")
    invalid = cli("task", "create", "--name", "x", "--source", "a", "--target", "b",
                  "--detail", "{}")  # fmt: skip
    assert invalid.exit_code == 3
    assert "FDI.30" in invalid.stderr
