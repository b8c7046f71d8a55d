"""The local executor: runs claimed runs in threads of this process, keeps their leases alive,
and enforces the stop deadline.

Stop is two-phase: `stop()` asks the runner to finish at its next batch boundary (batches are
bounded to ~0.2 s of work); if it has not ended by the deadline, its connectors' running
statements are cancelled, and if even that does not end it within a margin, the run is closed
as cancelled from here, which fences the stuck thread out of any further write.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from openfdi.connectors.registry import Registry
from openfdi.domain.states import RunState
from openfdi.engine.runner import EngineSettings, Runner
from openfdi.engine.spec import RunSpec
from openfdi.store import runs
from openfdi.store.db import Database

log = logging.getLogger(__name__)


@dataclass
class _Active:
    runner: Runner
    thread: threading.Thread
    deadline_timer: threading.Timer | None = None


class LocalExecutor:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        clock_ms: Callable[[], int],
        *,
        settings: EngineSettings,
        lease_s: float = 10.0,
        stop_deadline_s: float = 1.0,
        abandon_margin_s: float = 2.0,
    ) -> None:
        self.db = db
        self.registry = registry
        self.clock_ms = clock_ms
        self.settings = settings
        self.lease_ms = int(lease_s * 1000)
        self.stop_deadline_s = stop_deadline_s
        self.abandon_margin_s = abandon_margin_s
        self.owner = f"local-{uuid.uuid4().hex[:12]}"
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._renewer = threading.Thread(target=self._renew_loop, name="lease-renewer", daemon=True)
        self._renewer.start()

    def submit(self, spec: RunSpec) -> bool:
        """Claim the run and start it in a thread; False if someone else claimed it first."""
        claim = runs.claim(self.db, spec.run_id, self.owner, self.clock_ms(), self.lease_ms)
        if claim is None:
            return False
        runner = Runner(spec, claim, self.db, self.registry, self.settings, self.clock_ms)
        thread = threading.Thread(
            target=self._execute, args=(runner,), name=f"run-{spec.run_id[:8]}", daemon=True
        )
        with self._lock:
            self._active[spec.run_id] = _Active(runner, thread)
        thread.start()
        return True

    def active_run_ids(self) -> set[str]:
        with self._lock:
            return set(self._active)

    def is_active(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._active

    def stop(self, run_id: str, *, interrupt: bool = False) -> None:
        """Ask the run to stop; force it at the deadline. Returns at once.

        `interrupt`: the server is going away, not the user's intent: the run ends INTERRUPTED.
        """
        with self._lock:
            active = self._active.get(run_id)
            if active is None or active.deadline_timer is not None:
                return
            active.runner.stop(interrupt=interrupt)
            timer = threading.Timer(self.stop_deadline_s, self._force, args=(run_id,))
            timer.daemon = True
            active.deadline_timer = timer
        timer.start()

    def _force(self, run_id: str) -> None:
        with self._lock:
            active = self._active.get(run_id)
        if active is None:
            return
        log.info("run %s passed its stop deadline: cancelling its statements", run_id)
        active.runner.force()
        active.thread.join(self.abandon_margin_s)
        if active.thread.is_alive():
            log.warning("run %s did not end after cancel: closing it and fencing it out", run_id)
            with contextlib.suppress(runs.FencedError):
                runs.finish(
                    self.db,
                    active.runner.claim,
                    RunState.CANCELLED,
                    self.clock_ms(),
                    "stopped at the deadline; the executor abandoned a statement that "
                    "ignored cancellation",
                    "RUNTIME_CANCEL",
                )

    def _execute(self, runner: Runner) -> None:
        try:
            state = runner.run()
            log.info("run %s of task %s ended %s", runner.claim.run_id, runner.spec.task_id, state)
        finally:
            with self._lock:
                active = self._active.pop(runner.claim.run_id, None)
            if active is not None and active.deadline_timer is not None:
                active.deadline_timer.cancel()

    def _renew_loop(self) -> None:
        interval = self.lease_ms / 1000 / 3
        while not self._closing.wait(interval):
            with self._lock:
                actives = list(self._active.values())
            for active in actives:
                try:
                    runs.renew(self.db, active.runner.claim, self.clock_ms(), self.lease_ms)
                except runs.FencedError:
                    log.warning("run %s was taken over; stopping it", active.runner.claim.run_id)
                    active.runner.force()
                except Exception:
                    log.exception("lease renewal of run %s failed", active.runner.claim.run_id)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop every run (gracefully, then forced at the deadline) and wait for them."""
        self._closing.set()
        for run_id in self.active_run_ids():
            self.stop(run_id, interrupt=True)
        with self._lock:
            threads = [a.thread for a in self._active.values()]
        for thread in threads:
            thread.join(timeout_s)
