"""A data source may not reach openfdi's own metadata database on PostgreSQL (issue 10, the class
of item 1): refused when saved if its address is the metadata's, and refused each time a
connector connects, by what the server says the database is, however the address is spelled."""

from __future__ import annotations

from typing import Any

import pytest

from openfdi.connectors.errors import InvalidContentError
from openfdi.connectors.postgres.connector import PostgresConnector
from openfdi.services.runtime import host_paths, metadata_database_identity
from tests.conftest import METADATA_DATABASE
from tests.engine import test_fast_paths as fast
from tests.engine.conftest import create_task
from tests.factories import unique

pg = fast.pg  # SQL in the test's PostgreSQL schema

on_postgres = pytest.mark.parametrize("backend", ["postgres"], indirect=True)
REFUSED = "openfdi's own metadata database"


def _content(host: str, database: str = METADATA_DATABASE, **extra: Any) -> dict[str, Any]:
    return {"host": host, "port": "5432", "database_name": database, "user_name": "postgres",
            "password": "unused", **extra}  # fmt: skip


def _create(signed, base_path: str, content: dict[str, Any]) -> Any:  # type: ignore[no-untyped-def]
    body = {"datasource_name": unique("ds"), "datasource_type": "POSTGRESQL", "content": content}
    return signed.post(f"{base_path}/datasources", json=body)


@on_postgres
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", " LOCALHOST "])
def test_a_data_source_at_the_metadata_address_is_refused_when_saved(
    signed, base_path, host: str
) -> None:  # type: ignore[no-untyped-def]
    reply = _create(signed, base_path, _content(host))

    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "FDI.3033"
    assert "[content.database_name]" in reply.json()["error_msg"]
    assert REFUSED in reply.json()["error_msg"]


@on_postgres
def test_another_spelling_of_the_metadata_address_is_refused_when_it_connects(
    sdk, creds, signed, base_path, pg_schema, pg
) -> None:  # type: ignore[no-untyped-def]
    # "127.1" is 127.0.0.1 to libpq: saved (no connection is made then), refused by the server's
    # own word each time it is opened: a test-connect, a run.
    sneaky = _create(signed, base_path, _content("127.1", schema="public"))
    assert sneaky.status_code == 201, sneaky.text
    sneaky_id = sneaky.json()["datasource_id"]
    reply = signed.post(f"{base_path}/datasources/{sneaky_id}/test-connect")
    assert reply.status_code == 400, reply.text
    assert REFUSED in reply.json()["error_msg"]

    # Any other database of the same server is a data source like any other.
    fine = _create(signed, base_path, _content("127.1", "postgres", schema=pg_schema))
    assert fine.status_code == 201, fine.text
    fine_id = fine.json()["datasource_id"]
    ok = signed.post(f"{base_path}/datasources/{fine_id}/test-connect")
    assert ok.status_code == 200, ok.text

    detail = {"sourceSelectedDatasource": {"table": "users"},
              "targetSelectedDatasource": {"table": "stolen"}}  # fmt: skip
    task = create_task(sdk, creds, sneaky_id, fine_id, detail)
    log = fast._run(sdk, creds, task)
    assert log.execute_status == "ERROR"
    assert REFUSED in (log.remarks or "")
    pg("CREATE TABLE things (id int PRIMARY KEY)")
    pg("INSERT INTO things VALUES (1)")
    into = {**detail, "sourceSelectedDatasource": {"table": "things"}}
    task = create_task(sdk, creds, fine_id, sneaky_id, into)
    log = fast._run(sdk, creds, task)
    assert log.execute_status == "ERROR"
    assert REFUSED in (log.remarks or "")


@on_postgres
def test_the_connector_compares_what_the_server_says_not_the_address(runtime) -> None:  # type: ignore[no-untyped-def]
    host = host_paths(runtime.settings, metadata_database_identity(runtime.db))
    [own] = host.own_databases
    assert own.identity is not None
    assert own.database == METADATA_DATABASE
    content = _content("127.1")

    connector = PostgresConnector(content, host)  # the address alone does not tell
    with pytest.raises(InvalidContentError, match=REFUSED) as refused:
        connector.check()
    assert refused.value.field == "database_name"
    connector.close()

    other = PostgresConnector({**content, "database_name": "postgres"}, host)
    other.check()
    other.close()
