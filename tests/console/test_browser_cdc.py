"""A composite (CDC) task in a real headless Chromium, in the style of test_browser.py (whose
browser, server and page fixtures these are): pick the tables, create, start from the list,
watch the tables arrive, add one while it runs, remove one."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from openfdi.services.runtime import Runtime
from tests.cdc.conftest import Ends, same_rows, wait_for
from tests.console.test_browser import browser, live, page, shot, sign_in  # noqa: F401
from tests.console.test_cdc_pages import _datasource, ends, pg, tables  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("engine_enabled", [True])
def test_create_start_add_and_remove_a_table(
    page: Page,  # noqa: F811
    demo_runtime: Runtime,
    tables: Ends,  # noqa: F811
) -> None:
    _datasource(demo_runtime, "shop-log", tables.pg, tables.src)
    _datasource(demo_runtime, "shop-copy", tables.pg, tables.dst)
    sign_in(page)
    page.click("text=Tasks")
    page.click("#new-composite")
    page.fill("input[name=task_name]", "shop-cdc")
    page.uncheck("#auto_mapping")
    page.select_option("#source_datasource_id", label="shop-log (POSTGRESQL)")
    # the source's tables arrive as checkboxes (htmx)
    t1 = page.locator("#tables-box input[name=tables][value$=t1]")
    expect(t1).to_have_count(1)
    t1.check()
    page.select_option("#target_datasource_id", label="shop-copy (POSTGRESQL)")
    page.uncheck("#operation-types input[value=DELETE]")
    shot(page, "composite-form")
    page.click("#save-composite")
    expect(page.locator("#notice")).to_have_text("Saved.")
    expect(page.locator("#task-kind")).to_have_text("composite (CDC)")
    expect(page.locator("#operation-types")).to_have_text("INSERT, UPDATE")
    expect(page.locator("#mappings tbody tr")).to_have_count(1)

    page.click("text=Tasks")
    page.fill("#filters input[name=name]", "shop-cdc")
    page.click("#apply-filters")
    row = page.locator("#task-table tbody tr").first
    expect(row.locator("td.kind")).to_have_text("composite (CDC)")
    row.locator("input.pick").check()
    page.click("#start-selected")
    expect(page.locator("#success-count")).to_have_text("1")
    wait_for(lambda: same_rows(tables, "t1"), timeout=60)

    page.click("#task-table a.task-name")
    # a bad table first: the refusal sits next to the field, the page stays usable
    page.fill("#add-mapping input[name=source_table]", "nokey")
    page.click("#add-mapping-button")
    expect(page.locator("#error-source_table")).to_contain_text("no primary key")
    page.fill("#add-mapping input[name=source_table]", "t2")
    page.click("#add-mapping-button")
    expect(page.locator("#notice")).to_have_text("Table mapping added.")
    expect(page.locator("#mappings tbody tr")).to_have_count(2)
    wait_for(lambda: same_rows(tables, "t2"), timeout=60)
    with tables.src_conn() as src:  # a streamed change: the lag is measured from its commit
        src.execute("UPDATE t2 SET v = 'changed' WHERE id = 1")
    wait_for(lambda: same_rows(tables, "t2"), timeout=60)
    # the progress box (polled) shows the running run and its lag
    expect(page.locator("#run-state")).to_have_text("running")
    expect(page.locator("#lag")).to_have_text(re.compile(r"^\d"))
    page.reload()
    expect(page.locator("#cdc-lag")).to_have_text(re.compile(r"^\d"))
    shot(page, "composite-task")
    page.locator("#mappings tr", has_text="public.t1").locator("button.remove-mapping").click()
    expect(page.locator("#notice")).to_have_text("Table mapping removed.")
    expect(page.locator("#mappings tbody tr")).to_have_count(1)
    expect(page.locator("#mappings td.source-table")).to_have_text("public.t2")
