"""Composite tasks from a MariaDB binlog into PostgreSQL, driven through the SDK: snapshot, then
every insert, update and delete with exact values, stop and resume, kill -9 of the source server
under load (counted change for change), and a server without a ROW binlog refused."""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql  # type: ignore[import-untyped]
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkroma.v2 import (
    Content,
    CreateDatasourceInfoRequest,
    CreateMultiTasksRequest,
    DatasourceInfo,
    InstallMultiTasksRequest,
    ListMonitorLogRequest,
    MultiTaskInitBody,
    MultiTaskRequestBody,
)

from tests.cdc.conftest import Ends, composite_between, start_stop, wait_for
from tests.cdc.mariaserver import BinlogMariaDB
from tests.cdc.test_crash import ENV, start_composite_over_http
from tests.e2e.process import Served
from tests.factories import unique

DOC = Path(__file__).resolve().parents[2] / "docs" / "cdc.md"


def _datasource(sdk, creds, kind: str, content: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    reply = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(
            instance_id=creds.instance_id,
            body=DatasourceInfo(
                datasource_name=unique(kind.lower()),
                datasource_type=kind,
                content=Content(**content),
            ),
        )
    )
    return str(reply.datasource_id)


def _task(sdk, creds, maria: BinlogMariaDB, mdb: str, ends: Ends) -> tuple[str, Any]:  # type: ignore[no-untyped-def]
    source = _datasource(sdk, creds, "MYSQL", maria.content(mdb))
    target = _datasource(sdk, creds, "POSTGRESQL", ends.pg.content(ends.dst))
    return composite_between(sdk, creds, source, target)


def _my(maria: BinlogMariaDB, mdb: str, *statements: str, params: Any = None) -> None:
    with maria.connect(mdb) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement, params)


# --- values ----------------------------------------------------------------------------------

MY_SCHEMA = (
    "CREATE TABLE a (id int PRIMARY KEY, v varchar(200))",
    "CREATE TABLE b (id bigint PRIMARY KEY, n decimal(30,10), ts datetime(6), d date,"
    " j json, bin varbinary(64), blb longblob, f double, t text, g float)",
    "CREATE TABLE c (k1 int, k2 varchar(10), v int, PRIMARY KEY (k1, k2))",
    "CREATE TABLE nopk (x int)",
)
PG_SCHEMA = (
    "CREATE TABLE a (id int PRIMARY KEY, v text);"
    "CREATE TABLE b (id bigint PRIMARY KEY, n numeric(30,10), ts timestamp(6), d date,"
    " j jsonb, bin bytea, blb bytea, f double precision, t text, g double precision);"
    "CREATE TABLE c (k1 int, k2 text, v int, PRIMARY KEY (k1, k2));"
    "CREATE TABLE nopk (x int)"
)
BIG_BINARY = bytes(range(256)) * 400


def _seed(maria: BinlogMariaDB, mdb: str) -> None:
    _my(maria, mdb, *MY_SCHEMA)
    with maria.connect(mdb) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO a VALUES (%s, %s)", [(i, f"seed {i} ☃ ümlaut 𝄞") for i in range(1, 51)]
        )
        cur.execute(
            "INSERT INTO b VALUES (1, 12345678901234567890.0123456789,"
            " '2026-01-02 03:04:05.123456', '1999-12-31',"
            " '{\"k\": [1, 2.50, null], \"s\": \"ü\"}', x'00ff10', %s, 0.1, 'τ', 0.1)",
            (BIG_BINARY,),
        )
        cur.execute("INSERT INTO c VALUES (1, 'x', 1), (1, 'y', 2)")


def _changes(maria: BinlogMariaDB, mdb: str) -> None:
    with maria.connect(mdb) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO a VALUES (51, 'new'), (52, NULL)")
        conn.begin()  # a multi-table, multi-row transaction
        cur.execute("UPDATE a SET v = CONCAT('changed ', id) WHERE id <= 10")
        cur.execute("DELETE FROM a WHERE id BETWEEN 20 AND 25")
        cur.execute("INSERT INTO c VALUES (2, 'z', 3)")
        cur.execute("UPDATE c SET v = v + 100")
        conn.commit()
        cur.execute("UPDATE a SET id = 1000 WHERE id = 30")  # the key itself changes
        cur.execute("UPDATE b SET n = -0.0000000001, f = 1e-300, g = 3.4e38 WHERE id = 1")
        cur.execute(
            "INSERT INTO b VALUES (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),"
            " (3, 99999999999999999999.9999999999, '9999-12-31 23:59:59.999999', '0001-01-01',"
            " '[]', x'', x'', -0.0, '', 1.17549e-38)"
        )
        cur.execute("DELETE FROM c WHERE k2 = 'x'")
        conn.begin()
        cur.execute("INSERT INTO c VALUES (7, 'gone', 7)")
        cur.execute("DELETE FROM c WHERE k1 = 7")
        cur.execute("INSERT INTO c VALUES (5, 't', 5)")
        conn.commit()
        for i in range(5):
            cur.execute("UPDATE a SET v = %s WHERE id = 1", (f"round {i} 𝄞",))
        conn.begin()  # rolled back: never in the log
        cur.execute("INSERT INTO a VALUES (9999, 'rolled back')")
        conn.rollback()


def _canon(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _source_rows(maria: BinlogMariaDB, mdb: str) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    with maria.connect(mdb) as conn, conn.cursor() as cur:
        for table, key in (("a", "id"), ("b", "id"), ("c", "k1, k2")):
            cur.execute(f"SELECT * FROM {table} ORDER BY {key}")
            rows = [tuple(_canon(v) for v in r) for r in cur.fetchall()]
            if table == "b":  # json as its value
                rows = [(*r[:4], None if r[4] is None else json.loads(r[4]), *r[5:]) for r in rows]
            out[table] = rows
    return out


def _target_rows(ends: Ends) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    with ends.dst_conn() as dst:
        for table, key in (("a", "id"), ("b", "id"), ("c", "k1, k2")):
            rows = dst.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
            out[table] = [tuple(_canon(v) for v in r) for r in rows]
    return out


def _same(maria: BinlogMariaDB, mdb: str, ends: Ends) -> bool:
    return _source_rows(maria, mdb) == _target_rows(ends)


def test_mariadb_snapshot_then_stream_is_exact_and_resumes(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, mdb: str
) -> None:
    _seed(maria, mdb)
    with ends.dst_conn() as dst:
        dst.execute(PG_SCHEMA)
    task_id, element = _task(sdk, creds, maria, mdb, ends)
    mapped = sorted((m.source_table, m.target_table) for m in element.mappings)
    assert mapped == [(f"{mdb}.{t}", f"public.{t}") for t in ("a", "b", "c")]  # nopk: no key
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: _same(maria, mdb, ends))
    with ends.dst_conn() as dst:
        row = dst.execute("SELECT n, ts::text, j, blb, t FROM b WHERE id = 1").fetchone()
        assert row is not None
        assert row[0] == Decimal("12345678901234567890.0123456789")
        assert row[1] == "2026-01-02 03:04:05.123456"
        assert row[2] == {"k": [1, 2.50, None], "s": "ü"}
        assert bytes(row[3]) == BIG_BINARY
        assert row[4] == "τ"
    _changes(maria, mdb)
    wait_for(lambda: _same(maria, mdb, ends))
    with ends.dst_conn() as dst:
        assert dst.execute("SELECT n, f FROM b WHERE id = 1").fetchone() == (
            Decimal("-0.0000000001"),
            1e-300,
        )
        assert dst.execute("SELECT v FROM a WHERE id = 1").fetchone() == ("round 4 𝄞",)
        assert dst.execute("SELECT count(*) FROM a WHERE id = 9999").fetchone() == (0,)

    # Stopped: the changes wait in the binlog; started again, they arrive exactly once.
    start_stop(sdk, creds, task_id, "stop")
    _my(
        maria,
        mdb,
        "INSERT INTO a SELECT seq, 'while stopped' FROM seq_2000_to_2100",
        "DELETE FROM a WHERE id < 5",
        "UPDATE c SET v = v * 2",
    )
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: _same(maria, mdb, ends))
    with ends.dst_conn() as dst:
        assert dst.execute("SELECT count(*) FROM a WHERE v = 'while stopped'").fetchone() == (101,)
    start_stop(sdk, creds, task_id, "stop")


def test_mariadb_source_without_a_row_binlog_is_refused(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, mdb: str
) -> None:
    _my(maria, mdb, "CREATE TABLE a (id int PRIMARY KEY)")
    source = _datasource(sdk, creds, "MYSQL", maria.content(mdb))
    target = _datasource(sdk, creds, "POSTGRESQL", ends.pg.content(ends.dst))
    draft = sdk.install_multi_tasks(
        InstallMultiTasksRequest(
            instance_id=creds.instance_id,
            body=MultiTaskInitBody(source_datasource_id=source, target_datasource_id=target),
        )
    ).body[0]
    with maria.root() as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL binlog_format = 'STATEMENT'")
    try:
        with pytest.raises(ClientRequestException) as at_create:
            sdk.create_multi_tasks(
                CreateMultiTasksRequest(
                    instance_id=creds.instance_id,
                    body=MultiTaskRequestBody(
                        task_name=unique("mycdc"),
                        task_id=draft.task_id,
                        task_type="REALTIME",
                        operation_types=["INSERT"],
                    ),
                )
            )
        with pytest.raises(ClientRequestException) as refused:
            sdk.install_multi_tasks(
                InstallMultiTasksRequest(
                    instance_id=creds.instance_id,
                    body=MultiTaskInitBody(
                        source_datasource_id=source,
                        target_datasource_id=target,
                        auto_mapping=True,
                    ),
                )
            )
    finally:
        with maria.root() as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL binlog_format = 'ROW'")
    assert (at_create.value.status_code, at_create.value.error_code) == (400, "FDI.3033")
    assert "binlog_format=STATEMENT" in at_create.value.error_msg
    assert refused.value.status_code == 400
    assert refused.value.error_code == "FDI.3033"
    assert "binlog_format=STATEMENT" in refused.value.error_msg
    assert "binlog_format = ROW" in refused.value.error_msg


# --- kill -9 of the source server under load ---------------------------------------------------

_MY_TRAIL = (
    "CREATE TABLE ev (id int PRIMARY KEY, v int NOT NULL)",
    "CREATE TABLE audit_src (seq bigint AUTO_INCREMENT PRIMARY KEY, op varchar(8), id int, v int)",
    "CREATE TRIGGER ev_i AFTER INSERT ON ev FOR EACH ROW "
    "INSERT INTO audit_src (op, id, v) VALUES ('INSERT', NEW.id, NEW.v)",
    "CREATE TRIGGER ev_u AFTER UPDATE ON ev FOR EACH ROW "
    "INSERT INTO audit_src (op, id, v) VALUES ('UPDATE', NEW.id, NEW.v)",
    "CREATE TRIGGER ev_d AFTER DELETE ON ev FOR EACH ROW "
    "INSERT INTO audit_src (op, id, v) VALUES ('DELETE', OLD.id, OLD.v)",
)
_PG_TRAIL = """
CREATE TABLE ev (id int PRIMARY KEY, v int NOT NULL);
CREATE TABLE audit_dst (seq bigserial PRIMARY KEY, op text, id int, v int);
CREATE FUNCTION trail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN INSERT INTO audit_dst (op, id, v) VALUES (TG_OP, OLD.id, OLD.v);
  ELSE INSERT INTO audit_dst (op, id, v) VALUES (TG_OP, NEW.id, NEW.v); END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER trail AFTER INSERT OR UPDATE OR DELETE ON ev FOR EACH ROW EXECUTE FUNCTION trail();
"""


class _Load(threading.Thread):
    """Changes `ev` until stopped, reconnecting while the server is down."""

    def __init__(self, maria: BinlogMariaDB, mdb: str) -> None:
        super().__init__(daemon=True)
        self.maria, self.mdb = maria, mdb
        self.halt = threading.Event()
        self.committed = 0
        self.next_id = 1
        self.rng = random.Random(11)

    def run(self) -> None:
        conn: Any = None
        while not self.halt.is_set():
            try:
                if conn is None:
                    conn = self.maria.connect(self.mdb)
                self._one(conn)
                self.committed += 1
            except pymysql.err.MySQLError:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                time.sleep(0.2)
            time.sleep(0.002)
        if conn is not None:
            conn.close()

    def _one(self, conn: Any) -> None:
        conn.begin()
        with conn.cursor() as cur:
            kind = self.rng.random()
            if kind < 0.4 or self.next_id < 10:
                cur.execute("INSERT INTO ev VALUES (%s, 0)", (self.next_id,))
                self.next_id += 1
            elif kind < 0.8:
                cur.execute(
                    "UPDATE ev SET v = v + 1 WHERE id = %s", (self.rng.randrange(1, self.next_id),)
                )
            elif kind < 0.9:
                cur.execute("DELETE FROM ev WHERE id = %s", (self.rng.randrange(1, self.next_id),))
            else:  # several rows in one transaction
                for _ in range(3):
                    cur.execute("INSERT INTO ev VALUES (%s, 1)", (self.next_id,))
                    self.next_id += 1
                cur.execute("UPDATE ev SET v = v + 10 WHERE id < 10")
        try:
            conn.commit()
        except pymysql.err.MySQLError:
            # The commit's outcome is unknown when the server died under it; the trail says.
            self.next_id += 3
            raise

    def finish(self) -> None:
        self.halt.set()
        self.join(timeout=30)


def _trails(maria: BinlogMariaDB, mdb: str, ends: Ends) -> tuple[list[Any], list[Any]]:
    with maria.connect(mdb) as conn, conn.cursor() as cur:
        cur.execute("SELECT op, id, v FROM audit_src ORDER BY seq")
        source = [tuple(r) for r in cur.fetchall()]
    with ends.dst_conn() as dst:
        target = [tuple(r) for r in dst.execute("SELECT op, id, v FROM audit_dst ORDER BY seq")]
    return source, target


@pytest.mark.slow
def test_kill_9_of_the_mariadb_source_mid_stream_loses_and_duplicates_nothing(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, mdb: str
) -> None:
    _my(maria, mdb, *_MY_TRAIL)
    with ends.dst_conn() as dst:
        dst.execute(_PG_TRAIL)
    task_id, element = _task(sdk, creds, maria, mdb, ends)
    assert [m.source_table for m in element.mappings] == [f"{mdb}.ev"]
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: _snapshotted(ends))
    load = _Load(maria, mdb)
    load.start()
    try:
        for _ in range(3):
            wait_for(lambda: load.committed > 200, timeout=60)
            time.sleep(0.3)
            maria.kill9()
            load.committed = 0
        wait_for(lambda: load.committed > 100, timeout=60)
    finally:
        load.finish()
    wait_for(lambda: len(set(map(len, _trails(maria, mdb, ends)))) == 1, timeout=90)
    source, target = _trails(maria, mdb, ends)
    assert len(source) > 500
    kinds = {k: sum(1 for r in source if r[0] == k) for k in ("INSERT", "UPDATE", "DELETE")}
    assert all(kinds.values()), kinds
    assert target == source  # change for change, in order: none lost, none applied twice
    print(f"3 kill -9s of the source: {len(source)} changes {kinds}, target equal")  # -rP
    start_stop(sdk, creds, task_id, "stop")


def _snapshotted(ends: Ends) -> bool:
    with ends.dst_conn() as dst:
        if dst.execute("SELECT to_regclass('openfdi_cdc_offsets')").fetchone() == (None,):
            return False
        found = dst.execute("SELECT count(*) FROM openfdi_cdc_offsets").fetchone()
        return found is not None and found[0] > 0


def test_the_mariadb_sdk_example_of_the_docs_creates_and_starts_a_following_task(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB
) -> None:
    block = re.search(
        r"<!-- cdc-mariadb-sdk-example -->\n```python\n(.*?)```", DOC.read_text(), re.S
    )
    assert block is not None, "docs/cdc.md lost its MariaDB SDK example"
    with maria.root() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS shop")
        cur.execute("CREATE DATABASE shop")
        cur.execute("CREATE TABLE shop.orders (id bigint PRIMARY KEY, amount decimal(12,2))")
        cur.execute("CREATE USER IF NOT EXISTS 'openfdi_cdc'@'%' IDENTIFIED BY 'cdc-docs'")
        cur.execute(
            "GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'openfdi_cdc'@'%'"
        )
    with ends.dst_conn() as dst:
        dst.execute("CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12,2))")
    names = {
        "client": sdk,
        "instance_id": creds.instance_id,
        "target_id": _datasource(sdk, creds, "POSTGRESQL", ends.pg.content(ends.dst)),
        "host": "127.0.0.1",
        "port": str(maria.port),
        "password": "cdc-docs",
    }
    try:
        exec(compile(block.group(1), str(DOC), "exec"), names)  # our own docs, verbatim
        _my(maria, "shop", "INSERT INTO orders VALUES (1, 9.99), (2, 0.01)")
        _my(maria, "shop", "DELETE FROM orders WHERE id = 2")
        wait_for(lambda: _orders(ends) == [(1, Decimal("9.99"))])
        start_stop(sdk, creds, str(names["task_id"]), "stop")
    finally:
        with maria.root() as conn, conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS shop")
            cur.execute("DROP USER IF EXISTS 'openfdi_cdc'@'%'")


def _orders(ends: Ends) -> list[tuple[Any, ...]]:
    with ends.dst_conn() as dst:
        return [tuple(r) for r in dst.execute("SELECT * FROM orders ORDER BY id")]


# --- a MariaDB target ---------------------------------------------------------------------------


@pytest.fixture
def mdst(maria: BinlogMariaDB) -> Iterator[str]:
    """A target database of the test's own on the session's MariaDB."""
    name = f"dst_{uuid.uuid4().hex[:10]}"
    with maria.root() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    yield name
    with maria.root() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")


_task_between = composite_between


def test_mariadb_into_a_mariadb_target_is_exact_and_resumes(  # type: ignore[no-untyped-def]
    sdk, creds, maria: BinlogMariaDB, mdb: str, mdst: str
) -> None:
    _seed(maria, mdb)
    _my(maria, mdst, *MY_SCHEMA)
    task_id, element = _task_between(
        sdk,
        creds,
        _datasource(sdk, creds, "MYSQL", maria.content(mdb)),
        _datasource(sdk, creds, "MYSQL", maria.content(mdst)),
    )
    mapped = sorted((m.source_table, m.target_table) for m in element.mappings)
    assert mapped == [(f"{mdb}.{t}", f"{mdst}.{t}") for t in ("a", "b", "c")]
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: _source_rows(maria, mdst) == _source_rows(maria, mdb))
    _changes(maria, mdb)
    wait_for(lambda: _source_rows(maria, mdst) == _source_rows(maria, mdb))
    start_stop(sdk, creds, task_id, "stop")
    _my(maria, mdb, "INSERT INTO a SELECT seq, 'while stopped' FROM seq_2000_to_2100",
        "DELETE FROM a WHERE id < 5")  # fmt: skip
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: _source_rows(maria, mdst) == _source_rows(maria, mdb))
    with maria.connect(mdst) as conn, conn.cursor() as cur:
        cur.execute("SELECT lsn FROM openfdi_cdc_offsets WHERE task_id = %s AND source_table = ''",
                    (task_id,))  # fmt: skip
        assert cur.fetchone() is not None  # the position lives with the rows
    start_stop(sdk, creds, task_id, "stop")


PG_SOURCE = (
    "CREATE TABLE a (id int PRIMARY KEY, v text);"
    "CREATE TABLE b (id bigint PRIMARY KEY, n numeric(30,10), ts timestamptz, d date,"
    " j jsonb, bin bytea, blb bytea, f double precision, t text, g real);"
    "CREATE TABLE c (k1 int, k2 text, v int, PRIMARY KEY (k1, k2))"
)


def _pg_canon(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """PostgreSQL's values as MariaDB holds them: timestamptz in UTC without a zone."""
    out = dict(rows)
    out["b"] = [
        (*r[:2], None if r[2] is None else r[2].astimezone(UTC).replace(tzinfo=None), *r[3:])
        for r in rows["b"]
    ]
    return out


def test_postgresql_into_a_mariadb_target_is_exact(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, mdst: str
) -> None:
    with ends.src_conn() as src:
        src.execute(PG_SOURCE)
        src.execute("INSERT INTO a SELECT g, 'seed ' || g || ' ☃ 𝄞' FROM generate_series(1, 50) g")
        src.execute(
            "INSERT INTO b VALUES (1, 12345678901234567890.0123456789,"
            " '2026-01-02 03:04:05.123456+07', '1999-12-31', '{\"k\": [1, 2.50, null]}',"
            " '\\x00ff10', %s, 0.1, 'τ', 0.1)",
            (BIG_BINARY,),
        )
        src.execute("INSERT INTO c VALUES (1, 'x', 1), (1, 'y', 2)")
    _my(maria, mdst, *MY_SCHEMA[:3])
    task_id, element = _task_between(
        sdk,
        creds,
        _datasource(sdk, creds, "POSTGRESQL", ends.pg.content(ends.src)),
        _datasource(sdk, creds, "MYSQL", maria.content(mdst)),
    )
    mapped = sorted((m.source_table, m.target_table) for m in element.mappings)
    assert mapped == [(f"public.{t}", f"{mdst}.{t}") for t in ("a", "b", "c")]
    start_stop(sdk, creds, task_id, "start")

    def same() -> bool:
        return _source_rows(maria, mdst) == _pg_canon(_pg_rows(ends))

    wait_for(same)
    with ends.src_conn() as src:
        src.execute("INSERT INTO a VALUES (51, 'new'), (52, NULL)")
        with src.transaction():
            src.execute("UPDATE a SET v = 'changed ' || id WHERE id <= 10")
            src.execute("DELETE FROM a WHERE id BETWEEN 20 AND 25")
            src.execute("UPDATE c SET v = v + 100")
        src.execute("UPDATE a SET id = 1000 WHERE id = 30")
        src.execute("UPDATE b SET n = -0.0000000001, ts = '2026-06-01 00:00:00-05' WHERE id = 1")
        src.execute(
            "INSERT INTO b VALUES (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),"
            " (3, 99999999999999999999.9999999999, '2000-01-01 00:00:00+00', '0001-01-01',"
            " '[]', '', '', -1.5e300, '', 0.3)"
        )
        src.execute("DELETE FROM c WHERE k2 = 'x'")
    wait_for(same)
    start_stop(sdk, creds, task_id, "stop")


def _pg_rows(ends: Ends) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    with ends.src_conn() as src:
        for table, key in (("a", "id"), ("b", "id"), ("c", "k1, k2")):
            rows = src.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
            out[table] = [tuple(_canon(v) for v in r) for r in rows]
    return out


def test_a_purged_binlog_fails_the_run_with_what_to_do(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, mdb: str
) -> None:
    _my(maria, mdb, "CREATE TABLE a (id int PRIMARY KEY, v varchar(20))",
        "INSERT INTO a VALUES (1, 'one')")  # fmt: skip
    with ends.dst_conn() as dst:
        dst.execute("CREATE TABLE a (id int PRIMARY KEY, v text)")
    task_id, _ = _task(sdk, creds, maria, mdb, ends)
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: _snapshotted(ends))
    start_stop(sdk, creds, task_id, "stop")
    wait_for(lambda: all(log.execute_status != "RUNNING" for log in _logs(sdk, creds, task_id)))
    _my(maria, mdb, "INSERT INTO a VALUES (2, 'two')")
    with maria.root() as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        saved_in = cur.fetchone()[0]

        def purged() -> bool:  # the server keeps a file until its binlog checkpoint passed it
            cur.execute("FLUSH BINARY LOGS")
            cur.execute("SHOW MASTER STATUS")
            cur.execute(f"PURGE BINARY LOGS TO '{cur.fetchone()[0]}'")
            cur.execute("SHOW BINARY LOGS")
            return saved_in not in [r[0] for r in cur.fetchall()]

        wait_for(purged)
    start_stop(sdk, creds, task_id, "start")
    failed = wait_for(
        lambda: [
            log
            for log in _logs(sdk, creds, task_id)
            if log.execute_status not in ("RUNNING", "UNSTARTED", "CANCELLED")
        ]
    )
    remarks = failed[0].remarks
    assert failed[0].execute_status != "SUCCESS", remarks
    assert "no longer holds the saved position" in remarks, remarks
    assert "repulling_snapshot" in remarks, remarks
    with ends.dst_conn() as dst:  # never a silent resync
        assert dst.execute("SELECT id FROM a ORDER BY id").fetchall() == [(1,)]
    start_stop(sdk, creds, task_id, "stop")


def _logs(sdk, creds, task_id: str) -> list[Any]:  # type: ignore[no-untyped-def]
    reply = sdk.list_monitor_log(
        ListMonitorLogRequest(instance_id=creds.instance_id, task_id=task_id)
    )
    return list(reply.entities)


def test_a_column_added_to_the_source_while_running_stops_the_run_naming_it(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, mdb: str
) -> None:
    _my(maria, mdb, "CREATE TABLE a (id int PRIMARY KEY, v varchar(20))")
    with ends.dst_conn() as dst:
        dst.execute("CREATE TABLE a (id int PRIMARY KEY, v text)")
    task_id, _ = _task(sdk, creds, maria, mdb, ends)
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: _snapshotted(ends))
    _my(maria, mdb, "INSERT INTO a VALUES (1, 'before')", "ALTER TABLE a ADD COLUMN w int",
        "INSERT INTO a VALUES (2, 'after', 7)")  # fmt: skip
    failed = wait_for(
        lambda: [
            log
            for log in _logs(sdk, creds, task_id)
            if log.execute_status not in ("RUNNING", "UNSTARTED", "CANCELLED")
        ]
    )
    assert "columns added: w" in failed[0].remarks, failed[0].remarks
    with ends.dst_conn() as dst:  # the change before the DDL arrived; the one after waits
        assert dst.execute("SELECT id, v FROM a ORDER BY id").fetchall() == [(1, "before")]
        dst.execute("ALTER TABLE a ADD COLUMN w int")  # as the remark says; the next run goes on
    wait_for(lambda: _target_a(ends) == [(1, "before", None), (2, "after", 7)], timeout=60)
    start_stop(sdk, creds, task_id, "stop")


def _target_a(ends: Ends) -> list[tuple[Any, ...]]:
    with ends.dst_conn() as dst:
        return [tuple(r) for r in dst.execute("SELECT id, v, w FROM a ORDER BY id")]


@pytest.mark.slow
def test_kill_9_of_openfdi_following_mariadb_loses_and_duplicates_nothing(
    ends: Ends, maria: BinlogMariaDB, mdb: str, tmp_path
) -> None:
    """Three kill -9s of a real `openfdi serve` under load: each restart's reader takes the
    binlog over (same replica server id) from the position committed with the rows."""
    _my(maria, mdb, *_MY_TRAIL)
    with ends.dst_conn() as dst:
        dst.execute(_PG_TRAIL)
    served = Served(tmp_path, demo=False, env=ENV)
    served.start()
    load = _Load(maria, mdb)
    try:
        ends_ = [("MYSQL", maria.content(mdb)), ("POSTGRESQL", ends.pg.content(ends.dst))]
        start_composite_over_http(served, ends_, "mycdc-crash")
        wait_for(lambda: _snapshotted(ends), timeout=60)
        load.start()
        for _ in range(3):
            applied = len(_trails(maria, mdb, ends)[1])
            wait_for(lambda: len(_trails(maria, mdb, ends)[1]) > applied + 100, timeout=90)  # noqa: B023
            served.kill()
            served.start()
        wait_for(lambda: load.committed > 300, timeout=30)
    finally:
        load.finish()
    try:
        wait_for(lambda: len(set(map(len, _trails(maria, mdb, ends)))) == 1, timeout=90)
        source, target = _trails(maria, mdb, ends)
        assert len(source) > 300
        assert target == source
        print(f"3 kill -9s of openfdi: {len(source)} changes, target equal")  # shown by -rP
    finally:
        served.stop()


def test_a_run_following_mariadb_under_load_stops_within_the_deadline(  # type: ignore[no-untyped-def]
    sdk, creds, ends: Ends, maria: BinlogMariaDB, mdb: str
) -> None:
    _my(maria, mdb, *_MY_TRAIL)
    with ends.dst_conn() as dst:
        dst.execute(_PG_TRAIL)
    task_id, _ = _task(sdk, creds, maria, mdb, ends)
    start_stop(sdk, creds, task_id, "start")
    wait_for(lambda: _snapshotted(ends))
    load = _Load(maria, mdb)
    load.start()
    try:
        wait_for(lambda: len(_trails(maria, mdb, ends)[1]) > 100)
        asked = time.monotonic()
        start_stop(sdk, creds, task_id, "stop")
        wait_for(
            lambda: all(log.execute_status != "RUNNING" for log in _logs(sdk, creds, task_id)),
            timeout=10,
        )
        took = time.monotonic() - asked
    finally:
        load.finish()
    assert took < 1.5, f"the run took {took:.2f} s to stop"
    logs = _logs(sdk, creds, task_id)
    assert logs[0].execute_status == "CANCELLED", logs[0]
    # What it applied before stopping is a prefix of the source's trail: nothing half-applied.
    source, target = _trails(maria, mdb, ends)
    assert target == source[: len(target)]
