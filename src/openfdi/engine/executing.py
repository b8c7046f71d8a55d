"""What the services need of an executor, whichever carries the runs.

`LocalExecutor` (engine/executor.py) executes runs on threads of this process; `CeleryDispatcher`
(engine/celery_queue.py) publishes one broker message per run for Celery workers on any host.
Both claim nothing on the caller's thread: a run is claimed where it executes, through the
database (store/runs.py `claim`), so a run handed over twice still runs once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from openfdi.engine.cdc import CdcRunSpec
from openfdi.engine.spec import RunSpec


class Executor(Protocol):
    def submit(self, run_id: str, describe: Callable[[], RunSpec | CdcRunSpec]) -> None:
        """Hand over a created run; returns at once. `describe` builds what the run needs, on
        the executing side, once the run is claimed (an executor elsewhere builds its own)."""
        ...

    def stop(self, run_id: str, *, interrupt: bool = False) -> None:
        """The run was marked stopping in the database: end it soon if it executes here."""
        ...

    def active_run_ids(self) -> set[str]:
        """Runs submitted here and not ended (those this process executes or still holds)."""
        ...

    def queued(self) -> int:
        """Runs submitted here that no worker has started yet."""
        ...

    def shutdown(self, timeout_s: float = 5.0) -> None: ...
