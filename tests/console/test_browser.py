"""The console in a real headless Chromium (Debian's `chromium`), driven by Playwright.

The browser is the system's: OPENFDI_CHROMIUM, else `chromium` on PATH (`make test` installs
Debian's package where it is missing). Without it the tests skip, and fail under CI=true.
With OPENFDI_CONSOLE_SCREENSHOTS=DIR the main pages are saved there as PNG (docs/console/).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from openfdi.services import identity
from openfdi.services.runtime import Runtime
from openfdi.store.tables import TaskRow
from tests.conftest import PASSWORD, USER, LiveServer
from tests.console.conftest import BASE, make_tasks

pytestmark = pytest.mark.slow
SHOTS = os.environ.get("OPENFDI_CONSOLE_SCREENSHOTS")


def chromium_path() -> str | None:
    return os.environ.get("OPENFDI_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    if path is None:
        message = "no chromium: install Debian's package or set OPENFDI_CHROMIUM"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path)
        yield b
        b.close()


@pytest.fixture
def live(demo_runtime: Runtime) -> Iterator[LiveServer]:
    with LiveServer(demo_runtime) as server:
        yield server


@pytest.fixture
def page(browser: Browser, live: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 900})
    p = context.new_page()
    errors: list[str] = []
    # Any script error or CSP violation on a page fails the test.
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on("console", lambda m: errors.append(m.text) if _unexpected(m.type, m.text) else None)
    p.on("dialog", lambda d: errors.append(f"dialog: {d.message}"))
    yield p
    context.close()
    assert errors == []


def _unexpected(kind: str, text: str) -> bool:
    # A 404 page that a test asks for is logged as a failed resource load; nothing else is ok.
    return kind == "error" and not text.startswith("Failed to load resource")


def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def sign_in(page: Page) -> None:
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("#sign-in")
    expect(page.locator("#stats")).to_be_visible()


def statuses(rt: Runtime, ids: list[str]) -> list[int]:
    with rt.db.read() as session:
        return [session.get_one(TaskRow, i).status for i in ids]


def test_sign_in_filter_and_start_two(page: Page, demo_runtime: Runtime) -> None:
    ids = make_tasks(demo_runtime, 11, "bulk", "TIMING", planned=True)
    sign_in(page)
    shot(page, "overview")
    page.click("text=Tasks")
    page.fill("#filters input[name=name]", "bulk")
    page.select_option("#filters select[name=limit]", "20")
    page.click("#apply-filters")
    expect(page.locator("#total")).to_have_text("11 tasks")
    expect(page.locator("#task-table tbody tr")).to_have_count(11)
    boxes = page.locator("input.pick")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("#start-selected")
    expect(page.locator("#success-count")).to_have_text("2")
    expect(page.locator("#failure-count")).to_have_text("0")
    assert sorted(statuses(demo_runtime, ids)) == [0] * 9 + [1] * 2
    # the filter survives the post
    expect(page.locator("#total")).to_have_text("11 tasks")
    shot(page, "tasks")


def test_twelve_selected_with_one_unknown(page: Page, demo_runtime: Runtime) -> None:
    ids = make_tasks(demo_runtime, 11, "bulk", "TIMING", planned=True)
    sign_in(page)
    page.goto(f"{BASE}/tasks?name=bulk&limit=20")
    page.check("#select-all")
    # A task deleted by someone else meanwhile: its checkbox is still on this page.
    page.evaluate(
        """() => { const box = document.querySelector('input.pick').cloneNode();
                   box.value = 'ffffffffffffffffffffffffffffffff'; box.checked = true;
                   document.querySelector('#batch-form').appendChild(box); }"""
    )
    page.click("#start-selected")
    expect(page.locator("#success-count")).to_have_text("11")
    expect(page.locator("#failure-count")).to_have_text("1")
    failed = page.locator("#batch-results tr.failed")
    expect(failed).to_contain_text("FDI.3081")
    expect(failed).to_contain_text("The task does not exist.")
    assert statuses(demo_runtime, ids) == [1] * 11


def test_a_timing_task_without_a_plan(page: Page, demo_runtime: Runtime) -> None:
    (unplanned,) = make_tasks(demo_runtime, 1, "noplan", "TIMING")
    sign_in(page)
    page.goto(f"{BASE}/tasks?name=noplan")
    page.locator("input.pick").first.check()
    page.click("#start-selected")
    expect(page.locator("#batch-results")).to_contain_text("FDI.3083")
    expect(page.locator("#batch-results")).to_contain_text(unplanned)
    expect(page.locator("#success-count")).to_have_text("0")
    expect(page.locator("#task-table td.state").first).to_have_text("stopped")
    assert statuses(demo_runtime, [unplanned]) == [0]


@pytest.mark.parametrize("engine_enabled", [True])
def test_datasource_task_and_a_run_to_the_end(
    page: Page, demo_runtime: Runtime, tmp_path: Path
) -> None:
    rows = 5000
    source = tmp_path / "people.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, score REAL)")
        conn.executemany(
            "INSERT INTO people VALUES (?, ?, ?)", [(i, f"p{i}", i / 3) for i in range(rows)]
        )
    sign_in(page)
    page.click("text=Data sources")
    page.click("#new-datasource")
    page.fill("input[name=datasource_name]", "people")
    page.select_option("select[name=datasource_type]", "SQLITE")
    page.fill("input[name=database_name]", str(source))
    page.click("#save-datasource")
    expect(page.locator("#notice")).to_have_text("Saved.")
    page.click("#test-datasource")
    expect(page.locator("#test-result")).to_have_text("Connection succeeded.")
    shot(page, "datasource")

    page.click("text=Tasks")
    page.click("#new-task")
    page.fill("input[name=task_name]", "copy-people")
    page.select_option("select[name=task_type]", "TIMING")
    page.select_option("#source_datasource_id", label="people (SQLITE)")
    expect(page.locator("#source-tables option[value=people]")).to_have_count(1)
    page.fill("#source_table", "people")
    page.dispatch_event("#source_table", "change")
    expect(page.locator("#columns-box input[value=name]")).to_have_count(1)
    page.select_option("#target_datasource_id", label="demo-warehouse (SQLITE)")
    page.fill("input[name=target_table]", "people_copy")
    page.select_option("select[name=write_mode]", "upsert")
    page.fill("input[name=key_columns]", "id")
    shot(page, "task-form")
    page.click("#save-task")
    expect(page.locator("#notice")).to_have_text("Saved.")
    page.click("#run-now")
    expect(page.locator("#notice")).to_have_text("A run was started.")
    # The progress box polls until the run ends with every row written.
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#rows-done")).to_have_text(str(rows))
    page.reload()
    expect(page.locator("#runs tbody tr")).to_have_count(1)
    expect(page.locator("#run-chart canvas").first).to_be_visible()
    # A second run knows the size from the first: a percentage and a run at 100 %.
    page.click("#run-now")
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#percent")).to_have_text("100%")
    shot(page, "task")
    page.locator("#runs tbody tr a").first.click()
    expect(page.locator("#run-rows")).to_have_text(str(rows))
    shot(page, "run")


def test_markup_is_text_and_other_projects_are_404(page: Page, demo_runtime: Runtime) -> None:
    sign_in(page)
    page.goto(f"{BASE}/datasources/new")
    evil = "<script>alert(1)</script>"
    page.fill("input[name=datasource_name]", evil)
    page.select_option("select[name=datasource_type]", "API")
    page.fill("input[name=url]", "http://127.0.0.1:9/")
    page.fill("input[name=description]", '<img src=x onerror="alert(2)">')
    page.click("#save-datasource")
    page.goto(f"{BASE}/datasources")
    expect(page.locator("#datasources")).to_contain_text(evil)
    assert page.locator("#datasources script").count() == 0
    assert page.locator("#datasources img").count() == 0

    other = identity.create_project(demo_runtime, "other")
    instance = identity.create_instance(demo_runtime, other)
    theirs = make_tasks(demo_runtime, 1, "theirs")[0]
    with demo_runtime.db.write() as session:  # move it into the other project
        row = session.get_one(TaskRow, theirs)
        row.project_id, row.instance_id = other, instance
    assert page.goto(f"/console/{instance}/").status == 404
    assert page.goto(f"{BASE}/tasks/{theirs}").status == 404
    expect(page.locator("#error-message")).to_contain_text("FDI.3081")


def test_a_post_without_the_csrf_token_is_refused(page: Page, demo_runtime: Runtime) -> None:
    (task_id,) = make_tasks(demo_runtime, 1, "guarded", "TIMING", planned=True)
    sign_in(page)
    # The session cookie goes along (same origin), the CSRF token does not.
    reply = page.request.post(f"{BASE}/tasks/batch", form={"action": "start", "task_id": task_id})
    assert reply.status == 403
    assert statuses(demo_runtime, [task_id]) == [0]
