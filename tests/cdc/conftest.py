"""Composite (CDC) tests: one PostgreSQL with wal_level=logical per module (pgserver.py), a
source and a target database per test, an openfdi server with its engine on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from huaweicloudsdkroma.v2 import (
    BatchStartOrStopTasksRequest,
    Content,
    CreateDatasourceInfoRequest,
    CreateMultiTasksRequest,
    DatasourceInfo,
    InstallMultiTasksRequest,
    MultiTaskInitBody,
    MultiTaskRequestBody,
    OperateTasksBean,
    TaskBean,
)

from tests.cdc.mariaserver import BinlogMariaDB
from tests.cdc.pgserver import LogicalPostgres
from tests.factories import unique


@pytest.fixture
def engine_enabled() -> bool:
    return True


@pytest.fixture(scope="module")
def pg() -> Iterator[LogicalPostgres]:
    server = LogicalPostgres()
    try:
        server.init()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def maria() -> Iterator[BinlogMariaDB]:
    """One MariaDB with a ROW binlog for the session (tests/cdc/mariaserver.py)."""
    server = BinlogMariaDB()
    try:
        server.init()
        yield server
    finally:
        server.stop()


@pytest.fixture
def mdb(maria: BinlogMariaDB) -> Iterator[str]:
    """A source database of the test's own on the session's MariaDB."""
    name = f"src_{uuid.uuid4().hex[:10]}"
    with maria.root() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    yield name
    with maria.root() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")


@dataclass
class Ends:
    pg: LogicalPostgres
    src: str
    dst: str

    def src_conn(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.pg.url(self.src), autocommit=True)

    def dst_conn(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.pg.url(self.dst), autocommit=True)

    def both(self, ddl: str) -> None:
        for connect in (self.src_conn, self.dst_conn):
            with connect() as conn:
                conn.execute(ddl)


@pytest.fixture
def ends(pg: LogicalPostgres) -> Iterator[Ends]:
    tag = uuid.uuid4().hex[:10]
    made = Ends(pg, f"src_{tag}", f"dst_{tag}")
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {made.src}")
        conn.execute(f"CREATE DATABASE {made.dst}")
    yield made
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        for _ in range(100):
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE database = %s AND active_pid IS NOT NULL",
                (made.src,),
            )
            try:
                conn.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE database = %s",
                    (made.src,),
                )
                break
            except psycopg.errors.ObjectInUse:
                time.sleep(0.1)
        for name in (made.src, made.dst):
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_datasource(sdk: Any, instance_id: str, content: dict[str, str]) -> str:
    reply = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(
            instance_id=instance_id,
            body=DatasourceInfo(
                datasource_name=unique("pg"),
                datasource_type="POSTGRESQL",
                content=Content(**content),
            ),
        )
    )
    return str(reply.datasource_id)


ALL_OPERATIONS = ("INSERT", "UPDATE", "DELETE")


def composite_between(  # type: ignore[no-untyped-def]
    sdk, creds, source: str, target: str, operations: tuple[str, ...] = ALL_OPERATIONS
) -> tuple[str, Any]:
    """init (auto-mapping) and create, between two data sources, through the SDK: (task id,
    the init element)."""
    init = sdk.install_multi_tasks(
        InstallMultiTasksRequest(
            instance_id=creds.instance_id,
            body=MultiTaskInitBody(
                source_datasource_id=source, target_datasource_id=target, auto_mapping=True
            ),
        )
    )
    element = init.body[0]
    sdk.create_multi_tasks(
        CreateMultiTasksRequest(
            instance_id=creds.instance_id,
            body=MultiTaskRequestBody(
                task_name=unique("cdc"),
                task_id=element.task_id,
                task_type="REALTIME",
                operation_types=list(operations),
            ),
        )
    )
    return element.task_id, element


def composite_task(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, operations: tuple[str, ...] = ALL_OPERATIONS
) -> tuple[str, Any]:
    """A composite task from the source database of `ends` to its target database."""
    source = pg_datasource(sdk, creds.instance_id, ends.pg.content(ends.src))
    target = pg_datasource(sdk, creds.instance_id, ends.pg.content(ends.dst))
    return composite_between(sdk, creds, source, target, operations)


def start_stop(sdk, creds, task_id: str, action: str) -> None:  # type: ignore[no-untyped-def]
    reply = sdk.batch_start_or_stop_tasks(
        BatchStartOrStopTasksRequest(
            instance_id=creds.instance_id,
            body=OperateTasksBean(action_id=action, list=[TaskBean(task_id=task_id)]),
        )
    )
    assert reply.success_count == 1, reply


def rows(conn: psycopg.Connection[Any], table: str) -> list[str]:
    """Each row in PostgreSQL's own text form: equal text, equal values, to the last digit."""
    return [r[0] for r in conn.execute(f"SELECT t::text FROM {table} t ORDER BY 1").fetchall()]


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met in {timeout} s (last value {value!r})")
        time.sleep(0.1)
        value = predicate()
    return value


def same_rows(ends: Ends, *tables: str) -> bool:
    with ends.src_conn() as s, ends.dst_conn() as d:
        return all(rows(s, t) == rows(d, t) for t in tables)
