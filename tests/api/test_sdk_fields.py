"""What the SDK's models expect and a real ROMA server fills (issue 10 item 13), driven through the
official SDK against a live openfdi: every documented `datasource_type`, integration apps
(`app_name`, `app_permission`), `detail_logs` in monitor-logs, `field_length` of every column
type, and test-connect of the settings the SDK sends."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkroma.v2 import (
    Content,
    CreateCommonTaskRequest,
    CreateCommonTaskRequestBody,
    CreateDatasourceInfoRequest,
    DatasourceInfo,
    ListDatasourceColumnsRequest,
    ListDatasourcesRequest,
    ListMonitorInfosRequest,
    ListTasksRequest,
    ShowDataourceDetailRequest,
    ShowTaskRequest,
    StartTestDatasourceRequest,
    TaskBasicRequestBody,
    UpdateDatasourceInfoRequest,
)
from huaweicloudsdkroma.v2.model import datasource_info

from openfdi.domain.datasource import KNOWN_TYPES, ROMA_TYPES
from tests.factories import unique

both_backends = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


def sdk_datasource_types() -> list[str]:
    """The `datasource_type` values the SDK's DatasourceInfo documents ("- DWS - MYSQL ...")."""
    doc = html.unescape(datasource_info.DatasourceInfo.__init__.__doc__ or "")
    line = next(ln for ln in doc.splitlines() if ":param datasource_type:" in ln)
    return re.findall(r"- ([A-Z0-9]+)", line)


def test_the_declared_roma_types_are_the_sdks() -> None:
    listed = sdk_datasource_types()
    assert len(listed) == 35
    assert set(listed) == ROMA_TYPES
    assert ROMA_TYPES <= KNOWN_TYPES


# Enough content for any type's required fields; no connector opens anything at create.
ANY_CONTENT = Content(
    host="127.0.0.1",
    port="1234",
    database_name="d",
    user_name="u",
    password="secret",
    url="http://127.0.0.1/x",
    address="127.0.0.1:1",
)


def test_every_sdk_datasource_type_is_accepted(sdk, creds) -> None:  # type: ignore[no-untyped-def]
    for kind in sorted(ROMA_TYPES):  # one server for all 35: SAP, FIKAFKA, ... TAURUS included
        created = sdk.create_datasource_info(
            CreateDatasourceInfoRequest(
                instance_id=creds.instance_id,
                body=DatasourceInfo(
                    datasource_name=unique("ds"), datasource_type=kind, content=ANY_CONTENT
                ),
            )
        )
        assert (created.status_code, created.datasource_type) == (201, kind)
        shown = sdk.show_dataource_detail(
            ShowDataourceDetailRequest(
                instance_id=creds.instance_id, datasource_id=created.datasource_id
            )
        )
        assert shown.datasource_type == kind
        updated = sdk.update_datasource_info(
            UpdateDatasourceInfoRequest(
                instance_id=creds.instance_id,
                datasource_id=created.datasource_id,
                body=DatasourceInfo(
                    datasource_name=unique("ds"),
                    datasource_type=kind.lower(),
                    content=ANY_CONTENT,
                ),
            )
        )
        assert updated.datasource_type == kind


def test_an_unknown_type_is_still_refused(sdk, creds) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exceptions.ClientRequestException) as caught:
        sdk.create_datasource_info(
            CreateDatasourceInfoRequest(
                instance_id=creds.instance_id,
                body=DatasourceInfo(
                    datasource_name=unique("ds"), datasource_type="NOSUCH", content=ANY_CONTENT
                ),
            )
        )
    assert (caught.value.status_code, caught.value.error_code) == (400, "FDI.3033")
    assert "[datasource_type]" in caught.value.error_msg


# --- test-connect of the settings the SDK sends -------------------------------------------------


@pytest.fixture
def mariadb_user() -> Any:
    """A MariaDB account with a password (the server checks it, unlike the trust-auth
    PostgreSQL of this machine) and its own database, dropped afterwards."""
    import pymysql

    from tests.services import require

    require("mysql")
    name = f"tc_{uuid.uuid4().hex[:10]}"
    password = "Right-pw-1"
    admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    try:
        admin.cursor().execute(f"CREATE DATABASE `{name}`")
        admin.cursor().execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")
        admin.cursor().execute(f"GRANT ALL ON `{name}`.* TO '{name}'@'%'")
        yield {"user_name": name, "database_name": name, "password": password}
    finally:
        admin.cursor().execute(f"DROP USER IF EXISTS '{name}'@'%'")
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def mysql_settings(account: dict[str, str], **changes: Any) -> DatasourceInfo:
    content = {"host": "127.0.0.1", "port": "3306", **account, **changes}
    return DatasourceInfo(
        datasource_name=unique("my"), datasource_type="MYSQL", content=Content(**content)
    )


def test_connect(sdk, creds, datasource_id: str, body: DatasourceInfo | None) -> bool:  # type: ignore[no-untyped-def]
    reply = sdk.start_test_datasource(
        StartTestDatasourceRequest(
            instance_id=creds.instance_id, datasource_id=datasource_id, body=body
        )
    )
    return bool(reply.result)


test_connect.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def connect_fails(sdk, creds, datasource_id: str, body: DatasourceInfo | None) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(exceptions.ClientRequestException) as caught:
        test_connect(sdk, creds, datasource_id, body)
    return caught.value.status_code, caught.value.error_code


@both_backends
def test_test_connect_tries_the_settings_sent_not_the_stored_ones(  # type: ignore[no-untyped-def]
    sdk, creds, mariadb_user
) -> None:
    good = mariadb_user
    stored_bad = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(
            instance_id=creds.instance_id, body=mysql_settings(good, password="Wrong-pw")
        )
    ).datasource_id
    assert connect_fails(sdk, creds, stored_bad, None) == (400, "FDI.3016")  # stored: wrong
    assert test_connect(sdk, creds, stored_bad, mysql_settings(good))  # sent: right
    # nothing was saved by it
    assert connect_fails(sdk, creds, stored_bad, None) == (400, "FDI.3016")

    stored_good = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(instance_id=creds.instance_id, body=mysql_settings(good))
    ).datasource_id
    assert test_connect(sdk, creds, stored_good, None)
    sent_bad = mysql_settings(good, password="Wrong-pw")
    assert connect_fails(sdk, creds, stored_good, sent_bad) == (400, "FDI.3016")
    other_db = mysql_settings(good, database_name="no_such_db_x")
    assert connect_fails(sdk, creds, stored_good, other_db) == (400, "FDI.3016")


@both_backends
def test_test_connect_with_a_masked_secret_uses_the_stored_one(sdk, creds, mariadb_user) -> None:  # type: ignore[no-untyped-def]
    good = mariadb_user
    stored_good = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(instance_id=creds.instance_id, body=mysql_settings(good))
    ).datasource_id
    assert test_connect(sdk, creds, stored_good, mysql_settings(good, password="******"))
    stored_bad = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(
            instance_id=creds.instance_id, body=mysql_settings(good, password="Wrong-pw")
        )
    ).datasource_id
    masked = mysql_settings(good, password="******")
    assert connect_fails(sdk, creds, stored_bad, masked) == (400, "FDI.3016")
    # "******" where nothing is stored is a client mistake, named
    no_secret = {k: v for k, v in good.items() if k != "password"}
    none_stored = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(instance_id=creds.instance_id, body=mysql_settings(no_secret))
    ).datasource_id
    with pytest.raises(exceptions.ClientRequestException) as caught:
        test_connect(sdk, creds, none_stored, masked)
    assert (caught.value.status_code, caught.value.error_code) == (400, "FDI.3033")
    assert "[content.password]" in caught.value.error_msg


def test_test_connect_checks_the_sent_settings_as_a_create_does(  # type: ignore[no-untyped-def]
    sdk, creds, runtime, tmp_path
) -> None:
    stored = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(
            instance_id=creds.instance_id,
            body=DatasourceInfo(
                datasource_name=unique("lite"),
                datasource_type="SQLITE",
                content=Content(database_name=str(tmp_path / "a.db")),
            ),
        )
    ).datasource_id
    own_db = DatasourceInfo(
        datasource_name="x",
        datasource_type="SQLITE",
        content=Content(database_name=" " + str(runtime.settings.data_dir / "openfdi.db")),
    )
    for body, field in (
        (own_db, "content.database_name"),
        (mysql_settings({"database_name": "d", "user_name": "u"}, port="70000"), "content.port"),
        (DatasourceInfo(datasource_name="x", datasource_type="NOSUCH"), "datasource_type"),
    ):
        with pytest.raises(exceptions.ClientRequestException) as caught:
            test_connect(sdk, creds, stored, body)
        assert (caught.value.status_code, caught.value.error_code) == (400, "FDI.3033")
        assert f"[{field}]" in caught.value.error_msg
    # and an unknown data source is still unknown, body or not
    with pytest.raises(exceptions.ClientRequestException) as caught:
        test_connect(sdk, creds, "0" * 32, mysql_settings({"database_name": "d", "user_name": "u"}))
    assert caught.value.status_code == 404


# --- field_length of every column type ------------------------------------------------------------

UNBOUNDED = str(2**31 - 1)
# column DDL -> (field_length, decimal_digits) expected; the fill rules are in docs/api.md.
PG_COLUMNS = {
    "c_smallint smallint": ("5", "0"),
    "c_int integer": ("10", "0"),
    "c_bigint bigint": ("19", "0"),
    "c_num numeric(12,3)": ("12", "3"),
    "c_num_free numeric": ("1000", None),
    "c_real real": ("8", None),
    "c_double double precision": ("17", None),
    "c_varchar varchar(20)": ("20", None),
    "c_char char(3)": ("3", None),
    "c_text text": (UNBOUNDED, None),
    "c_bool boolean": ("1", None),
    "c_date date": ("10", None),
    "c_time time": ("15", None),
    "c_ts timestamp": ("26", None),
    "c_tstz timestamptz": ("32", None),
    "c_bytea bytea": (UNBOUNDED, None),
    "c_json jsonb": (UNBOUNDED, None),
    "c_uuid uuid": ("36", None),
    "c_interval interval": (UNBOUNDED, None),
}
MYSQL_COLUMNS = {
    "c_tinyint tinyint": ("5", "0"),
    "c_int int": ("10", "0"),
    "c_ubig bigint unsigned": ("20", "0"),
    "c_dec decimal(9,2)": ("9", "2"),
    "c_float float": ("8", None),
    "c_double double": ("17", None),
    "c_varchar varchar(40)": ("40", None),
    "c_enum enum('a','bb')": ("2", None),
    "c_tinytext tinytext": ("255", None),
    "c_text text": ("65535", None),
    "c_mediumtext mediumtext": ("16777215", None),
    "c_longtext longtext": ("4294967295", None),
    "c_blob blob": ("65535", None),
    "c_varbinary varbinary(16)": ("16", None),
    "c_json json": ("4294967295", None),
    "c_date date": ("10", None),
    "c_time time": ("17", None),  # -838:59:59.999999: a duration
    "c_datetime datetime": ("26", None),
    "c_timestamp timestamp null": ("32", None),
}
SQLITE_COLUMNS = {
    "c_integer INTEGER": ("19", "0"),
    "c_int INT": ("10", "0"),
    "c_dec DECIMAL(10)": ("10", "0"),
    "c_dec2 NUMERIC(8,2)": ("8", "2"),
    "c_real REAL": ("17", None),
    "c_varchar VARCHAR(12)": ("12", None),
    "c_text TEXT": (UNBOUNDED, None),
    "c_blob BLOB": (UNBOUNDED, None),
    "c_bool BOOLEAN": ("1", None),
    "c_date DATE": ("10", None),
    "c_ts TIMESTAMP": ("26", None),
}


@pytest.fixture
def column_tables(tmp_path) -> Any:  # type: ignore[no-untyped-def]
    """The same table `t` made with the columns above on PostgreSQL, MariaDB and SQLite; yields
    {type: (content, expected)}; everything dropped afterwards."""
    import sqlite3

    import psycopg
    import pymysql

    from tests.services import PG_ADMIN_URL, require

    require("postgres")
    require("mysql")
    name = f"cols_{uuid.uuid4().hex[:10]}"
    pg = psycopg.connect(PG_ADMIN_URL, autocommit=True)
    my = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    try:
        pg.execute(f'CREATE SCHEMA "{name}"')
        pg.execute(f'CREATE TABLE "{name}".t (id int PRIMARY KEY, {", ".join(PG_COLUMNS)})')
        my.cursor().execute(f"CREATE DATABASE `{name}`")
        my.cursor().execute(
            f"CREATE TABLE `{name}`.t (id int PRIMARY KEY, {', '.join(MYSQL_COLUMNS)})"
        )
        lite = tmp_path / "cols.db"
        with sqlite3.connect(lite) as conn:
            conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {', '.join(SQLITE_COLUMNS)})")
        server = {"host": "127.0.0.1", "user_name": "root"}
        yield {
            "POSTGRESQL": (
                {**server, "port": "5432", "database_name": "postgres", "schema": name},
                PG_COLUMNS,
            ),
            "MYSQL": ({**server, "port": "3306", "database_name": name}, MYSQL_COLUMNS),
            "SQLITE": ({"database_name": str(lite)}, SQLITE_COLUMNS),
        }
    finally:
        pg.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        my.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        pg.close()
        my.close()


def test_columns_fill_field_length_for_every_type(sdk, creds, column_tables) -> None:  # type: ignore[no-untyped-def]
    for kind, (content, expected) in column_tables.items():
        if kind == "POSTGRESQL":
            content = {**content, "user_name": "postgres"}
        ds = sdk.create_datasource_info(
            CreateDatasourceInfoRequest(
                instance_id=creds.instance_id,
                body=DatasourceInfo(
                    datasource_name=unique("cols"), datasource_type=kind, content=content
                ),
            )
        ).datasource_id
        reply = sdk.list_datasource_columns(
            ListDatasourceColumnsRequest(
                instance_id=creds.instance_id, datasource_id=ds, position="SOURCE", table_name="t"
            )
        )
        got = {c.field_name: (c.field_length, c.decimal_digits) for c in reply.columns}
        want = {ddl.split()[0]: fill for ddl, fill in expected.items()}
        assert got.pop("id")[0] in ("10", "19"), kind
        assert got == want, kind
        assert all(c.field_type for c in reply.columns)


# --- integration applications -----------------------------------------------------------------


def test_every_data_source_and_task_names_its_integration_application(sdk, creds) -> None:  # type: ignore[no-untyped-def]
    # openfdi keeps no application registry (docs/api.md, "Integration applications"): a data
    # source sent without app_id is in its instance's default application, named "default";
    # another app_id is echoed, named by itself; every permission is the caller's.
    app = str(uuid.uuid4())
    ids = {}
    for key, app_id in (("plain", None), ("in_app", app)):
        created = sdk.create_datasource_info(
            CreateDatasourceInfoRequest(
                instance_id=creds.instance_id,
                body=DatasourceInfo(
                    datasource_name=unique("ds"), datasource_type="MYSQL", app_id=app_id,
                    content=ANY_CONTENT,
                ),
            )
        )  # fmt: skip
        ids[key] = created.datasource_id
    shown = {
        key: sdk.show_dataource_detail(
            ShowDataourceDetailRequest(instance_id=creds.instance_id, datasource_id=ds)
        )
        for key, ds in ids.items()
    }
    default = shown["plain"].app_id
    assert uuid.UUID(default)
    assert default != app
    assert (shown["plain"].app_name, shown["in_app"].app_id, shown["in_app"].app_name) == (
        "default", app, app
    )  # fmt: skip
    for reply in shown.values():
        assert reply.app_permission == ["read", "access", "delete", "modify"]
    listed = sdk.list_datasources(
        ListDatasourcesRequest(instance_id=creds.instance_id, app_id=default, limit=999)
    )
    found = {d.datasource_id: d.app_name for d in listed.entities}
    assert found.get(ids["plain"]) == "default"
    assert ids["in_app"] not in found

    task = sdk.create_common_task(
        CreateCommonTaskRequest(
            instance_id=creds.instance_id,
            body=CreateCommonTaskRequestBody(
                task=TaskBasicRequestBody(
                    task_name=unique("task"), task_type="TIMING",
                    source_datasource_id=ids["plain"], target_datasource_id=ids["in_app"],
                ),
                task_detail='{"sourceSelectedDatasource": {"table": "a"}, '
                '"targetSelectedDatasource": {"table": "b"}}',
            ),
        )
    ).task  # fmt: skip
    want = (default, "default", app, app)
    assert (
        task.source_app_id,
        task.source_app_name,
        task.target_app_id,
        task.target_app_name,
    ) == want
    shown_task = sdk.show_task(
        ShowTaskRequest(instance_id=creds.instance_id, task_id=task.task_id)
    ).task
    assert (
        shown_task.source_app_id, shown_task.source_app_name,
        shown_task.target_app_id, shown_task.target_app_name,
    ) == want  # fmt: skip
    brief = sdk.list_tasks(
        ListTasksRequest(instance_id=creds.instance_id, source_app_id=default, limit=999)
    ).entities
    [mine] = [t for t in brief if t.task_id == task.task_id]
    assert (mine.source_app_id, mine.target_app_id) == (default, app)
    monitors = sdk.list_monitor_infos(
        ListMonitorInfosRequest(instance_id=creds.instance_id, task_name=task.task_name)
    ).entities
    [info] = [m for m in monitors if m.task_id == task.task_id]
    assert (
        info.source_app_id,
        info.source_app_name,
        info.target_app_id,
        info.target_app_name,
    ) == want
