"""The Celery executor is refused at start-up, with the reason, where it cannot work."""

from __future__ import annotations

import os
import subprocess

import pytest
from pydantic import ValidationError

from openfdi.settings import Settings
from tests.celery.conftest import OPENFDI

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/openfdi"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"celery_broker_url": "amqp://h//"}, "needs PostgreSQL metadata"),
        ({"database_url": PG}, "needs OPENFDI_CELERY_BROKER_URL"),
        ({"database_url": PG, "celery_broker_url": "sqs://h"}, "unsupported broker 'sqs'"),
    ],
)
def test_refused_without_postgresql_or_a_broker(fields: dict[str, str], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        Settings(executor="celery", **fields)  # type: ignore[arg-type]


def test_accepted_with_both() -> None:
    s = Settings(executor="celery", database_url=PG, celery_broker_url="redis://127.0.0.1:6379/0")
    assert (s.executor, s.celery_queue) == ("celery", "openfdi")


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_the_commands_say_why_and_exit_2(tmp_path, command: str) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "OPENFDI_DATA_DIR": str(tmp_path), "OPENFDI_EXECUTOR": "celery",
           "OPENFDI_CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}  # fmt: skip
    env.pop("OPENFDI_DATABASE_URL", None)
    done = subprocess.run(
        [OPENFDI, command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "OPENFDI_EXECUTOR=celery needs PostgreSQL metadata" in done.stderr
    assert "Traceback" not in done.stderr
