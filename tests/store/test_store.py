"""The metadata store on SQLite and PostgreSQL: migrations, drift, and single flight in the DB."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from openfdi.store.tables import Base, DatasourceRow, RunRow, TaskRow

both_databases = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


@both_databases
def test_migrations_match_the_table_definitions(runtime) -> None:
    """A migration forgotten after a change to tables.py fails here."""
    with runtime.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


@both_databases
def test_migrate_is_idempotent(runtime) -> None:
    runtime.db.migrate()
    runtime.db.migrate()
    names = set(inspect(runtime.db.engine).get_table_names())
    assert {"tasks", "runs", "dispatches", "datasources", "credentials"} <= names


@both_databases
def test_the_database_is_at_the_head_alembic_computes(runtime) -> None:
    """`head_revision` (file names, read without importing Alembic) is Alembic's own head."""
    from alembic.script import ScriptDirectory

    from openfdi.store.db import alembic_config, head_revision

    script = ScriptDirectory.from_config(alembic_config(runtime.db.url))
    assert head_revision() == script.get_current_head()
    assert runtime.db.revision() == head_revision()


def test_sqlite_pragmas(runtime) -> None:
    with runtime.db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def _task(runtime, creds) -> str:  # type: ignore[no-untyped-def]
    now = runtime.clock_ms()
    with runtime.db.write() as session:
        session.add(
            DatasourceRow(
                id="d" * 32,
                project_id=creds.project_id,
                instance_id=creds.instance_id,
                name="ds",
                type="SQLITE",
                content="{}",
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        session.add(
            TaskRow(
                id="t" * 32,
                project_id=creds.project_id,
                instance_id=creds.instance_id,
                name="task-1",
                task_type="TIMING",
                source_datasource_id="d" * 32,
                target_datasource_id="d" * 32,
                task_detail="{}",
                status=0,
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
    return "t" * 32


def _run(run_id: str, task_id: str, state: str, fire_time: int | None = None) -> RunRow:
    return RunRow(
        id=run_id,
        task_id=task_id,
        trigger="schedule" if fire_time else "manual",
        fire_time=fire_time,
        state=state,
        epoch=1,
        created_at=0,
    )


@both_databases
def test_database_refuses_a_second_active_run(runtime, creds) -> None:
    task_id = _task(runtime, creds)
    with runtime.db.write() as session:
        session.add(_run("1" * 32, task_id, "running"))
    with pytest.raises(IntegrityError), runtime.db.write() as session:
        session.add(_run("2" * 32, task_id, "starting"))
    # Finished runs are not limited: history keeps as many as there were.
    with runtime.db.write() as session:
        session.add(_run("3" * 32, task_id, "succeeded"))
        session.add(_run("4" * 32, task_id, "cancelled"))


@both_databases
def test_a_fire_time_is_taken_once(runtime, creds) -> None:
    task_id = _task(runtime, creds)
    with runtime.db.write() as session:
        session.add(_run("1" * 32, task_id, "succeeded", fire_time=1_000))
    with pytest.raises(IntegrityError), runtime.db.write() as session:
        session.add(_run("2" * 32, task_id, "skipped", fire_time=1_000))


def test_sqlite_writers_in_several_processes_queue_and_all_commit(tmp_path) -> None:
    """Server, worker processes and the admin CLI write one SQLite file: every transaction
    commits (BEGIN IMMEDIATE and the busy timeout), none lost, none refused."""
    import subprocess
    import sys
    import threading

    from openfdi.store.db import Database

    url = f"sqlite:///{tmp_path / 'meta.db'}"
    db = Database(url)
    with db.write_conn() as conn:
        conn.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO counter VALUES (0)"))
    bump = "UPDATE counter SET n = (SELECT n FROM counter) + 1"
    script = (
        "import sys\nfrom sqlalchemy import text\nfrom openfdi.store.db import Database\n"
        f"db = Database({url!r})\n"
        "for _ in range(100):\n    with db.write_conn() as conn:\n"
        f"        conn.execute(text({bump!r}))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]

    def local() -> None:
        for _ in range(100):
            with db.write_conn() as conn:
                conn.execute(text(bump))

    threads = [threading.Thread(target=local) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    with db.lookup() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar() == 500
    db.dispose()


def test_a_pooled_connection_the_server_closed_while_idle_is_replaced(
    postgres_url, monkeypatch
) -> None:
    """No round trip on every checkout, yet a connection the server dropped while it sat in
    the pool (a restart, an idle timeout) is pinged, found dead and replaced: no error."""
    import psycopg

    from openfdi.store import db as store_db
    from tests.services import PG_ADMIN_URL

    database = store_db.Database(postgres_url)
    try:
        with database.lookup() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        monkeypatch.setattr(store_db, "PING_AFTER_IDLE_S", 0.0)
        with database.lookup() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        database.dispose()
