"""20 clients race batch start and stop on overlapping sets of tasks, on SQLite and PostgreSQL.

Each call picks a random subset (up to 10) of 12 REALTIME tasks and a random action. A few calls
add an unknown id or a duplicate (still 200, reported per entry), and a few are invalid on
purpose (empty list, 11 entries: 400, nothing changes). Afterwards:

- every 200 answer adds up (success_count + failure_count == distinct entries, the counts match
  the arrays, each known task succeeded exactly once, unknown ids fail with FDI.3081);
- nothing answered 5xx, and the only 4xx are the invalid calls' own codes;
- each task's final desired state (show and list agree) is the action of a successful call on it
  that may have committed last. Calls overlap, so "last" is decided from the client's clock: a
  call whose whole interval [sent, received] lies before another call's interval on the same task
  certainly committed before that one, so only calls received after the latest send on that task
  are candidates. If none of their actions matches the final state, the server lost an update.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from openfdi.client import signed_client
from tests.factories import create_sqlite_datasource, create_task

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)

CLIENTS = 20
TASKS = 12
DURATION_S = 3.0
# All 20 clients race for the first 60% of the time, then drop out one by one, so the calls that
# end the run overlap less and more tasks have a single possible last action (a sharper check).
FULL_RACE_SHARE = 0.6
MAX_CALLS_PER_CLIENT = 2_000  # a bound on the loop even if the server were very fast
INVALID_RATE = 0.05
ODD_ENTRY_RATE = 0.15


@dataclass
class Call:
    client: int
    action: str
    entries: list[str]  # as sent, in order (may hold duplicates or unknown ids)
    expect_status: int
    expect_code: str | None
    sent: float
    received: float = 0.0
    status: int = 0
    body: Any = None
    request_id: str | None = None
    error: str | None = None


@dataclass
class Outcome:
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _plan_call(rng: random.Random, ids: list[str]) -> tuple[str, list[str], int, str | None]:
    """(action, list entries, expected HTTP status, expected error code for a 4xx)."""
    action = rng.choice(("start", "stop"))
    roll = rng.random()
    if roll < INVALID_RATE / 2:
        return action, [], 400, "FDI.3150"
    if roll < INVALID_RATE:
        entries = [rng.choice(ids) for _ in range(11)]
        return action, entries, 400, "FDI.3002"
    entries = rng.sample(ids, rng.randint(1, 10))
    if rng.random() < ODD_ENTRY_RATE and len(entries) < 10:
        entries.append(rng.choice([uuid.uuid4().hex, rng.choice(entries)]))
        rng.shuffle(entries)
    return action, entries, 200, None


def _client_loop(
    index: int,
    client: httpx.Client,
    path: str,
    ids: list[str],
    stops: list[float],
    barrier: threading.Barrier,
    outcome: Outcome,
) -> None:
    rng = random.Random(1000 + index)
    mine: list[Call] = []
    barrier.wait(timeout=30)
    deadline = stops[index]
    for _ in range(MAX_CALLS_PER_CLIENT):
        if time.monotonic() >= deadline:
            break
        action, entries, expect_status, expect_code = _plan_call(rng, ids)
        body = {"action_id": action, "list": [{"task_id": t} for t in entries]}
        call = Call(index, action, entries, expect_status, expect_code, sent=time.monotonic())
        try:
            reply = client.post(path, json=body)
            call.received = time.monotonic()
            call.status = reply.status_code
            call.request_id = reply.headers.get("X-Request-Id")
            try:
                call.body = reply.json()
            except ValueError:
                call.body = reply.text
        except httpx.HTTPError as exc:  # loopback: no transport error is acceptable
            call.received = time.monotonic()
            call.error = repr(exc)
        mine.append(call)
    with outcome.lock:
        outcome.calls.extend(mine)


def _check_reply(call: Call, known: set[str]) -> list[str]:
    """Problems with one answer (empty when it is right)."""
    where = f"client {call.client} {call.action} {call.entries} (request {call.request_id})"
    if call.error is not None:
        return [f"{where}: transport error {call.error}"]
    if call.request_id is None:
        return [f"{where}: no X-Request-Id header"]
    if call.status != call.expect_status:
        return [f"{where}: HTTP {call.status}, expected {call.expect_status}: {call.body}"]
    body = call.body
    if call.status != 200:
        if not isinstance(body, dict) or body.get("error_code") != call.expect_code:
            return [f"{where}: expected error {call.expect_code}, got {body}"]
        return []
    problems = []
    distinct = list(dict.fromkeys(call.entries))
    success, failure = body["success"], body["failure"]
    if body["success_count"] + body["failure_count"] != len(distinct):
        problems.append(f"{where}: counts {body['success_count']}+{body['failure_count']}")
    if body["success_count"] != len(success) or body["failure_count"] != len(failure):
        problems.append(f"{where}: counts do not match the arrays: {body}")
    succeeded = Counter(entry["task_id"] for entry in success)
    failed = {entry["task_id"]: entry for entry in failure}
    for task_id in distinct:
        if task_id in known:
            if succeeded[task_id] != 1 or task_id in failed:
                problems.append(f"{where}: known task {task_id} not one success: {body}")
        elif failed.get(task_id, {}).get("error_code") != "FDI.3081" or succeeded[task_id]:
            problems.append(f"{where}: unknown id {task_id} not failed with FDI.3081: {body}")
    for entry in success:
        if entry.get("task_name") is None or "error_code" in entry or "error_msg" in entry:
            problems.append(f"{where}: malformed success entry {entry}")
    return problems


def _candidates(calls: list[Call]) -> list[Call]:
    """The successful calls on one task that may have committed last (see the module doc)."""
    latest_send = max(call.sent for call in calls)
    return [call for call in calls if call.received >= latest_send]


def test_racing_batch_start_stop_keeps_the_last_action(server, creds, base_path, sdk, token):
    source = create_sqlite_datasource(sdk, creds.instance_id)
    ids = [create_task(sdk, creds.instance_id, "REALTIME", source=source) for _ in range(TASKS)]
    known = set(ids)
    path = f"{base_path}/batch-operation/tasks"

    clients: list[httpx.Client] = []
    for index in range(CLIENTS):
        if index % 2 == 0:
            clients.append(signed_client(server.url, creds.ak, creds.sk, creds.project_id))
        else:
            headers = {"X-Auth-Token": token}
            clients.append(httpx.Client(base_url=server.url, headers=headers, timeout=30))
    outcome = Outcome()
    stops: list[float] = []

    def release() -> None:  # runs once, when every client is at the barrier
        start = time.monotonic()
        ramp = DURATION_S * (1 - FULL_RACE_SHARE) / (CLIENTS - 1)
        stops.extend(start + DURATION_S * FULL_RACE_SHARE + i * ramp for i in range(CLIENTS))

    barrier = threading.Barrier(CLIENTS, action=release)
    try:
        threads = [
            threading.Thread(
                target=_client_loop,
                args=(i, clients[i], path, ids, stops, barrier, outcome),
                daemon=True,
            )
            for i in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=DURATION_S + 60)
        assert not any(t.is_alive() for t in threads), "a client thread did not finish in time"
    finally:
        for client in clients:
            client.close()

    calls = outcome.calls
    problems = [p for call in calls for p in _check_reply(call, known)]
    assert not problems, f"{len(problems)} bad answers, first ones:\n" + "\n".join(problems[:10])
    served = [call for call in calls if call.status == 200]
    assert len(served) >= CLIENTS, f"too little load to mean anything: {len(served)} calls"
    assert {call.action for call in served} == {"start", "stop"}
    by_send = sorted(served, key=lambda c: c.sent)
    overlapping = sum(1 for a, b in itertools.pairwise(by_send) if b.sent < a.received)
    assert overlapping > len(served) // 2, "calls hardly overlapped: the race did not happen"

    with signed_client(server.url, creds.ak, creds.sk, creds.project_id) as client:
        listed = client.get(f"{base_path}/tasks", params={"limit": 100})
        assert listed.status_code == 200, listed.text
        assert listed.json()["total"] == TASKS
        in_list = {entity["task_id"]: entity["status"] for entity in listed.json()["entities"]}
        shown = {}
        for task_id in ids:
            reply = client.get(f"{base_path}/tasks/{task_id}")
            assert reply.status_code == 200, reply.text
            shown[task_id] = reply.json()["task"]["status"]

    wire = {"start": ("running", 1), "stop": ("stop", 0)}
    lost = []
    determinate = 0
    for task_id in ids:
        touching = [call for call in served if task_id in call.entries]
        allowed = {call.action for call in _candidates(touching)} if touching else {"stop"}
        determinate += len(allowed) == 1
        final = (shown[task_id], in_list[task_id])
        if final not in {wire[action] for action in allowed}:
            lost.append(
                f"{task_id}: show={shown[task_id]!r} list={in_list[task_id]!r}, "
                f"but the calls that could have committed last did {sorted(allowed)} "
                f"({len(touching)} successful calls touched it)"
            )
    assert not lost, "final states that no last call explains:\n" + "\n".join(lost)
    assert determinate > 0, "every task had both actions among its possible last calls"
    print(
        f"{len(calls)} calls ({len(served)} served, {overlapping} overlapping their predecessor); "
        f"{determinate}/{TASKS} tasks had a single possible last action"
    )
