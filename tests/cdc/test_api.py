"""The multi-tasks endpoints through the SDK: what they answer, and the FDI codes of the
mistakes they refuse (bad mappings, tables without a key, wrong ends, a reset by date)."""

from __future__ import annotations

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkroma.v2 import (
    CountTasksRequest,
    CreateMultiTaskMappingsRequest,
    CreateMultiTasksRequest,
    DeleteDatasourceInfoByIdRequest,
    DeleteMultiTaskMappingRequest,
    DeleteTaskRequest,
    InstallMultiTasksRequest,
    ListTasksRequest,
    MultiTaskInitBody,
    MultiTaskMappingCreateBody,
    MultiTaskRequestBody,
    MultiTaskResetBody,
    MultiTaskUpdateBody,
    ResetMultiTaskOffsetRequest,
    ShowTaskRequest,
    UpdateMultiTasksRequest,
)

from tests.cdc.conftest import Ends, composite_task, pg_datasource, start_stop, wait_for
from tests.factories import create_sqlite_datasource, unique


def _refused(call, status: int, code: str, *words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientRequestException) as caught:
        call()
    assert (caught.value.status_code, caught.value.error_code) == (status, code), (
        caught.value.error_msg
    )
    for word in words:
        assert word in caught.value.error_msg


def _mapping(sdk, creds, task_id: str, source_table: str, target_table: str | None = None):  # type: ignore[no-untyped-def]
    return sdk.create_multi_task_mappings(
        CreateMultiTaskMappingsRequest(
            instance_id=creds.instance_id,
            task_id=task_id,
            body=MultiTaskMappingCreateBody(source_table=source_table, target_table=target_table),
        )
    )


def test_a_composite_task_is_made_listed_counted_and_refuses_bad_mappings(
    sdk, creds, ends: Ends
) -> None:
    ends.both(
        "CREATE TABLE t1 (id int PRIMARY KEY, v text); CREATE TABLE t2 (id int PRIMARY KEY);"
        "CREATE TABLE t3 (a int, b int, PRIMARY KEY (a, b)); CREATE TABLE nokey (x int);"
        "CREATE SCHEMA s; CREATE TABLE s.other (id int PRIMARY KEY)"
    )
    with ends.src_conn() as src:
        src.execute("CREATE TABLE only_source (id int PRIMARY KEY)")
        src.execute("CREATE TABLE wider (id int PRIMARY KEY, extra int)")
    with ends.dst_conn() as dst:
        dst.execute("CREATE TABLE wider (id int PRIMARY KEY)")
    task_id, element = composite_task(sdk, creds, ends, ("INSERT", "DELETE"))
    # Tables with a key that the target has too; the first 10 shown with the total.
    assert sorted(m.source_table for m in element.mappings) == [
        "public.t1", "public.t2", "public.t3", "public.wider", "s.other",
    ]  # fmt: skip
    assert element.mappings_total_count == 5
    assert {m.status for m in element.mappings} == {"AUTO"}
    assert element.source_datasource_type == "POSTGRESQL"

    listed = sdk.list_tasks(ListTasksRequest(instance_id=creds.instance_id, task_id=task_id))
    assert [(t.ext_type, t.task_type, t.status) for t in listed.entities] == [
        ("CDC", "REALTIME", 0)
    ]
    counts = sdk.count_tasks(CountTasksRequest(instance_id=creds.instance_id))
    assert counts.cdc_task_details.terminated_tasks_count >= 1
    shown = sdk.show_task(ShowTaskRequest(instance_id=creds.instance_id, task_id=task_id))
    assert '"operation_types": ["INSERT", "DELETE"]' in shown.task_detail

    wider = next(m for m in element.mappings if m.source_table == "public.wider")
    deleted = sdk.delete_multi_task_mapping(
        DeleteMultiTaskMappingRequest(
            instance_id=creds.instance_id, task_id=task_id, mapping_id=wider.id
        )
    )
    assert deleted.mapping_id == wider.id
    _refused(lambda: _mapping(sdk, creds, task_id, "nokey"), 400, "FDI.3037", "primary key")
    _refused(lambda: _mapping(sdk, creds, task_id, "missing"), 400, "FDI.3037", "does not exist")
    _refused(lambda: _mapping(sdk, creds, task_id, "only_source"), 400, "FDI.3037", "target")
    _refused(lambda: _mapping(sdk, creds, task_id, "wider"), 400, "FDI.3037", "extra")
    _refused(lambda: _mapping(sdk, creds, task_id, "t1"), 400, "FDI.3037", "mapped already")
    _refused(lambda: _mapping(sdk, creds, task_id, "t1; drop"), 400, "FDI.3037", "table name")
    _refused(
        lambda: sdk.delete_multi_task_mapping(
            DeleteMultiTaskMappingRequest(
                instance_id=creds.instance_id, task_id=task_id, mapping_id=wider.id
            )
        ),
        400,
        "FDI.3037",
    )
    with ends.src_conn() as src:
        src.execute("CREATE TABLE fresh (id int PRIMARY KEY, v text)")
    with ends.dst_conn() as dst:
        dst.execute("CREATE TABLE moved (id int PRIMARY KEY, v text, more int)")
    added = _mapping(sdk, creds, task_id, "public.fresh", "moved")  # another target name
    assert len(added.mapping_id) == 32

    def update(**body):  # type: ignore[no-untyped-def]
        return sdk.update_multi_tasks(
            UpdateMultiTasksRequest(
                instance_id=creds.instance_id, task_id=task_id, body=MultiTaskUpdateBody(**body)
            )
        )

    _refused(lambda: update(operation_types=["UPSERT"], repulling_snapshot=False), 400,
             "FDI.3033", "operation_types")  # fmt: skip
    _refused(lambda: update(operation_types=["INSERT"]), 400, "FDI.3033", "repulling_snapshot")
    assert update(operation_types=["UPDATE", "INSERT"], repulling_snapshot=True).task_id == task_id
    _refused(
        lambda: sdk.reset_multi_task_offset(
            ResetMultiTaskOffsetRequest(
                instance_id=creds.instance_id,
                task_id=task_id,
                body=MultiTaskResetBody(date_from=1_700_000_000_000),
            )
        ),
        400,
        "FDI.3033",
        "date_from",
        "repulling_snapshot",
    )


def test_init_and_create_refuse_wrong_ends_and_fields(sdk, creds, ends: Ends, tmp_path) -> None:
    pg = pg_datasource(sdk, creds.instance_id, ends.pg.content(ends.src))
    lite = create_sqlite_datasource(sdk, creds.instance_id, str(tmp_path / "x.db"))

    def init(**body):  # type: ignore[no-untyped-def]
        return sdk.install_multi_tasks(
            InstallMultiTasksRequest(instance_id=creds.instance_id, body=MultiTaskInitBody(**body))
        )

    def create(**body):  # type: ignore[no-untyped-def]
        return sdk.create_multi_tasks(
            CreateMultiTasksRequest(
                instance_id=creds.instance_id, body=MultiTaskRequestBody(**body)
            )
        )

    _refused(lambda: init(source_datasource_id=pg), 400, "FDI.3033", "target_datasource_id")
    _refused(lambda: init(source_datasource_id=pg, target_datasource_id=lite), 400, "FDI.3033",
             "POSTGRESQL or MYSQL target")  # fmt: skip
    _refused(lambda: init(source_datasource_id=lite, target_datasource_id=pg), 400, "FDI.3033",
             "source")  # fmt: skip
    _refused(lambda: init(source_datasource_id=pg, target_datasource_id="f" * 32), 404,
             "FDI.3033")  # fmt: skip
    _refused(lambda: init(source_datasource_id=pg, target_datasource_id=pg, task_id="Bad Id!"),
             400, "FDI.3033", "task_id")  # fmt: skip
    task_id = init(source_datasource_id=pg, target_datasource_id=pg).body[0].task_id
    name = unique("cdc")
    _refused(lambda: create(task_name=name, operation_types=["INSERT"]), 400, "FDI.3033",
             "init")  # fmt: skip
    _refused(lambda: create(task_name=name, task_id=task_id, operation_types=[]), 400,
             "FDI.3033", "operation_types")  # fmt: skip
    _refused(lambda: create(task_name=name, task_id=task_id, operation_types=["INSERT"],
                            task_type="TIMING"), 400, "FDI.3033", "REALTIME")  # fmt: skip
    _refused(lambda: create(task_name="x", task_id=task_id, operation_types=["INSERT"]), 400,
             "FDI.3033", "task_name")  # fmt: skip
    _refused(lambda: create(task_name=name, task_id="0" * 32, operation_types=["INSERT"]), 404,
             "FDI.3081")  # fmt: skip
    assert create(task_name=name, task_id=task_id, operation_types=["INSERT"]).task_id == task_id
    _refused(lambda: create(task_name=name, task_id=task_id, operation_types=["INSERT"]), 400,
             "FDI.3033", "created already")  # fmt: skip


def test_deleting_a_task_drops_its_slot_and_publication(sdk, creds, ends: Ends) -> None:
    ends.both("CREATE TABLE t (id int PRIMARY KEY)")
    task_id, _ = composite_task(sdk, creds, ends)
    start_stop(sdk, creds, task_id, "start")

    def objects() -> tuple[int, int]:
        with ends.src_conn() as src:
            slots = src.execute("SELECT count(*) FROM pg_replication_slots").fetchone()
            pubs = src.execute("SELECT count(*) FROM pg_publication").fetchone()
        assert slots is not None
        assert pubs is not None
        return int(slots[0]), int(pubs[0])

    wait_for(lambda: objects() == (1, 1))
    _refused(
        lambda: sdk.delete_task(DeleteTaskRequest(instance_id=creds.instance_id, task_id=task_id)),
        400,
        "FDI.3028",
    )
    start_stop(sdk, creds, task_id, "stop")
    wait_for(lambda: _deleted(sdk, creds, task_id), timeout=15)  # once its run has ended
    assert objects() == (0, 0)


def _deleted(sdk, creds, task_id: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        sdk.delete_task(DeleteTaskRequest(instance_id=creds.instance_id, task_id=task_id))
    except ClientRequestException as exc:
        if exc.error_code != "FDI.3028":  # only "still running" is worth waiting out
            raise
        return False
    return True


def test_an_abandoned_draft_is_discarded_by_delete_and_holds_no_data_source(
    sdk, creds, ends: Ends
) -> None:
    """init without create leaves a draft (docs/cdc.md): `delete_task` on its id discards it,
    and until then deleting one of its data sources is refused naming it (never a 500)."""
    ends.both("CREATE TABLE t (id int PRIMARY KEY)")
    source = pg_datasource(sdk, creds.instance_id, ends.pg.content(ends.src))
    target = pg_datasource(sdk, creds.instance_id, ends.pg.content(ends.dst))
    init = sdk.install_multi_tasks(
        InstallMultiTasksRequest(
            instance_id=creds.instance_id,
            body=MultiTaskInitBody(
                source_datasource_id=source, target_datasource_id=target, auto_mapping=True
            ),
        )
    )
    draft = init.body[0].task_id
    _refused(
        lambda: sdk.delete_datasource_info_by_id(
            DeleteDatasourceInfoByIdRequest(instance_id=creds.instance_id, datasource_id=source)
        ),
        400,
        "FDI.3002",
        draft,
    )
    sdk.delete_task(DeleteTaskRequest(instance_id=creds.instance_id, task_id=draft))
    _refused(  # gone: its mappings too
        lambda: _mapping(sdk, creds, draft, "t"), 404, "FDI.3081"
    )
    _refused(
        lambda: sdk.delete_task(DeleteTaskRequest(instance_id=creds.instance_id, task_id=draft)),
        404,
        "FDI.3081",
    )
    for datasource in (source, target):
        sdk.delete_datasource_info_by_id(
            DeleteDatasourceInfoByIdRequest(instance_id=creds.instance_id, datasource_id=datasource)
        )
