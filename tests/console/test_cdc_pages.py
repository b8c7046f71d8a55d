"""The console's composite (CDC) pages over HTTP, without a browser: create (auto-mapping and
picked tables), the task page, edit, add and remove a table while the task runs, reset, and
what they refuse (next to the field, never a 500), on a PostgreSQL of the tests' own with
wal_level=logical (tests/cdc/pgserver.py)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from openfdi.services import datasources, identity
from openfdi.services.runtime import Runtime
from openfdi.store.tables import CdcMappingRow, CdcTaskRow, TaskRow
from openfdi.wire.datasources import DatasourceInfoRequest
from tests.cdc.conftest import Ends, ends, pg, rows, same_rows, wait_for
from tests.cdc.pgserver import LogicalPostgres
from tests.console.conftest import BASE, SCOPE, make_tasks

__all__ = ["ends", "pg"]  # fixtures: a PostgreSQL with wal_level=logical, two databases on it


@pytest.fixture
def tables(ends: Ends) -> Ends:
    """t1, t2 on both ends; `only_source` and `nokey` (no primary key) on the source only."""
    ends.both(
        "CREATE TABLE t1 (id int PRIMARY KEY, v text); CREATE TABLE t2 (id int PRIMARY KEY, v text)"
    )
    with ends.src_conn() as src:
        src.execute("CREATE TABLE only_source (id int PRIMARY KEY)")
        src.execute("CREATE TABLE nokey (x int)")
        src.execute("INSERT INTO t1 SELECT g, 'one ' || g FROM generate_series(1, 50) g")
        src.execute("INSERT INTO t2 SELECT g, 'two ' || g FROM generate_series(1, 70) g")
    return ends


def _datasource(rt: Runtime, name: str, pg: LogicalPostgres, database: str) -> str:
    req = DatasourceInfoRequest(
        datasource_name=name, datasource_type="POSTGRESQL", content=pg.content(database)
    )
    return datasources.create_datasource_info(rt, SCOPE, req).datasource_id


@pytest.fixture
def pair(demo_runtime: Runtime, tables: Ends) -> tuple[str, str]:
    """Data sources of the source and the target database: (source id, target id)."""
    tag = uuid.uuid4().hex[:6]
    return (
        _datasource(demo_runtime, f"cdc-src-{tag}", tables.pg, tables.src),
        _datasource(demo_runtime, f"cdc-dst-{tag}", tables.pg, tables.dst),
    )


def _create(
    client: httpx.Client, csrf: str, pair: tuple[str, str], **change: Any
) -> httpx.Response:
    data: dict[str, Any] = {
        "csrf": csrf,
        "task_name": "orders-cdc",
        "source_datasource_id": pair[0],
        "target_datasource_id": pair[1],
        "auto_mapping": "on",
        "operation_types": ["INSERT", "UPDATE", "DELETE"],
    }
    data.update(change)
    return client.post(
        f"{BASE}/composite/new",
        data={k: v for k, v in data.items() if v is not None},
        follow_redirects=False,
    )


def _created(client: httpx.Client, csrf: str, pair: tuple[str, str], **change: Any) -> str:
    reply = _create(client, csrf, pair, **change)
    assert reply.status_code == 303, reply.text
    found = re.search(r"/tasks/([0-9a-z_]+)\?done=saved$", reply.headers["location"])
    assert found, reply.headers["location"]
    return found.group(1)


def _field_error(html: str, field: str) -> str:
    found = re.search(rf'id="error-{field}">([^<]*)<', html)
    assert found, f"no error shown next to {field}"
    return found.group(1)


def _mappings(rt: Runtime, task_id: str) -> list[tuple[str, str]]:
    with rt.db.read() as session:
        found = session.execute(
            select(CdcMappingRow.source_table, CdcMappingRow.target_table)
            .where(CdcMappingRow.task_id == task_id)
            .order_by(CdcMappingRow.source_table)
        ).all()
    return [(s, t) for s, t in found]


def _drafts(rt: Runtime) -> int:
    with rt.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(CdcTaskRow)) or 0)


def _page_mappings(html: str) -> list[tuple[str, str]]:
    return re.findall(
        r'<td class="source-table">([^<]*)</td><td>→</td><td class="target-table">([^<]*)</td>',
        html,
    )


def test_create_with_auto_mapping_shows_kind_ends_and_mappings(
    client: httpx.Client, csrf: str, demo_runtime: Runtime, pair: tuple[str, str]
) -> None:
    form = client.get(f"{BASE}/composite/new")
    assert form.status_code == 200
    assert 'name="operation_types" value="DELETE" checked' in form.text
    # t1 ticked as well: auto-mapping maps it already, so it is not added twice
    task_id = _created(client, csrf, pair, tables=["t1"])
    # only same-named tables with a key on both ends
    assert _mappings(demo_runtime, task_id) == [
        ("public.t1", "public.t1"),
        ("public.t2", "public.t2"),
    ]
    page = client.get(f"{BASE}/tasks/{task_id}")
    assert page.status_code == 200
    assert 'id="task-kind">composite (CDC)' in page.text
    assert re.search(r'id="cdc-source">cdc-src-\w+ \(POSTGRESQL\)', page.text)
    assert re.search(r'id="cdc-target">cdc-dst-\w+ \(POSTGRESQL\)', page.text)
    assert 'id="operation-types">INSERT, UPDATE, DELETE<' in page.text
    assert _page_mappings(page.text) == [("public.t1", "public.t1"), ("public.t2", "public.t2")]
    assert "No run yet" in page.text
    listed = client.get(f"{BASE}/tasks", params={"name": "orders-cdc"})
    row = re.search(rf'<tr data-task-id="{task_id}">(.*?)</tr>', listed.text, re.S)
    assert row
    assert "composite (CDC)" in row.group(1)
    common = make_tasks(demo_runtime, 1, "plain")[0]
    listed = client.get(f"{BASE}/tasks", params={"name": "plain"})
    row = re.search(rf'<tr data-task-id="{common}">(.*?)</tr>', listed.text, re.S)
    assert row
    assert '<td class="kind">table</td>' in row.group(1)


def test_create_with_picked_tables_lists_the_source_tables(
    client: httpx.Client, csrf: str, demo_runtime: Runtime, pair: tuple[str, str]
) -> None:
    picker = client.get(f"{BASE}/composite/pick", params={"source_datasource_id": pair[0]})
    assert picker.status_code == 200
    for table in ("t1", "t2", "only_source", "nokey"):
        assert re.search(rf'name="tables" value="(public\.)?{table}"', picker.text), table
    task_id = _created(
        client, csrf, pair, auto_mapping=None, tables=["t2"], operation_types=["INSERT"]
    )
    assert _mappings(demo_runtime, task_id) == [("public.t2", "public.t2")]
    page = client.get(f"{BASE}/tasks/{task_id}")
    assert 'id="operation-types">INSERT<' in page.text


def test_bad_input_on_create_shows_next_to_the_field_and_reuses_the_draft(
    client: httpx.Client, csrf: str, demo_runtime: Runtime, pair: tuple[str, str]
) -> None:
    with demo_runtime.db.read() as session:
        sqlite_ds = session.scalar(
            select(TaskRow.source_datasource_id).where(TaskRow.name == "demo-orders-live")
        )
    # a source that has no log to follow
    reply = _create(client, csrf, (str(sqlite_ds), pair[1]))
    assert reply.status_code == 400
    assert "POSTGRESQL or MYSQL" in _field_error(reply.text, "source_datasource_id")
    reply = _create(client, csrf, ("", pair[1]))
    assert reply.status_code == 400
    assert _field_error(reply.text, "source_datasource_id") == "Required."
    # a data source id of no data source here (another project's, or made up)
    reply = _create(client, csrf, (pair[0], "ffffffffffffffffffffffffffffffff"))
    assert reply.status_code == 400
    assert "FDI.3033" in _field_error(reply.text, "form")
    assert _drafts(demo_runtime) == 0

    # a table without a primary key: init made a draft, create did not happen
    reply = _create(client, csrf, pair, auto_mapping=None, tables=["t1", "nokey"])
    assert reply.status_code == 400
    assert "no primary key" in _field_error(reply.text, "tables")
    draft = re.search(r'name="draft_id" value="([0-9a-z_]+)"', reply.text)
    assert draft
    assert _drafts(demo_runtime) == 1
    # no operation type, a bad name: each named; the draft is used again, not a new init
    for change, field, words in (
        ({"operation_types": None}, "operation_types", "INSERT, UPDATE, DELETE"),
        ({"task_name": "x"}, "task_name", "3 to 100 characters"),
        ({"task_name": "<script>alert(1)</script>"}, "task_name", "3 to 100"),
        ({"task_tag": "a b"}, "task_tag", "4 to 64"),
    ):
        reply = _create(
            client, csrf, pair, auto_mapping=None, tables=["t1"], draft_id=draft.group(1), **change
        )
        assert reply.status_code == 400, reply.text
        assert words in _field_error(reply.text, field)
        assert "<script>alert(1)</script>" not in reply.text
    assert _drafts(demo_runtime) == 1
    task_id = _created(client, csrf, pair, auto_mapping=None, tables=["t1"],
                       draft_id=draft.group(1))  # fmt: skip
    assert task_id == draft.group(1)
    assert _mappings(demo_runtime, task_id) == [("public.t1", "public.t1")]
    # a name taken by that task
    reply = _create(client, csrf, pair)
    assert reply.status_code == 400
    assert "exists already" in _field_error(reply.text, "task_name")
    # text no metadata database can store
    reply = _create(client, csrf, pair, description="nul\x00byte")
    assert reply.status_code == 400


def test_edit_changes_operation_types_and_asks_for_a_new_snapshot(
    client: httpx.Client, csrf: str, demo_runtime: Runtime, pair: tuple[str, str]
) -> None:
    task_id = _created(client, csrf, pair)
    form = client.get(f"{BASE}/tasks/{task_id}/edit")
    assert form.status_code == 200
    assert 'id="composite-edit"' in form.text
    assert 'name="source_table"' not in form.text  # not the form of a table-copy task
    url = f"{BASE}/tasks/{task_id}/edit"
    reply = client.post(url, data={"csrf": csrf, "operation_types": ["INSERT", "DELETE"],
                                   "repulling_snapshot": "on", "task_tag": "night_1"},
                        follow_redirects=False)  # fmt: skip
    assert reply.status_code == 303, reply.text
    page = client.get(f"{BASE}/tasks/{task_id}")
    assert 'id="operation-types">INSERT, DELETE<' in page.text
    assert 'id="repull-pending"' in page.text
    with demo_runtime.db.read() as session:
        assert session.get_one(TaskRow, task_id).task_tag == "night_1"
    for data, field in (
        ({"operation_types": []}, "operation_types"),
        ({"operation_types": ["TRUNCATE"]}, "operation_types"),
        ({"operation_types": ["INSERT"], "task_tag": "no spaces"}, "task_tag"),
    ):
        reply = client.post(url, data={"csrf": csrf, **data})
        assert reply.status_code == 400
        _field_error(reply.text, field)
    page = client.get(f"{BASE}/tasks/{task_id}")
    assert 'id="operation-types">INSERT, DELETE<' in page.text  # unchanged
    # without the CSRF token: refused, nothing changes
    reply = client.post(url, data={"operation_types": ["UPDATE"]})
    assert reply.status_code == 403
    assert 'id="operation-types">INSERT, DELETE<' in client.get(f"{BASE}/tasks/{task_id}").text


def test_mapping_and_reset_refusals_show_next_to_their_fields(
    client: httpx.Client, csrf: str, demo_runtime: Runtime, pair: tuple[str, str]
) -> None:
    task_id = _created(client, csrf, pair, auto_mapping=None, tables=["t1"])
    url = f"{BASE}/tasks/{task_id}/mappings"
    for data, field, words in (
        ({"source_table": "nokey"}, "source_table", "no primary key"),
        ({"source_table": "missing"}, "source_table", "FDI.3037"),
        ({"source_table": "t1"}, "source_table", "mapped already"),
        ({"source_table": "only_source"}, "target_table", "target"),
        ({"source_table": "t2", "target_table": "bad name!"}, "target_table", "not a table"),
        ({"source_table": ""}, "source_table", "required"),
        ({"source_table": "t1; DROP TABLE t2"}, "source_table", "not a table name"),
        ({"source_table": "<b>t</b>"}, "source_table", "not a table name"),
    ):
        reply = client.post(url, data={"csrf": csrf, **data})
        assert reply.status_code == 400, (data, reply.text)
        assert words in _field_error(reply.text, field), data
        assert 'id="cdc-source"' in reply.text  # the task page, with the values kept
        assert "<b>t</b>" not in reply.text
    assert _mappings(demo_runtime, task_id) == [("public.t1", "public.t1")]
    reply = client.post(f"{url}/ffffffffffffffffffffffffffffffff/delete", data={"csrf": csrf})
    assert reply.status_code == 400
    assert "no such mapping" in _field_error(reply.text, "mappings")
    reset = f"{BASE}/tasks/{task_id}/reset"
    reply = client.post(reset, data={"csrf": csrf, "date_from": ""})
    assert reply.status_code == 400
    assert "Required" in _field_error(reply.text, "date_from")
    reply = client.post(reset, data={"csrf": csrf, "date_from": "2026-12-01T10:00"})
    assert reply.status_code == 400
    assert "only moves forward" in _field_error(reply.text, "date_from")
    assert 'value="2026-12-01T10:00"' in reply.text
    # a common task has no mappings
    common = make_tasks(demo_runtime, 1, "plain")[0]
    reply = client.post(f"{BASE}/tasks/{common}/mappings", data={"csrf": csrf, "source_table": "t"})
    assert reply.status_code == 404


def test_another_projects_composite_task_is_not_there(
    client: httpx.Client, csrf: str, demo_runtime: Runtime, pair: tuple[str, str]
) -> None:
    task_id = _created(client, csrf, pair)
    other = identity.create_project(demo_runtime, "other")
    instance = identity.create_instance(demo_runtime, other)
    with demo_runtime.db.write() as session:  # move the task and its draft to the other project
        task = session.get_one(TaskRow, task_id)
        draft = session.get_one(CdcTaskRow, task_id)
        task.project_id = draft.project_id = other
        task.instance_id = draft.instance_id = instance
    before = _mappings(demo_runtime, task_id)
    for method, path, data in (
        ("GET", f"/tasks/{task_id}", None),
        ("GET", f"/tasks/{task_id}/edit", None),
        ("POST", f"/tasks/{task_id}/edit", {"operation_types": "INSERT"}),
        ("POST", f"/tasks/{task_id}/mappings", {"source_table": "only_source"}),
        ("POST", f"/tasks/{task_id}/mappings/{before[0][0]}/delete", {}),
        ("POST", f"/tasks/{task_id}/reset", {"date_from": "2026-12-01T10:00"}),
    ):
        reply = client.request(method, f"{BASE}{path}",
                               data=None if data is None else {"csrf": csrf, **data})  # fmt: skip
        assert reply.status_code == 404, (path, reply.status_code)
    assert task_id not in client.get(f"{BASE}/tasks").text
    assert client.get(f"/console/{instance}/tasks/{task_id}").status_code == 404
    assert _mappings(demo_runtime, task_id) == before


@pytest.mark.parametrize("engine_enabled", [True])
def test_add_and_remove_a_table_while_the_task_runs(
    client: httpx.Client, csrf: str, demo_runtime: Runtime, pair: tuple[str, str], tables: Ends
) -> None:
    task_id = _created(client, csrf, pair, auto_mapping=None, tables=["t1"])
    started = client.post(f"{BASE}/tasks/batch", data={"csrf": csrf, "action": "start",
                                                       "task_id": task_id})  # fmt: skip
    assert 'id="success-count">1<' in started.text
    wait_for(lambda: same_rows(tables, "t1"), timeout=60)
    # editing refuses while it runs, and says why
    reply = client.post(f"{BASE}/tasks/{task_id}/edit",
                        data={"csrf": csrf, "operation_types": ["INSERT"]})  # fmt: skip
    assert reply.status_code == 400
    assert "FDI.3023" in _field_error(reply.text, "form")

    reply = client.post(
        f"{BASE}/tasks/{task_id}/mappings",
        data={"csrf": csrf, "source_table": "t2"},
        follow_redirects=False,
    )
    assert reply.status_code == 303, reply.text
    page = client.get(f"{BASE}/tasks/{task_id}?done=mapped")
    assert "Table mapping added." in page.text
    assert _page_mappings(page.text) == [("public.t1", "public.t1"), ("public.t2", "public.t2")]
    wait_for(lambda: same_rows(tables, "t2"), timeout=60)  # copied, then streamed
    with tables.src_conn() as src:
        src.execute("UPDATE t2 SET v = 'changed' WHERE id <= 5; DELETE FROM t2 WHERE id > 60")
    wait_for(lambda: same_rows(tables, "t2"), timeout=60)

    (t1_mapping,) = [m for m in re.findall(r'data-mapping-id="([0-9a-f]+)"', page.text)][:1]
    reply = client.post(f"{BASE}/tasks/{task_id}/mappings/{t1_mapping}/delete",
                        data={"csrf": csrf}, follow_redirects=False)  # fmt: skip
    assert reply.status_code == 303
    assert _mappings(demo_runtime, task_id) == [("public.t2", "public.t2")]
    page = client.get(f"{BASE}/tasks/{task_id}")
    assert _page_mappings(page.text) == [("public.t2", "public.t2")]
    # t1 is no longer followed; t2 still is
    with tables.src_conn() as src:
        src.execute("INSERT INTO t1 VALUES (1000, 'late')")
        src.execute("INSERT INTO t2 VALUES (1000, 'late')")
    wait_for(lambda: same_rows(tables, "t2"), timeout=60)
    with tables.dst_conn() as dst:
        assert "(1000,late)" not in rows(dst, "t1")
    # the run's progress and its lag are on the page
    page = client.get(f"{BASE}/tasks/{task_id}")
    assert re.search(r'id="cdc-lag">\d', page.text), "no lag shown"
    stopped = client.post(f"{BASE}/tasks/batch", data={"csrf": csrf, "action": "stop",
                                                       "task_id": task_id})  # fmt: skip
    assert 'id="success-count">1<' in stopped.text


def test_a_refused_create_offers_to_discard_its_draft(
    client: httpx.Client, csrf: str, demo_runtime: Runtime, pair: tuple[str, str]
) -> None:
    reply = _create(client, csrf, pair, auto_mapping=None, tables=["t1", "nokey"])
    assert reply.status_code == 400
    draft = re.search(r'name="draft_id" value="([0-9a-z_]+)"', reply.text)
    assert draft
    assert f'action="{BASE}/tasks/{draft.group(1)}/delete"' in reply.text
    assert _drafts(demo_runtime) == 1
    refused = client.post(f"{BASE}/tasks/{draft.group(1)}/delete", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert _drafts(demo_runtime) == 1
    discarded = client.post(f"{BASE}/tasks/{draft.group(1)}/delete", data={"csrf": csrf})
    assert (discarded.status_code, discarded.headers["location"]) == (303, f"{BASE}/tasks")
    assert _drafts(demo_runtime) == 0
    assert _mappings(demo_runtime, draft.group(1)) == []
