"""A stateful fuzzer of the control plane: hypothesis drives sequences of calls (data sources and
tasks created, updated and deleted, plans, batch start/stop with good, unknown, empty and too many
ids, run and terminate) with hostile text mixed in, against a live server on each metadata
database, and checks after every call what must hold whatever came before:

- never a 5xx, and every 4xx is an FDI/APIG body;
- each batch answers as fdi-api.md H.1 says for the state the model predicts (404 FDI.3083 and no
  change when a listed TIMING task has no plan, per-entry FDI.3081/3149, counts that add up);
- every task's desired state and existence is what the calls so far make it (nothing changes
  behind a refused call), and a data source in use cannot be deleted.

Schemathesis (test_fuzz.py) explores each operation's inputs; this explores orders of operations.
Bounded and deterministic (`derandomize`); OPENFDI_FUZZ_SEED is not used here, raise
OPENFDI_STATEFUL_EXAMPLES locally to search longer.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from tests.factories import SQLITE_DETAIL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True),
]

EXAMPLES = int(os.environ.get("OPENFDI_STATEFUL_EXAMPLES", "40"))
ERROR_CODE = re.compile(r"^(FDI\.\d{4}|APIG\.\d{4}|ROMA\.\d{8})$")
PLAN = {"start_datetime": 1767225600000, "period": "HOUR", "dispatch_interval": 1}

# Text a client may send: plain names, and what has broken servers before (NUL, a lone surrogate,
# markup, quotes, very long, control characters). json.dumps(ensure_ascii=True) carries a lone
# surrogate as \ud800, exactly as a hostile client would.
hostile_text = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_-]{2,20}", fullmatch=True),
    st.sampled_from(["\x00", "a\ud800b", "<script>x</script>", "'; drop table tasks; --", "\t\n"]),
    st.text(min_size=0, max_size=40),
    st.just("n" * 5000),
)


def _unique(name: str) -> str:
    """The generated name made unique: names live on in the server across examples, and a
    replayed example must meet the same answers (hypothesis replays to shrink)."""
    return f"{name}{uuid.uuid4().hex[:6]}"


def _fdi_error(reply: httpx.Response) -> str:
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text[:500])
    body = reply.json()
    assert ERROR_CODE.match(body["error_code"]), body
    assert isinstance(body["error_msg"], str), body
    assert body["error_msg"], body
    return str(body["error_code"])


class ControlPlane(RuleBasedStateMachine):
    """The model: the tasks and data sources this sequence made, each task's desired state."""

    client: httpx.Client
    base: str
    db_dir: str

    datasources = Bundle("datasources")
    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.task_type: dict[str, str] = {}
        self.status: dict[str, int] = {}
        self.planned: set[str] = set()
        self.uses: dict[str, str] = {}  # task id -> its data source id
        self.live_datasources: set[str] = set()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if "content" in kwargs:
            kwargs["headers"] = {"Content-Type": "application/json;charset=utf-8"}
        reply = self.client.request(method, f"{self.base}{path}", **kwargs)
        assert reply.status_code < 500, (method, path, reply.status_code, reply.text[:500])
        return reply

    @rule(target=datasources, name=hostile_text)
    def create_datasource(self, name: str) -> Any:
        body = {
            "datasource_name": _unique(name),
            "datasource_type": "SQLITE",
            "content": {"database_name": f"{self.db_dir}/{uuid.uuid4().hex}.db"},
        }
        reply = self._call("POST", "/datasources", content=json.dumps(body))
        if reply.status_code >= 400:
            _fdi_error(reply)
            return multiple()
        ds = str(reply.json()["datasource_id"])
        self.live_datasources.add(ds)
        return ds

    @rule(
        target=tasks,
        ds=datasources,
        kind=st.sampled_from(["TIMING", "REALTIME"]),
        name=hostile_text,
    )
    def create_task(self, ds: str, kind: str, name: str) -> Any:
        body = {
            "task": {
                "task_name": _unique(name),
                "task_type": kind,
                "source_datasource_id": ds,
                "target_datasource_id": ds,
            },
            "task_detail": SQLITE_DETAIL,
        }
        reply = self._call("POST", "/tasks", content=json.dumps(body))
        if ds not in self.live_datasources or reply.status_code >= 400:
            _fdi_error(reply)
            return multiple()
        task = str(reply.json()["task"]["task_id"])
        self.task_type[task], self.status[task], self.uses[task] = kind, 0, ds
        return task

    @rule(task=tasks, description=hostile_text)
    def update_task(self, task: str, description: str) -> None:
        if task not in self.status:
            return
        shown = self._call("GET", f"/tasks/{task}").json()["task"]
        body = {
            "task": {
                "task_name": shown["task_name"],
                "task_type": self.task_type[task],
                "source_datasource_id": self.uses[task],
                "target_datasource_id": self.uses[task],
                "description": description,
            },
            "task_detail": SQLITE_DETAIL,
        }
        reply = self._call("PUT", f"/tasks/{task}", content=json.dumps(body))
        if reply.status_code >= 400:
            _fdi_error(reply)

    @rule(task=tasks)
    def plan(self, task: str) -> None:
        reply = self._call("POST", f"/tasks/{task}/dispatches", json=PLAN)
        if self.task_type.get(task) == "TIMING" and task not in self.planned:
            assert reply.status_code in (200, 201), reply.text
            self.planned.add(task)
        else:  # a second plan, a REALTIME task (FDI.3002), or a task that is gone
            _fdi_error(reply)

    @rule(
        action=st.sampled_from(["start", "stop"]),
        picks=st.lists(
            st.one_of(tasks, st.just(""), st.just("0" * 32), st.uuids().map(lambda u: u.hex)),
            min_size=1,
            max_size=12,
        ),
    )
    def batch(self, action: str, picks: list[str]) -> None:
        body = {"action_id": action, "list": [{"task_id": t} for t in picks]}
        reply = self._call("POST", "/batch-operation/tasks", content=json.dumps(body))
        if len(picks) > 10:
            assert _fdi_error(reply) == "FDI.3002"
            return
        known = [t for t in dict.fromkeys(picks) if t in self.status]
        unplanned = [t for t in known if self.task_type[t] == "TIMING" and t not in self.planned]
        if action == "start" and unplanned:
            assert reply.status_code == 404, reply.text
            assert _fdi_error(reply) == "FDI.3083"
            return  # and nothing changed: the invariant checks it
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        distinct = list(dict.fromkeys(picks))
        assert answer["success_count"] + answer["failure_count"] == len(distinct), answer
        assert answer["success_count"] == len(known), (answer, known)
        for failed in answer.get("failure") or []:
            expected = "FDI.3149" if not failed.get("task_id") else "FDI.3081"
            assert failed["error_code"] == expected, failed
        for task in known:
            self.status[task] = 1 if action == "start" else 0

    @rule(task=tasks)
    def run_then_terminate(self, task: str) -> None:
        ran = self._call("POST", f"/tasks/{task}/run")
        if task in self.status:
            # the engine is off in these tests: a run is refused as no start can be (FDI.3026)
            assert _fdi_error(ran) == "FDI.3026"
        else:
            assert _fdi_error(ran) == "FDI.3081"
        terminated = self._call("POST", f"/tasks/{task}/terminate")
        if terminated.status_code >= 400:
            _fdi_error(terminated)

    @rule(task=tasks)
    def delete_task(self, task: str) -> None:
        reply = self._call("DELETE", f"/tasks/{task}")
        if self.status.get(task) == 1:
            assert _fdi_error(reply) == "FDI.3028"  # started: stop it first
        elif task in self.status:
            assert reply.status_code == 204, reply.text
            for table in (self.status, self.task_type, self.uses):
                table.pop(task)
            self.planned.discard(task)
        else:
            _fdi_error(reply)

    @rule(ds=datasources)
    def delete_datasource(self, ds: str) -> None:
        reply = self._call("DELETE", f"/datasources/{ds}")
        if ds not in self.live_datasources:
            _fdi_error(reply)
        elif ds in self.uses.values():
            assert _fdi_error(reply) == "FDI.3002"  # in use: names the task, keeps it
        else:
            assert reply.status_code == 204, reply.text
            self.live_datasources.discard(ds)

    @invariant()
    def every_task_is_as_the_calls_left_it(self) -> None:
        for task, status in self.status.items():
            reply = self._call("GET", "/tasks", params={"task_id": task})
            (entity,) = reply.json()["entities"]
            assert entity["status"] == status, (task, entity)


def test_sequences_of_calls_keep_the_models_state(
    signed: httpx.Client, base_path: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ControlPlane.client = signed
    ControlPlane.base = base_path
    ControlPlane.db_dir = str(tmp_path_factory.mktemp("stateful dbs"))  # a space in the path
    run_state_machine_as_test(
        ControlPlane,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=30,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
