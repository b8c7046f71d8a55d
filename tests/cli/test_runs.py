"""Data sources, plans, runs and `task watch` from the command line, with the engine on: a copy
made entirely through `openfdi` verbs."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Cli, json_out

ROWS = 500


@pytest.fixture
def engine_enabled() -> bool:
    return True


def _source(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(i, f"c-{i}") for i in range(ROWS)])


def test_copy_a_table_and_watch_the_run_to_its_end(cli: Cli, tmp_path: Path) -> None:
    source_db, target_db = tmp_path / "shop.db", tmp_path / "warehouse.db"
    _source(source_db)
    sqlite3.connect(target_db).close()
    ids = {}
    for name, path in (("shop", source_db), ("warehouse", target_db)):
        made = cli(
            "datasource", "create", "--name", name, "--type", "sqlite",
            "--content", json.dumps({"database_name": str(path)}),
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        ids[name] = made.stdout.strip()
        assert cli("datasource", "test", ids[name]).stdout == "connection ok\n"

    assert cli("datasource", "tables", ids["shop"]).stdout.split() == ["orders"]
    columns = json_out(cli("datasource", "columns", ids["shop"], "--table", "orders", "--json"))
    assert [c["field_name"] for c in columns] == ["id", "customer"]
    listed = json_out(cli("datasource", "list", "--json"))
    assert {d["datasource_name"] for d in listed} >= {"shop", "warehouse"}

    detail = {
        "sourceSelectedDatasource": {"table": "orders"},
        "targetSelectedDatasource": {"table": "orders_copy"},
    }
    made = cli(
        "task", "create", "--name", "copy-orders", "--type", "TIMING",
        "--source", ids["shop"], "--target", ids["warehouse"], "--detail", json.dumps(detail),
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    task_id = made.stdout.strip()

    assert cli("task", "watch", task_id).exit_code == 1  # no run yet
    watched = cli("task", "watch", task_id, "--run", "--interval", "0.2", "--timeout", "120")

    assert watched.exit_code == 0, watched.output
    assert watched.stdout.splitlines()[-1] == "SUCCESS"
    assert f"rows {ROWS}" in watched.stdout
    with sqlite3.connect(target_db) as conn:
        assert conn.execute("SELECT count(*) FROM orders_copy").fetchone() == (ROWS,)
    logs = json_out(cli("task", "logs", task_id, "--json"))
    assert logs["entities"][0]["data_count"] == ROWS


def test_a_failed_run_is_watch_exit_code_1(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    made = cli(
        "datasource", "create", "--name", "empty", "--type", "SQLITE",
        "--content", json.dumps({"database_name": str(db)}),
    )  # fmt: skip
    ds = made.stdout.strip()
    detail = {
        "sourceSelectedDatasource": {"table": "missing"},
        "targetSelectedDatasource": {"table": "copy"},
    }
    task_id = cli(
        "task", "create", "--name", "fails", "--source", ds, "--target", ds,
        "--detail", json.dumps(detail),
    ).stdout.strip()  # fmt: skip

    watched = cli("task", "watch", task_id, "--run", "--interval", "0.2", "--json")

    assert watched.exit_code == 1, watched.output
    last = json.loads(watched.stdout.splitlines()[-1])
    assert last["execute_status"] == "ERROR"


def test_plan_set_and_show(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    sqlite3.connect(db).close()
    ds = cli(
        "datasource", "create", "--name", "p", "--type", "SQLITE",
        "--content", json.dumps({"database_name": str(db)}),
    ).stdout.strip()  # fmt: skip
    detail = json.dumps(
        {"sourceSelectedDatasource": {"table": "a"}, "targetSelectedDatasource": {"table": "b"}}
    )
    task_id = cli(
        "task", "create", "--name", "planned", "--source", ds, "--target", ds, "--detail", detail
    ).stdout.strip()  # fmt: skip

    assert cli("plan", "show", task_id).exit_code == 3  # none yet: the server's code
    made = cli("plan", "set", task_id, "--cron", "0 30 2 * * ?", "--json")
    assert made.exit_code == 0, made.output
    first = json_out(made)
    changed = json_out(cli("plan", "set", task_id, "--period", "HOUR", "--every", "2", "--json"))
    assert changed["dispatch_id"] == first["dispatch_id"]  # updated, not a second plan
    shown = json_out(cli("plan", "show", task_id, "--json"))
    assert (shown["period"], shown["dispatch_interval"]) == ("HOUR", 2)
    assert cli("task", "start", task_id).exit_code == 0  # a TIMING task with a plan starts
    assert cli("plan", "set", task_id).exit_code == 2  # neither --cron nor --period


def test_datasource_show_run_and_terminate(cli: Cli, tmp_path: Path) -> None:
    source_db = tmp_path / "shop.db"
    _source(source_db)
    ds = cli(
        "datasource", "create", "--name", "shop", "--type", "SQLITE",
        "--content", json.dumps({"database_name": str(source_db)}),
    ).stdout.strip()  # fmt: skip
    shown = cli("datasource", "show", ds)
    assert shown.exit_code == 0, shown.output
    assert "shop" in shown.stdout
    assert f"content.database_name {source_db}" in " ".join(shown.stdout.split())
    assert json_out(cli("datasource", "show", ds, "--json"))["datasource_id"] == ds
    assert cli("datasource", "show", "f" * 32).exit_code != 0  # unknown: the server's error

    detail = {
        "sourceSelectedDatasource": {"table": "orders", "incremental": {"column": "id"}},
        "targetSelectedDatasource": {"table": "orders_copy"},
    }
    live = cli(
        "task", "create", "--name", "follow", "--type", "REALTIME",
        "--source", ds, "--target", ds, "--detail", json.dumps(detail),
    ).stdout.strip()  # fmt: skip
    assert cli("task", "start", live).exit_code == 0  # a REALTIME run follows until stopped

    def latest() -> dict[str, Any]:
        entities = json_out(cli("task", "logs", live, "--json"))["entities"]
        return entities[0] if entities else {}

    _until(lambda: latest().get("execute_status") == "RUNNING")
    assert cli("task", "terminate", live).stdout == f"terminate requested for {live}\n"
    _until(lambda: latest().get("execute_status") == "CANCELLED")
    assert cli("task", "stop", live).exit_code == 0

    once = cli(
        "task", "create", "--name", "once", "--source", ds, "--target", ds,
        "--detail", json.dumps({"sourceSelectedDatasource": {"table": "orders"},
                                "targetSelectedDatasource": {"table": "orders_once"}}),
    ).stdout.strip()  # fmt: skip
    assert json_out(cli("task", "run", once, "--json")) == {"task_id": once, "run": "requested"}
    _until(lambda: json_out(cli("task", "logs", once, "--json"))["entities"][:1] != []
           and json_out(cli("task", "logs", once, "--json"))["entities"][0]["execute_status"]
           == "SUCCESS")  # fmt: skip
    with sqlite3.connect(source_db) as conn:
        assert conn.execute("SELECT count(*) FROM orders_once").fetchone() == (ROWS,)


def _until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
