"""The console's page handlers over HTTP, without a browser: sign-in, CSRF, scoping, batches,
forms, escaping, secrets."""

from __future__ import annotations

import json
import re

import httpx
from sqlalchemy import select

from openfdi.domain.scope import Scope
from openfdi.services import datasources, identity
from openfdi.services.runtime import Runtime
from openfdi.store.crypto import token_digest
from openfdi.store.tables import ConsoleSessionRow, RunRow, TaskRow
from openfdi.wire.datasources import DatasourceInfoRequest
from tests.console.conftest import BASE, SCOPE, csrf_of, make_tasks


def _task_id(rt: Runtime, name: str) -> str:
    with rt.db.read() as session:
        found = session.scalar(select(TaskRow.id).where(TaskRow.name == name))
    assert found is not None
    return found


def _status(rt: Runtime, task_id: str) -> int:
    with rt.db.read() as session:
        return session.get_one(TaskRow, task_id).status


def test_pages_need_a_session(client: httpx.Client) -> None:
    reply = client.get(f"{BASE}/tasks", follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/console/login"


def test_sign_in_sets_a_strict_httponly_cookie_stored_as_a_digest(
    client: httpx.Client, demo_runtime: Runtime
) -> None:
    page = client.get("/console/login")
    reply = client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "username": "tester", "password": "tester-password"},
        follow_redirects=False,
    )
    assert reply.status_code == 303
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie.replace("Strict", "strict")
    token = client.cookies["openfdi_console"]
    with demo_runtime.db.read() as session:
        digests = session.scalars(select(ConsoleSessionRow.digest)).all()
    assert digests == [token_digest(token)]  # the token itself is nowhere in the database
    assert "tester" in client.get(f"{BASE}/").text


def test_wrong_password_is_refused_with_the_api_error(client: httpx.Client) -> None:
    page = client.get("/console/login")
    reply = client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "username": "tester", "password": "wrong-password"},
    )
    assert reply.status_code == 401
    assert "APIG.0301" in reply.text
    assert "openfdi_console" not in client.cookies


def test_failed_sign_ins_are_throttled_like_the_api(
    client: httpx.Client, demo_runtime: Runtime
) -> None:
    limit = demo_runtime.settings.signin_max_failures
    for _ in range(limit):
        page = client.get("/console/login")
        client.post(
            "/console/login",
            data={"csrf": csrf_of(page.text), "username": "tester", "password": "nope-nope"},
        )
    page = client.get("/console/login")
    reply = client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "username": "tester", "password": "tester-password"},
    )
    assert reply.status_code == 429
    assert "APIG.0308" in reply.text


def test_sign_in_without_the_form_token_is_refused(client: httpx.Client) -> None:
    client.get("/console/login")
    reply = client.post(
        "/console/login", data={"username": "tester", "password": "tester-password"}
    )
    assert reply.status_code == 403


def test_sign_out_ends_the_session(client: httpx.Client, csrf: str) -> None:
    token = client.cookies["openfdi_console"]
    reply = client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert reply.status_code == 303
    client.cookies.set("openfdi_console", token)  # a copied cookie is no use any more
    assert client.get(f"{BASE}/", follow_redirects=False).status_code == 303


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    client: httpx.Client, csrf: str, demo_runtime: Runtime
) -> None:
    live = _task_id(demo_runtime, "demo-orders-live")
    for data in ({"action": "start", "task_id": live}, {"action": "start", "task_id": live,
                                                        "csrf": "0" * 64}):  # fmt: skip
        reply = client.post(f"{BASE}/tasks/batch", data=data)
        assert reply.status_code == 403
    assert _status(demo_runtime, live) == 0
    reply = client.post(f"{BASE}/tasks/batch", data={"action": "start", "task_id": live,
                                                     "csrf": csrf})  # fmt: skip
    assert reply.status_code == 200
    assert _status(demo_runtime, live) == 1


def test_every_answer_carries_a_strict_csp(client: httpx.Client, csrf: str) -> None:
    for path in ("/", "/tasks", "/datasources", "/tasks/new", "/datasources/new"):
        reply = client.get(f"{BASE}{path}")
        assert reply.status_code == 200, path
        csp = reply.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        # no inline script: every <script> has a src, or is a JSON data block
        for tag in re.findall(r"<script[^>]*>", reply.text):
            assert "src=" in tag or 'type="application/json"' in tag, tag


def test_filters_sorting_and_pages(client: httpx.Client, csrf: str, demo_runtime: Runtime) -> None:
    make_tasks(demo_runtime, 25)
    page = client.get(f"{BASE}/tasks", params={"name": "bulk", "limit": 10}).text
    assert "25 tasks" in page
    assert "page 1 of 3" in page
    assert page.count('class="task-name"') == 10
    last = client.get(f"{BASE}/tasks", params={"name": "bulk", "limit": 10, "page": 3}).text
    assert last.count('class="task-name"') == 5
    oldest = client.get(
        f"{BASE}/tasks", params={"name": "bulk", "sort_type": "ASC", "limit": 10}
    ).text
    names = re.findall(r'class="task-name">([^<]+)<', oldest)
    assert names[0] == "bulk-00"
    timing = client.get(f"{BASE}/tasks", params={"task_type": "TIMING"}).text
    assert re.findall(r'class="task-name">([^<]+)<', timing) == ["demo-orders-nightly"]


def test_twelve_selected_go_in_two_batches_with_each_outcome(
    client: httpx.Client, csrf: str, demo_runtime: Runtime
) -> None:
    ids = make_tasks(demo_runtime, 11)
    unknown = "f" * 32
    reply = client.post(
        f"{BASE}/tasks/batch",
        data={"csrf": csrf, "action": "start", "task_id": [*ids[:5], unknown, *ids[5:]]},
    )
    assert reply.status_code == 200
    assert 'id="success-count">11<' in reply.text
    assert 'id="failure-count">1<' in reply.text
    failed = re.search(rf'<tr class="failed" data-task-id="{unknown}">(.*?)</tr>', reply.text, re.S)
    assert failed
    assert "FDI.3081" in failed.group(1)
    assert all(_status(demo_runtime, i) == 1 for i in ids)


def test_a_timing_task_without_a_plan_is_fdi_3083_and_nothing_changes(
    client: httpx.Client, csrf: str, demo_runtime: Runtime
) -> None:
    (unplanned,) = make_tasks(demo_runtime, 1, "noplan", "TIMING")
    live = _task_id(demo_runtime, "demo-orders-live")
    reply = client.post(
        f"{BASE}/tasks/batch", data={"csrf": csrf, "action": "start", "task_id": [live, unplanned]}
    )
    assert "FDI.3083" in reply.text
    assert unplanned in reply.text
    assert 'id="success-count">0<' in reply.text
    assert _status(demo_runtime, unplanned) == 0
    assert _status(demo_runtime, live) == 0


def test_another_projects_pages_are_404(
    client: httpx.Client, csrf: str, demo_runtime: Runtime
) -> None:
    other_project = identity.create_project(demo_runtime, "other")
    other_instance = identity.create_instance(demo_runtime, other_project)
    other = Scope(other_project, other_instance)
    ds = datasources.create_datasource_info(
        demo_runtime,
        other,
        DatasourceInfoRequest(
            datasource_name="theirs", datasource_type="MYSQL",
            content={"host": "h", "port": 3306, "database_name": "d", "user_name": "u"},
        ),
    )  # fmt: skip
    assert client.get(f"/console/{other_instance}/tasks").status_code == 404
    assert client.get(f"{BASE}/datasources/{ds.datasource_id}").status_code == 404
    live = _task_id(demo_runtime, "demo-orders-live")
    assert client.get(f"/console/{other_instance}/tasks/{live}").status_code == 404
    assert client.get(f"{BASE}/tasks/{'0' * 32}").status_code == 404
    assert client.get(f"{BASE}/tasks/{live}/runs/{'0' * 32}").status_code == 404


def test_markup_in_names_and_descriptions_is_text(
    client: httpx.Client, csrf: str, demo_runtime: Runtime
) -> None:
    evil = "<script>alert(1)</script>"
    reply = client.post(
        f"{BASE}/datasources/new",
        data={"csrf": csrf, "datasource_name": evil, "datasource_type": "MYSQL",
              "description": evil, "host": "h", "port": "3306", "database_name": "d",
              "user_name": "u"},
        follow_redirects=True,
    )  # fmt: skip
    assert reply.status_code == 200
    listing = client.get(f"{BASE}/datasources").text
    assert evil not in listing
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    # A task name cannot hold markup (the API refuses it); the refusal echoes it as text.
    data = {"csrf": csrf, "task_name": evil, "source_table": "a", "target_table": "b"}
    form = client.post(f"{BASE}/tasks/new", data=data)
    assert form.status_code == 400
    assert evil not in form.text
    assert 'id="error-task_name"' in form.text


def test_task_form_errors_sit_next_to_their_field(
    client: httpx.Client, csrf: str, demo_runtime: Runtime
) -> None:
    shop = _task_id(demo_runtime, "demo-orders-live")  # any task: we only need the ids below
    with demo_runtime.db.read() as session:
        row = session.get_one(TaskRow, shop)
        src, dst = row.source_datasource_id, row.target_datasource_id
    base = {
        "csrf": csrf, "task_name": "copy-orders", "task_type": "TIMING",
        "source_datasource_id": src, "target_datasource_id": dst, "source_table": "orders",
        "target_table": "orders_copy", "write_mode": "insert", "plan_kind": "cron",
        "start_datetime": "2026-01-01T00:00", "cron": "not a cron", "cron_timezone": "UTC",
        "create_table": "on",
    }  # fmt: skip
    reply = client.post(f"{BASE}/tasks/new", data=base)
    assert reply.status_code == 400
    assert re.search(
        r'name="cron"[^>]*>\s*<span class="error field-error" id="error-cron"', reply.text
    )
    reply = client.post(f"{BASE}/tasks/new", data={**base, "cron": "0 0 2 * * ?",
                                                   "write_mode": "upsert"})  # fmt: skip
    assert reply.status_code == 400
    assert 'id="error-key_columns"' in reply.text
    reply = client.post(f"{BASE}/tasks/new", data={**base, "cron": "0 0 2 * * ?"},
                        follow_redirects=False)  # fmt: skip
    assert reply.status_code == 303
    page = client.get(reply.headers["location"]).text
    assert "At 02:00 AM" in page  # the cron in words
    assert page.count("<li>") >= 3  # next fire times


def test_secrets_are_masked_and_kept_when_saved_unchanged(
    client: httpx.Client, csrf: str, demo_runtime: Runtime
) -> None:
    fields = {"csrf": csrf, "datasource_name": "pg", "datasource_type": "POSTGRESQL",
              "host": "127.0.0.1", "port": "5432", "database_name": "d", "user_name": "u",
              "password": "s3cret-value"}  # fmt: skip
    reply = client.post(f"{BASE}/datasources/new", data=fields, follow_redirects=False)
    assert reply.status_code == 303
    page = client.get(reply.headers["location"]).text
    assert "s3cret-value" not in page
    assert 'value="******"' in page
    ds_id = reply.headers["location"].split("/")[-1].split("?")[0]
    saved = client.post(
        f"{BASE}/datasources/{ds_id}", data={**fields, "password": "******", "host": "localhost"}
    )
    assert saved.status_code == 303
    from openfdi.services.lookup import get_datasource_row

    with demo_runtime.db.read() as session:
        content = datasources.decrypted_content(
            demo_runtime, get_datasource_row(session, SCOPE, ds_id)
        )
    assert content["password"] == "s3cret-value"
    assert content["host"] == "localhost"


def test_deleting_a_data_source_in_use_names_the_task(
    client: httpx.Client, csrf: str, demo_runtime: Runtime
) -> None:
    live = _task_id(demo_runtime, "demo-orders-live")
    with demo_runtime.db.read() as session:
        ds_id = session.get_one(TaskRow, live).source_datasource_id
    reply = client.post(f"{BASE}/datasources/{ds_id}/delete", data={"csrf": csrf})
    assert reply.status_code == 400
    assert "demo-orders" in reply.text
    assert "FDI.3002" in reply.text
    tested = client.post(f"{BASE}/datasources/{ds_id}/test", data={"csrf": csrf})
    assert 'id="test-result" class="notice"' in tested.text


def test_overview_lists_failing_tasks_first_and_the_run_page(
    client: httpx.Client, csrf: str, demo_runtime: Runtime
) -> None:
    live = _task_id(demo_runtime, "demo-orders-live")
    with demo_runtime.db.write() as session:
        session.add(
            RunRow(
                id="e" * 32, task_id=live, trigger="manual", state="failed", epoch=0,
                created_at=1, started_at=1, ended_at=2001, data_count=3, dirty_data_count=1,
                data_size_bytes=10, read_ms=1, write_ms=1, remarks="<b>boom</b>",
            )
        )  # fmt: skip
    page = client.get(f"{BASE}/").text
    rows = re.findall(r'tasks/([0-9a-f]{32})">', page)
    assert rows[0] == live
    assert 'id="count-abnormal">1<' in page
    run = client.get(f"{BASE}/tasks/{live}/runs/{'e' * 32}").text
    assert "&lt;b&gt;boom&lt;/b&gt;" in run
    assert 'id="run-rows">3<' in run
    progress = client.get(f"{BASE}/tasks/{live}/progress").text
    assert 'id="run-state">failed<' in progress


def test_a_task_is_edited_through_its_form_and_a_refused_edit_changes_nothing(
    client: httpx.Client, csrf: str, demo_runtime: Runtime
) -> None:
    live = _task_id(demo_runtime, "demo-orders-live")
    with demo_runtime.db.read() as session:
        row = session.get_one(TaskRow, live)
        src, dst = row.source_datasource_id, row.target_datasource_id
    fields = {
        "csrf": csrf, "task_name": "edit-me", "task_type": "TIMING", "description": "before",
        "source_datasource_id": src, "target_datasource_id": dst, "source_table": "orders",
        "target_table": "orders_before", "write_mode": "insert", "plan_kind": "none",
        "create_table": "on",
    }  # fmt: skip
    made = client.post(f"{BASE}/tasks/new", data=fields, follow_redirects=False)
    assert made.status_code == 303, made.text
    task_id = made.headers["location"].split("/")[-1].split("?")[0]

    form = client.get(f"{BASE}/tasks/{task_id}/edit").text
    assert 'value="edit-me"' in form  # the form opens on the task as stored
    assert "orders_before" in form

    refused = client.post(
        f"{BASE}/tasks/{task_id}/edit",
        data={**fields, "description": "after", "write_mode": "upsert"},  # upsert needs keys
    )
    assert refused.status_code == 400
    assert 'id="error-key_columns"' in refused.text
    from openfdi.services import tasks

    assert tasks.show_task(demo_runtime, SCOPE, task_id).task.description == "before"

    saved = client.post(
        f"{BASE}/tasks/{task_id}/edit",
        data={**fields, "description": "after", "target_table": "orders_after"},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    shown = tasks.show_task(demo_runtime, SCOPE, task_id)
    assert shown.task.description == "after"
    assert "orders_after" in shown.task_detail
    assert "orders_before" not in shown.task_detail


def test_the_run_page_lists_the_refused_rows_with_the_targets_reason_as_text(
    client: httpx.Client, csrf: str, demo_runtime: Runtime
) -> None:
    from openfdi.store.tables import DirtyRowRow

    live = _task_id(demo_runtime, "demo-orders-live")
    run_id = "d" * 32
    with demo_runtime.db.write() as session:
        session.add(
            RunRow(
                id=run_id, task_id=live, trigger="manual", state="succeeded", epoch=0,
                created_at=1, started_at=1, ended_at=2001, data_count=5, dirty_data_count=2,
                data_size_bytes=10, read_ms=1, write_ms=1, remarks="",
            )
        )  # fmt: skip
        session.flush()
        session.add_all(
            [
                DirtyRowRow(run_id=run_id, row='[7, "<script>x</script>"]',
                            reason="duplicate key value violates unique constraint", created_at=2),
                DirtyRowRow(run_id=run_id, row='[8, "ok"]', created_at=2,
                            reason="value too long for type character varying(3) <i>"),
            ]
        )  # fmt: skip
    page = client.get(f"{BASE}/tasks/{live}/runs/{run_id}").text
    listed = page.split('id="dirty-rows"', 1)[1]
    assert "duplicate key value violates unique constraint" in listed
    assert "value too long for type character varying(3) &lt;i&gt;" in listed
    assert "&lt;script&gt;x&lt;/script&gt;" in listed
    assert "<script>x</script>" not in page


def test_progress_shows_percent_and_eta_and_the_chart_marks_failed_runs(
    client: httpx.Client, csrf: str, demo_runtime: Runtime
) -> None:
    nightly = _task_id(demo_runtime, "demo-orders-nightly")  # a full copy: its size is known
    now = demo_runtime.clock_ms()
    runs = [  # oldest first: a success of 1,000 rows, a failure, and one running for 10 s
        ("a" * 32, "succeeded", now - 60_000, now - 55_000, 1_000, None),
        ("b" * 32, "failed", now - 40_000, now - 39_000, 120, "boom"),
        ("c" * 32, "running", now - 10_000, None, 250, None),
    ]
    with demo_runtime.db.write() as session:
        for run_id, state, started, ended, rows, remarks in runs:
            session.add(
                RunRow(
                    id=run_id, task_id=nightly, trigger="manual", state=state, epoch=1,
                    created_at=started, started_at=started, ended_at=ended, data_count=rows,
                    dirty_data_count=0, data_size_bytes=rows, read_ms=1, write_ms=1,
                    remarks=remarks,
                )
            )  # fmt: skip

    progress = client.get(f"{BASE}/tasks/{nightly}/progress").text
    assert 'id="percent">25%<' in progress  # 250 of the last success's 1,000
    eta = re.search(r'id="eta">([^<]*)<', progress)
    assert eta is not None  # 750 rows left at 25 rows/s: about 30 s
    value, unit = eta.group(1).split()
    assert unit == "s"
    assert 29 <= float(value) <= 31, eta.group(1)

    page = client.get(f"{BASE}/tasks/{nightly}").text
    chart = json.loads(re.search(r'id="chart-data">([^<]*)<', page).group(1))  # type: ignore[union-attr]
    assert chart["rows"] == [1_000, 120, 250]
    assert chart["failed"] == [None, 120, None]  # only the failed run is marked
