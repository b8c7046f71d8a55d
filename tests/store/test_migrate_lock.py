"""Several processes migrating one fresh database at once (a fleet starting together) all
succeed and leave it at head: on PostgreSQL they queue on an advisory lock, on SQLite on the
write lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from openfdi.store.db import Database, head_revision
from openfdi.store.tables import Base

PROCESSES = 6

# Each process imports everything first, then waits at a barrier (a file per process in a
# directory) until all are ready: the migrations begin within a few milliseconds of each other.
_SCRIPT = """
import os, sys, time
from pathlib import Path
from alembic import command  # noqa: F401  (imported before the barrier, not after)
from openfdi.store.db import Database
db = Database(sys.argv[1])
barrier, parties = Path(sys.argv[2]), int(sys.argv[3])
(barrier / str(os.getpid())).touch()
while len(list(barrier.iterdir())) < parties:
    time.sleep(0.002)
db.migrate()
print(db.revision())
"""


def _migrate_at_once(url: str, barrier: Path) -> list[subprocess.CompletedProcess[str]]:
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, url, str(barrier), str(PROCESSES)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def _assert_all_at_head(url: str, results: list[subprocess.CompletedProcess[str]]) -> None:
    failures = [r.stderr[-2000:] for r in results if r.returncode != 0]
    assert failures == []
    assert {r.stdout.strip() for r in results} == {head_revision()}
    db = Database(url)
    try:
        assert db.revision() == head_revision()
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        db.dispose()


def test_processes_migrating_a_fresh_postgresql_schema_at_once_all_reach_head(
    postgres_url: str, tmp_path: Path
) -> None:
    _assert_all_at_head(postgres_url, _migrate_at_once(postgres_url, tmp_path / "barrier"))


def test_processes_migrating_a_fresh_sqlite_file_at_once_all_reach_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    _assert_all_at_head(url, _migrate_at_once(url, tmp_path / "barrier"))
