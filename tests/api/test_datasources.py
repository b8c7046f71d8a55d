"""Data sources: create (201), show, list, update, delete (204); secrets encrypted and masked."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkroma.v2 import (
    Content,
    CreateDatasourceInfoRequest,
    DatasourceInfo,
    DeleteDatasourceInfoByIdRequest,
    ListDatasourcesRequest,
    ShowDataourceDetailRequest,
    UpdateDatasourceInfoRequest,
)

from openfdi.services import identity
from openfdi.services.datasources import decrypted_content
from openfdi.store.tables import DatasourceRow
from tests.factories import create_task, unique

MASK = "******"
SECRET = "Pa55-very-secret!"
both_backends = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


def error_of(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, reply.json()["error_code"]


def mysql_content(**changes: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": "3306",
        "database_name": "shop",
        "user_name": "reader",
        "password": SECRET,
        **changes,
    }


def mysql_info(name: str | None = None, **content: Any) -> DatasourceInfo:
    return DatasourceInfo(
        datasource_name=name or unique("mysql"),
        datasource_type="MYSQL",
        content=Content(**mysql_content(**content)),
        description="orders database",
    )


def ds_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "datasource_name": unique("ds"),
        "datasource_type": "MYSQL",
        "content": mysql_content(),
        **fields,
    }
    return {k: v for k, v in body.items() if v is not None}


def stored_row(runtime, datasource_id: str) -> DatasourceRow:
    with runtime.db.read() as session:
        row = session.get(DatasourceRow, datasource_id)
        assert row is not None
        return row


@both_backends
def test_create_answers_201_and_masks_and_encrypts(sdk, signed, runtime, creds, base_path):
    name = unique("orders")
    created = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(instance_id=creds.instance_id, body=mysql_info(name))
    )
    assert created.status_code == 201
    ds_id = created.datasource_id
    assert (created.datasource_name, created.datasource_type) == (name, "MYSQL")
    assert created.instance_id == creds.instance_id
    assert created.content.password == MASK
    assert (created.content.host, created.content.user_name) == ("127.0.0.1", "reader")
    assert isinstance(created.create_time, int)

    shown = sdk.show_dataource_detail(
        ShowDataourceDetailRequest(instance_id=creds.instance_id, datasource_id=ds_id)
    )
    assert shown.content.password == MASK
    listed = sdk.list_datasources(ListDatasourcesRequest(instance_id=creds.instance_id))
    assert [e.content.password for e in listed.entities] == [MASK]
    for path in (f"{base_path}/datasources/{ds_id}", f"{base_path}/datasources"):
        raw = signed.get(path)
        assert SECRET not in raw.text
        assert MASK in raw.text

    row = stored_row(runtime, ds_id)
    assert SECRET not in row.content
    assert decrypted_content(runtime, row)["password"] == SECRET


def test_other_secret_fields_are_masked_too(signed, runtime, base_path) -> None:
    content = {"address": "obs.example.com", "ak": "AKVISIBLE", "sk": "sk-hidden-value"}
    reply = signed.post(
        f"{base_path}/datasources", json=ds_body(datasource_type="OBS", content=content)
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["content"] == {"address": "obs.example.com", "ak": "AKVISIBLE", "sk": MASK}
    row = stored_row(runtime, reply.json()["datasource_id"])
    assert "sk-hidden-value" not in row.content
    assert decrypted_content(runtime, row)["sk"] == "sk-hidden-value"


def test_put_with_the_mask_keeps_the_stored_secret(sdk, runtime, creds) -> None:
    name = unique("keep")
    ds_id = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(instance_id=creds.instance_id, body=mysql_info(name))
    ).datasource_id

    updated = sdk.update_datasource_info(
        UpdateDatasourceInfoRequest(
            instance_id=creds.instance_id,
            datasource_id=ds_id,
            body=mysql_info(name, host="db.internal", password=MASK),
        )
    )
    assert updated.status_code == 200
    assert (updated.content.host, updated.content.password) == ("db.internal", MASK)
    content = decrypted_content(runtime, stored_row(runtime, ds_id))
    assert (content["host"], content["password"]) == ("db.internal", SECRET)

    sdk.update_datasource_info(
        UpdateDatasourceInfoRequest(
            instance_id=creds.instance_id,
            datasource_id=ds_id,
            body=mysql_info(name, password="brand-new-secret"),
        )
    )
    row = stored_row(runtime, ds_id)
    assert "brand-new-secret" not in row.content
    assert decrypted_content(runtime, row)["password"] == "brand-new-secret"


def test_mask_without_a_stored_secret_is_refused(signed, base_path) -> None:
    reply = signed.post(
        f"{base_path}/datasources", json=ds_body(content=mysql_content(password=MASK))
    )
    assert error_of(reply) == (400, "FDI.3033")
    assert "[content.password]" in reply.json()["error_msg"]
    no_secret = {k: v for k, v in mysql_content().items() if k != "password"}
    created = signed.post(f"{base_path}/datasources", json=ds_body(content=no_secret))
    assert created.status_code == 201, created.text
    ds_id = created.json()["datasource_id"]
    reply = signed.put(
        f"{base_path}/datasources/{ds_id}", json=ds_body(content=mysql_content(password=MASK))
    )
    assert error_of(reply) == (400, "FDI.3033")
    assert "[content.password]" in reply.json()["error_msg"]


def test_create_validation_names_the_field(signed, base_path) -> None:
    for field, body in (
        ("datasource_type", ds_body(datasource_type="NOSUCHDB")),
        ("datasource_type", ds_body(datasource_type="")),
        ("content.host", ds_body(content=mysql_content(host=None))),
        ("content.host", ds_body(content=mysql_content(host=""))),
        ("content.database_name", ds_body(datasource_type="SQLITE", content={})),
        ("content.url", ds_body(datasource_type="API", content={"api_method": "GET"})),
        ("datasource_name", ds_body(datasource_name="")),
        ("datasource_name", ds_body(datasource_name="n" * 256)),
        ("description", ds_body(description="d" * 1025)),
    ):
        reply = signed.post(f"{base_path}/datasources", json=body)
        assert error_of(reply) == (400, "FDI.3033"), (field, reply.text)
        assert f"[{field}]" in reply.json()["error_msg"], (field, reply.text)
    for field in ("datasource_name", "datasource_type"):
        body = {k: v for k, v in ds_body().items() if k != field}
        reply = signed.post(f"{base_path}/datasources", json=body)
        assert error_of(reply) == (400, "FDI.3002")
        assert field in reply.json()["error_msg"]
    reply = signed.get(f"{base_path}/datasources")
    assert reply.json()["total"] == 0


def test_type_is_case_insensitive_and_stored_upper(signed, base_path) -> None:
    reply = signed.post(f"{base_path}/datasources", json=ds_body(datasource_type="mysql"))
    assert reply.status_code == 201, reply.text
    assert reply.json()["datasource_type"] == "MYSQL"


def test_duplicate_name_is_refused(sdk, signed, runtime, creds, base_path) -> None:
    name = unique("dup")
    first = signed.post(f"{base_path}/datasources", json=ds_body(datasource_name=name))
    assert first.status_code == 201
    reply = signed.post(f"{base_path}/datasources", json=ds_body(datasource_name=name))
    assert error_of(reply) == (400, "FDI.3033")
    assert "[datasource_name]" in reply.json()["error_msg"]
    with pytest.raises(exceptions.ClientRequestException) as caught:
        sdk.create_datasource_info(
            CreateDatasourceInfoRequest(instance_id=creds.instance_id, body=mysql_info(name))
        )
    assert (caught.value.status_code, caught.value.error_code) == (400, "FDI.3033")
    other = signed.post(f"{base_path}/datasources", json=ds_body())
    rename = signed.put(
        f"{base_path}/datasources/{other.json()['datasource_id']}",
        json=ds_body(datasource_name=name),
    )
    assert error_of(rename) == (400, "FDI.3033")
    # Another instance may reuse the name.
    instance = identity.create_instance(runtime, creds.project_id, "other")
    sdk.create_datasource_info(
        CreateDatasourceInfoRequest(instance_id=instance, body=mysql_info(name))
    )


def test_list_filters_sorting_and_pagination(signed, base_path) -> None:
    app = str(uuid.uuid4())
    made = []
    for body in (
        ds_body(datasource_name="orders-main", app_id=app),
        ds_body(datasource_name="orders-replica"),
        ds_body(
            datasource_name="local-file",
            datasource_type="SQLITE",
            content={"database_name": "/tmp/a.db"},
        ),
        ds_body(
            datasource_name="web-api",
            datasource_type="API",
            content={"url": "http://x"},
            app_id=app,
        ),
    ):
        reply = signed.post(f"{base_path}/datasources", json=body)
        assert reply.status_code == 201, reply.text
        made.append(reply.json()["datasource_id"])
        time.sleep(0.003)
    orders_main, orders_replica, local_file, web_api = made

    def ids(**params: Any) -> list[str]:
        reply = signed.get(f"{base_path}/datasources", params=params)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["size"] == len(body["entities"])
        return [e["datasource_id"] for e in body["entities"]]

    assert ids() == made[::-1]  # newest first
    assert ids(sort_type="ASC") == made
    assert ids(sort_type="asc") == made
    assert set(ids(datasource_type="MYSQL")) == {orders_main, orders_replica}
    assert ids(datasource_type="sqlite") == [local_file]
    assert set(ids(name="orders")) == {orders_main, orders_replica}
    assert ids(name="-api") == [web_api]
    assert ids(name="%") == []
    assert set(ids(app_id=app)) == {orders_main, web_api}
    assert ids(datasource_type="MYSQL", app_id=app) == [orders_main]

    page = signed.get(f"{base_path}/datasources", params={"limit": 2, "offset": 1}).json()
    assert (page["total"], page["size"]) == (4, 2)
    assert [e["datasource_id"] for e in page["entities"]] == made[::-1][1:3]
    assert ids(offset=-3) == made[::-1]
    assert ids(limit=5000) == made[::-1]
    assert ids(offset=4) == []
    assert ids(offset=2**70) == []
    for params in ({"limit": "abc"}, {"offset": "x"}, {"limit": 0}):
        reply = signed.get(f"{base_path}/datasources", params=params)
        assert error_of(reply) == (400, "FDI.3002"), params


def test_delete_through_the_sdk(sdk, creds) -> None:
    ds_id = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(instance_id=creds.instance_id, body=mysql_info())
    ).datasource_id
    deleted = sdk.delete_datasource_info_by_id(
        DeleteDatasourceInfoByIdRequest(instance_id=creds.instance_id, datasource_id=ds_id)
    )
    assert deleted.status_code == 204
    with pytest.raises(exceptions.ClientRequestException) as caught:
        sdk.show_dataource_detail(
            ShowDataourceDetailRequest(instance_id=creds.instance_id, datasource_id=ds_id)
        )
    assert caught.value.status_code == 404
    listed = sdk.list_datasources(ListDatasourcesRequest(instance_id=creds.instance_id))
    assert listed.total == 0


def test_delete_while_a_task_uses_it_names_the_task(sdk, signed, creds, base_path) -> None:
    source = signed.post(f"{base_path}/datasources", json=ds_body()).json()["datasource_id"]
    target = signed.post(f"{base_path}/datasources", json=ds_body()).json()["datasource_id"]
    name = unique("user")
    task_id = create_task(sdk, creds.instance_id, source=source, target=target, name=name)
    for ds_id in (source, target):
        reply = signed.delete(f"{base_path}/datasources/{ds_id}")
        assert error_of(reply) == (400, "FDI.3002")
        assert name in reply.json()["error_msg"]
        assert signed.get(f"{base_path}/datasources/{ds_id}").status_code == 200
    assert signed.delete(f"{base_path}/tasks/{task_id}").status_code == 204
    reply = signed.delete(f"{base_path}/datasources/{source}")
    assert (reply.status_code, reply.content) == (204, b"")


def test_unknown_or_foreign_datasource_is_404(sdk, signed, runtime, creds, base_path) -> None:
    instance = identity.create_instance(runtime, creds.project_id, "other")
    foreign = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(instance_id=instance, body=mysql_info())
    ).datasource_id
    for ds_id in (uuid.uuid4().hex, foreign):
        path = f"{base_path}/datasources/{ds_id}"
        for reply in (signed.get(path), signed.put(path, json=ds_body()), signed.delete(path)):
            assert reply.status_code == 404, reply.text
            assert reply.json()["error_code"].startswith("FDI.")
            assert "datasource" in reply.json()["error_msg"].lower()
    reply = signed.get(f"{base_path}/datasources")
    assert reply.json()["total"] == 0


def test_sqlite_data_sources_cannot_reach_openfdis_own_files(signed, base_path, runtime) -> None:
    metadata_db = runtime.settings.data_dir.resolve() / "openfdi.db"
    body = {
        "datasource_name": "steal-metadata",
        "datasource_type": "SQLITE",
        "content": {"database_name": str(metadata_db)},
    }
    reply = signed.post(f"{base_path}/datasources", json=body)
    assert reply.status_code == 400
    assert reply.json()["error_code"] == "FDI.3033"
    assert "content.database_name" in reply.json()["error_msg"]
