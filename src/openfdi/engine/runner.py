"""One run of one task: read batches, write them, commit, then checkpoint; until done or stopped.

Order of commits: the target first, then (in one metadata transaction, guarded by the run's
epoch) the totals, the watermark and the dirty rows; for the read's last batch of a run that
ends with it, that transaction also ends the run. A crash between the two re-reads at most one
batch: at-least-once, and exactly-once where the target write is an upsert on keys.

When both ends are `PassThrough` connectors agreeing on a form (binary COPY from PostgreSQL to
PostgreSQL with identical column types; the shared text form between SQL dialects, see
`connectors/_tsv`), batches are raw slices moved as bytes; a slice the target refuses is written
again through the row path, so its bad rows are still reported one by one.

A TIMING copy whose task asks for `parallelism` is cut into key-range slices copied at once, each
on its own thread with its own connections, each committing and checkpointing on its own (see
`engine/slices.py`); the run ends when every slice has, and fails when one does.

Under the Celery executor (a lease owner under `runs.BROKER_OWNER_PREFIX`) the slices of such a
copy execute on any workers: the run cuts (or resumes) its plan, committed in the target as
ever, then hands itself to one child run per unfinished slice (`runs.create_children`) and
returns RUNNING, executed by nobody while its children live; its worker publishes their
messages. A child is claimed like any run and copies its one slice from the position its target
keeps for it; the last child to end ends the run (store/runs.py), and, when every slice is
done, marks the plan done in the target before (`_mark_plan_done`).

Under the Celery executor a run may execute as bounded steps (`Runner.step_s`): past the budget,
at the next batch boundary after the target's commit and the checkpoint, a run that resumes past
what it committed (it follows its source, reads incrementally, or is sliced) returns RUNNING
without ending: the run stays `running`, and its next step, the same run claimed again, starts
from that checkpoint exactly as a takeover after a crash does. Its totals go on from the claim's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import decimal
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import tenacity

from openfdi.connectors._sqlbase import SqlConnector
from openfdi.connectors._values import format_interval
from openfdi.connectors.errors import ConnectorError, SliceRefusedError
from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import (
    Batch,
    Connector,
    PassThrough,
    Positions,
    RawSlice,
    ReadPlan,
    RejectedRow,
    WriteMode,
    WritePlan,
)
from openfdi.domain.states import RunState, TaskType
from openfdi.engine import slices
from openfdi.engine.backoff import restart_note
from openfdi.engine.metrics import BACKLOGS, RUNS
from openfdi.engine.outcomes import (
    FENCED,
    STOPPED,
    SUCCEEDED,
    DirtyLimitExceeded,
    outcome_of,
    reason_of,
)
from openfdi.engine.spec import RunSpec
from openfdi.store import runs
from openfdi.store.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    poll_interval_s: float = 1.0
    dirty_limit: int = 1000
    """A run with more rejected rows than this fails (0: no limit)."""
    batch_rows: int = 5_000
    """Rows per batch at most. A row takes several times its data as Python objects (a 10-column
    row of 170 bytes takes about 900), and a batch is alive twice over while it is converted and
    written: 5,000 keeps a copy's peak under 150 MB, and a batch's commit stays a small cost."""
    batch_seconds: float = 0.2
    retry_attempts: int = 4
    """Tries of a run's work in all when it meets transient errors (engine/outcomes.py)."""
    retry_initial_s: float = 1.0
    retry_max_s: float = 30.0
    """Backoff between tries: exponential from `retry_initial_s`, with jitter, at most this."""


def watermark_text(value: Any) -> str | None:
    """The checkpoint's text form of an incremental column value (connectors parse it back)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return format_interval(value)  # str() says "-1 day, 23:59:59" for minus one second
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, decimal.Decimal | dt.datetime | dt.date | dt.time):
        return str(value)
    if isinstance(value, dt.timedelta):
        return format_interval(value)
    return value


@dataclass
class _Totals:
    rows: int = 0
    dirty: int = 0
    nbytes: int = 0
    read_ms: float = 0.0
    write_ms: float = 0.0

    def progress(self) -> runs.Progress:
        return runs.Progress(
            data_count=self.rows,
            dirty_data_count=self.dirty,
            data_size_bytes=self.nbytes,
            read_ms=int(self.read_ms),
            write_ms=int(self.write_ms),
        )


@dataclass(frozen=True, slots=True)
class _Lane:
    """Where one read's progress goes: the position its target keeps (when it keeps one), and
    whether its watermark is the run's (the single read of a run) or a slice's own."""

    positions: Positions | None
    key: str
    """The position's key in the target (the task id; a slice's own key for a slice)."""
    slice_index: int | None = None

    def save(self, before: str | None, at: str | None) -> None:
        """Write the batch's read range into the target's open transaction (see `_resume_at`);
        a slice writes the last key it committed."""
        if self.positions is None:
            return
        if self.slice_index is None:
            position = json.dumps({"after": before, "at": at})
        else:
            position = slices.encode_state(
                slices.SliceState(None if at is None else int(at), done=False)
            )
        self.positions.save_position(self.key, position)

    def checkpoint(self, watermark: str | None) -> str | None:
        """The run's checkpoint watermark after this lane's batch: a slice's key is its own."""
        return watermark if self.slice_index is None else None


@dataclass
class Runner:
    """Executes one claimed run. `stop()` asks for a stop at the next batch boundary;
    `force()` interrupts the running statement of either side (from another thread)."""

    spec: RunSpec
    claim: runs.Claim
    db: Database
    registry: Registry
    settings: EngineSettings
    clock_ms: Callable[[], int]
    stop_requested: threading.Event = field(default_factory=threading.Event)
    forced: threading.Event = field(default_factory=threading.Event)
    interrupting: bool = False
    """Stopped because this server shuts down: the run ends INTERRUPTED, so that a started task
    resumes when a server starts again (a user's stop ends it CANCELLED)."""
    step_s: float = 0.0
    """The step budget (0: the run executes whole): past it, `run` returns RUNNING at the next
    batch boundary where the run can resume from what it committed, without ending the run."""
    _step_ends_at: float = math.inf
    _stepped: bool = False
    """The step ended (budget spent): the passes return, and the run is handed over."""
    _connectors: list[Connector] = field(default_factory=list)
    _held: runs.Checkpoint | None = None
    """The last batch's checkpoint, when the run ends with it: written with the run's end."""
    _totals: _Totals = field(default_factory=_Totals)
    _watermark: str | None = None
    """Where the source was read up to by the last batch the target committed."""
    _committed: int = 0
    """Batches the target committed in this run (across retries)."""
    _positions: Positions | None = None
    """The target, when it keeps the task's read position with the rows (incremental reads)."""
    _sliced: bool = False
    """This copy runs as key-range slices: every slice resumes from its own position."""
    _aborted: threading.Event = field(default_factory=threading.Event)
    """A slice failed: the other slices stop at their next batch boundary."""
    _recording: threading.Lock = field(default_factory=threading.Lock)
    """Slices record their batches one at a time (totals, metadata checkpoint)."""
    _spread: bool = False
    """The run handed its slices to child runs (`_copy_sliced`): it returns RUNNING, and its
    last child ends it."""
    parent_end: runs.ParentEnd | None = None
    """A slice run that ended its parent: how (store/runs.py `finish`)."""

    def __post_init__(self) -> None:
        if self.claim.progress is not None:  # a later step, or a takeover: one run, one count
            p = self.claim.progress
            self._totals = _Totals(p.data_count, p.dirty_data_count, p.data_size_bytes,
                                   p.read_ms, p.write_ms)  # fmt: skip

    def stop(self, *, interrupt: bool = False) -> None:
        self.interrupting = self.interrupting or interrupt
        self.stop_requested.set()

    def _halted(self) -> bool:
        return self.stop_requested.is_set() or self._aborted.is_set()

    def force(self) -> None:
        self.forced.set()
        self.stop_requested.set()
        for connector in list(self._connectors):
            connector.cancel()

    def run(self) -> RunState:
        """Execute the run to its end and record the outcome; returns the final state, or
        RUNNING when the step ended (`step_s`) and the run goes on in a next step."""
        started = time.monotonic()
        if self.step_s > 0:
            self._step_ends_at = started + self.step_s
        try:
            state = self._run()
        finally:
            BACKLOGS.forget(self.spec.task_id)
        kind = self.spec.task_type.value
        if self.claim.parent_run_id is not None:  # a slice run: counted in its parent's end
            if self.parent_end is not None:
                end = self.parent_end
                RUNS.ended(kind, end.state.value, end.elapsed_ms / 1000)
        elif state is not RunState.RUNNING:
            RUNS.ended(kind, state.value, time.monotonic() - started)
        return state

    def _step_over(self) -> bool:
        """Whether the step ends at this batch boundary (called after a committed and
        checkpointed batch, or an idle one): its budget is spent, and the next step can resume
        past what this one committed. Any other run goes on to its end."""
        if self._stepped:
            return True
        if time.monotonic() < self._step_ends_at:
            return False
        if self._steppable():
            self._stepped = True
        else:
            self._step_ends_at = math.inf  # a full read: it cannot resume, so it runs whole
        return self._stepped

    def _steppable(self) -> bool:
        """Whether the run executes as steps: a budget is set, and a next step can resume
        past what this one committed."""
        return self.step_s > 0 and (
            self.spec.follows_source or self._sliced or self._resumes_past_commits()
        )

    def _run(self) -> RunState:
        outcome, remarks = SUCCEEDED, None
        try:
            self._watermark = self._start_watermark()
            self._copy_retrying()
            if self._spread:
                return RunState.RUNNING  # its slices' runs go on, and the last ends it
            if self.stop_requested.is_set() and self.interrupting and self._steppable():
                # Its worker shuts down, at a batch boundary: another takes the next step.
                return RunState.RUNNING
            if self.stop_requested.is_set():
                outcome, remarks = STOPPED, "stopped"
            elif self._stepped:
                return RunState.RUNNING  # its next step goes on from the checkpoint
        except Exception as exc:
            outcome, remarks = outcome_of(exc), reason_of(exc)
            if outcome is FENCED:
                log.warning("run %s lost its claim; stopping without writing", self.claim.run_id)
                return RunState.INTERRUPTED
            if outcome.internal:
                log.exception("run %s of task %s failed", self.claim.run_id, self.spec.task_id)
        finally:
            self._close_connectors()
        state, status = outcome.state, outcome.status
        if self.interrupting and state is RunState.CANCELLED:
            state = RunState.INTERRUPTED
            remarks = (
                "interrupted: the server shut down; a started task resumes from its checkpoint"
            )
        if state is RunState.FAILED:
            remarks = self._with_restart_note(remarks or "failed")
            log.warning(
                "run %s of task %s failed: %s",
                self.claim.run_id,
                self.spec.task_id,
                remarks,
                extra={"run_id": self.claim.run_id, "task_id": self.spec.task_id},
            )
        try:
            self.parent_end = runs.finish(
                self.db,
                self.claim,
                state,
                self.clock_ms(),
                remarks,
                status,
                last_batch=self._held,
                before_parent_ends=self._mark_plan_done,
            )
        except runs.FencedError:
            return RunState.INTERRUPTED
        if self.parent_end is not None:
            log.info(
                "run %s of task %s ended %s with its last slice",
                self.parent_end.run_id,
                self.spec.task_id,
                self.parent_end.state,
                extra={"run_id": self.parent_end.run_id, "task_id": self.spec.task_id},
            )
        return state

    def _mark_plan_done(self, parent_state: RunState) -> None:
        """Before the last slice run ends its parent SUCCEEDED: mark the plan done in the target
        (as `_copy_sliced` does), so that the task's next run cuts a new one. Should that fail,
        the parent ends all the same: the next run then resumes a plan whose every slice is
        done, and copies nothing (the copy was whole)."""
        if parent_state is not RunState.SUCCEEDED:
            return  # the plan stays: the next run resumes every slice from its position
        try:
            target = self._open(self.spec.target.type, self.spec.target.content)
            if not isinstance(target, Positions):
                return
            target.configure(self.spec.detail.target_message)
            target.save_position(slices.plan_key(self.spec.task_id), json.dumps({"done": True}))
            target.commit()
        except Exception:
            log.exception("run %s: marking its parent's slice plan done failed", self.claim.run_id)
        finally:
            self._close_connectors()

    def _with_restart_note(self, remarks: str) -> str:
        """A failed run of a started REALTIME task says when the supervisor tries again."""
        if not self.spec.follows_source:
            return remarks
        try:
            if not runs.wanted_running(self.db, self.spec.task_id):
                return remarks
            failures = runs.failed_in_a_row(self.db, self.spec.task_id) + 1
        except Exception:  # the note is a courtesy: a metadata hiccup must not lose the failure
            log.exception("run %s: could not count the task's failed runs", self.claim.run_id)
            return remarks
        return f"{remarks}; {restart_note(self.clock_ms(), failures)}"

    def _start_watermark(self) -> str | None:
        watermark = self.spec.watermark
        if watermark is None and self.spec.detail.incremental_start is not None:
            watermark = str(self.spec.detail.incremental_start)
        return watermark

    def _copy_retrying(self) -> None:
        """`_copy`, tried again after a transient error (outcomes.py) when that cannot write a
        row twice, with exponential backoff and jitter; a stop ends the wait at once."""
        s = self.settings
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(self._worth_retrying),
            stop=tenacity.stop_after_attempt(max(1, s.retry_attempts)),
            wait=tenacity.wait_exponential_jitter(initial=s.retry_initial_s, max=s.retry_max_s),
            sleep=self._pause,
            before_sleep=self._log_retry,
            reraise=True,
        )
        retrying(self._copy_attempt)

    def _pause(self, seconds: float) -> None:
        self.stop_requested.wait(seconds)  # a stop ends the wait; the next try sees it and ends

    def _worth_retrying(self, exc: BaseException) -> bool:
        if not outcome_of(exc).retry or self.stop_requested.is_set():
            return False
        # Repeating must not write a row twice: an incremental read resumes past the last
        # committed batch; a full read starts over, which is safe only if nothing was committed.
        # A message source redelivers what it has not acknowledged.
        return self._committed == 0 or self._sliced or self._resumes_past_commits()

    def _resumes_past_commits(self) -> bool:
        """Whether a later run (or retry) starts after what this one committed instead of from
        the start: an incremental read, or a message source, which redelivers only what it did
        not acknowledge. (A sliced copy resumes each slice from its own position.)"""
        caps = self.registry.capabilities(self.spec.source.type)
        return self.spec.detail.incremental_column is not None or (
            caps is not None and caps.realtime
        )

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "run %s of task %s: %s; trying again in %.1f s (attempt %d of %d)",
            self.claim.run_id,
            self.spec.task_id,
            reason_of(exc) if exc is not None else "failed",
            wait,
            state.attempt_number + 1,
            self.settings.retry_attempts,
            extra={"run_id": self.claim.run_id, "task_id": self.spec.task_id},
        )

    def _copy_attempt(self) -> None:
        self._close_connectors()  # a retry starts on fresh connections
        self._copy()

    def _close_connectors(self) -> None:
        connectors, self._connectors = self._connectors, []
        for connector in connectors:
            with contextlib.suppress(Exception):
                connector.close()

    def _open(self, endpoint_type: str, content: dict[str, Any]) -> Connector:
        connector = self.registry.open(endpoint_type, content)
        self._connectors.append(connector)
        if self.forced.is_set():
            connector.cancel()
        return connector

    def _copy(self) -> None:
        spec, detail = self.spec, self.spec.detail
        caps = self.registry.capabilities(spec.source.type)
        follows = caps is not None and caps.realtime  # a message source: its own change feed
        if (
            spec.task_type is TaskType.REALTIME
            and detail.incremental_column is None
            and not follows
        ):
            raise ConnectorError(
                "a REALTIME task needs sourceSelectedDatasource.incremental: it follows new rows "
                "past a watermark column"
            )
        source = self._open(spec.source.type, spec.source.content)
        target = self._open(spec.target.type, spec.target.content)
        source.configure(detail.source_message)
        target.configure(detail.target_message)
        schema = source.describe(detail.source_table)
        columns = detail.columns or schema.names
        renames = {m.source: m.target for m in detail.mappings}
        missing = [c for c in (*columns, *renames) if c not in schema.names]
        if missing:
            raise ConnectorError(f"source table {detail.source_table} has no column {missing[0]!r}")
        write_plan = WritePlan(
            table=detail.target_table,
            columns=tuple(detail.target_name(c) for c in columns),
            write_mode=WriteMode(detail.write_mode),
            key_columns=detail.key_columns,
            create_table=detail.create_table,
            source_schema=schema.select(columns, renames=renames),
            keeps_committed=self._resumes_past_commits(),
        )
        if self.claim.slice_index is not None:  # a slice run of a parallel copy
            self._sliced = True
            self._copy_child(source, target, self.claim.slice_index, tuple(columns), write_plan)
            return
        # Under steps, a whole-table copy goes as one key-range slice: it then resumes past
        # what it committed, so it too executes as steps instead of holding its message.
        key = slices.split_key(
            detail, spec.task_type, follows, source, target, schema, resumable=self.step_s > 0
        )
        if key is not None:
            self._sliced = True
            self._copy_sliced(source, target, key, tuple(columns), write_plan)
            return
        if detail.parallelism > 1:
            log.info(
                "run %s of task %s: copied as one slice (parallelism needs a TIMING copy without "
                "incremental, from a SQL table with a single integer key, into a SQL table)",
                self.claim.run_id,
                spec.task_id,
                extra={"run_id": self.claim.run_id, "task_id": spec.task_id},
            )
        self._positions = None
        if detail.incremental_column is not None and isinstance(target, Positions):
            self._positions = target
            self._watermark = self._resume_at(target)
        target.prepare_target(write_plan)
        passthrough = _passthrough(source, target, detail.source_table, columns, write_plan)
        watermark, totals = self._watermark, self._totals
        lane = _Lane(self._positions, spec.task_id)
        while not self.stop_requested.is_set():
            read_plan = ReadPlan(
                table=detail.source_table,
                columns=tuple(columns),
                where=detail.where,
                incremental_column=detail.incremental_column,
                watermark=watermark,
                batch_rows=self.settings.batch_rows,
                batch_seconds=self.settings.batch_seconds,
                follow=follows and spec.task_type is TaskType.REALTIME,
                consumer=spec.task_id,
            )
            if passthrough is not None:
                watermark = self._raw_pass(
                    source, target, read_plan, passthrough, write_plan, totals, watermark, lane
                )
            else:
                watermark = self._pass(
                    source, target, read_plan, write_plan, totals, watermark, lane
                )
            if self._stepped:
                return
            if not spec.follows_source:
                if self._committed == 0 and totals.dirty == 0:
                    # Nothing moved, but the (possibly new) run still records its totals.
                    self._commit(totals, watermark, [], ends_run=True)
                return
            if self._step_over():
                return
            self.stop_requested.wait(self.settings.poll_interval_s)

    def _copy_sliced(
        self,
        source: Connector,
        target: Connector,
        key: str,
        columns: tuple[str, ...],
        write_plan: WritePlan,
    ) -> None:
        """Copy in key-range slices at once, each on its own thread and connections; returns
        when all have ended. The first slice to fail stops the others and fails the run."""
        if not isinstance(source, SqlConnector) or not isinstance(target, Positions):
            raise TypeError("a sliced copy needs a SQL source and a target keeping positions")
        self._aborted.clear()  # a retry's slices start afresh (from their positions)
        plan, states = self._slice_plan(source, target, key, write_plan)
        write_plan = _inserting(write_plan)  # the plan's transaction truncated the target
        todo = [i for i, state in enumerate(states) if state is None or not state.done]
        if todo and self._spreads():
            children = runs.create_children(self.db, self.claim, todo, self.clock_ms())
            if children is None:  # asked to stop meanwhile: the plan stays for the next run
                self.stop_requested.set()
                return
            self._spread = True
            log.info(
                "run %s of task %s: %d of %d key-range slices of %s handed to slice runs %s",
                self.claim.run_id,
                self.spec.task_id,
                len(todo),
                len(plan.ranges),
                key,
                ", ".join(children),
                extra={"run_id": self.claim.run_id, "task_id": self.spec.task_id},
            )
            return
        failures: list[BaseException] = []
        threads = [
            threading.Thread(
                target=self._slice_thread,
                args=(index, plan, state, columns, write_plan, failures),
                name=f"run-{self.claim.run_id[:8]}-slice-{index}",
                daemon=True,
            )
            for index, state in enumerate(states)
            if state is None or not state.done
        ]
        log.info(
            "run %s of task %s: %d of %d key-range slices of %s to copy",
            self.claim.run_id,
            self.spec.task_id,
            len(threads),
            len(plan.ranges),
            key,
            extra={"run_id": self.claim.run_id, "task_id": self.spec.task_id},
        )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        if self.stop_requested.is_set() or self._stepped:
            return  # the plan stays: the next run resumes every slice from its position
        # Every slice reached its end: the next run cuts a new plan.
        target.save_position(slices.plan_key(self.spec.task_id), json.dumps({"done": True}))
        target.commit()
        self._commit(self._totals, None, [], ends_run=True)

    def _spreads(self) -> bool:
        """Whether this run's slices execute as child runs on any worker: a run (not a slice
        run) of a copy asking for parallelism, claimed by a worker of a message broker."""
        return (
            self.claim.owner.startswith(runs.BROKER_OWNER_PREFIX)
            and self.claim.parent_run_id is None
            and self.spec.detail.parallelism > 1
        )

    def _copy_child(
        self,
        source: Connector,
        target: Connector,
        index: int,
        columns: tuple[str, ...],
        write_plan: WritePlan,
    ) -> None:
        """A slice run: the slice `index` of the plan its parent committed in the target, from
        the position the target keeps for it (a takeover or a next step goes on from there)."""
        if not isinstance(target, Positions):
            raise TypeError("a slice run needs a target keeping positions")
        del source  # each slice opens its own connections, as a slice thread does
        task_id = self.spec.task_id
        stored = target.load_position(slices.plan_key(task_id))
        plan = slices.decode_plan(stored)
        if plan is None:
            if stored is not None and json.loads(stored) == {"done": True}:
                return  # its family's last slice ended the plan: this one was done
            raise ConnectorError(f"the key-range slice plan of task {task_id} is gone")
        if index >= len(plan.ranges):
            raise ConnectorError(f"the slice plan of task {task_id} has no slice {index}")
        state = slices.decode_state(target.load_position(slices.slice_key(task_id, index)))
        if state is not None and state.done:
            return  # done before its run could end (a takeover after the last commit)
        log.info(
            "run %s of task %s: key-range slice %d of %d of %s",
            self.claim.run_id,
            task_id,
            index,
            len(plan.ranges),
            plan.key,
            extra={"run_id": self.claim.run_id, "task_id": task_id},
        )
        self._copy_slice(index, plan, state, columns, _inserting(write_plan))

    def _slice_plan(
        self, source: SqlConnector, target: Positions, key: str, write_plan: WritePlan
    ) -> tuple[slices.SlicePlan, list[slices.SliceState | None]]:
        """The unfinished plan this task left in the target, or a new one, committed (with the
        truncation of a `truncate_insert` copy) before any slice starts."""
        if not isinstance(target, Connector):
            raise TypeError("the target must be a connector")
        task_id, detail = self.spec.task_id, self.spec.detail
        wanted = slices.fingerprint(detail, key)
        stored = slices.decode_plan(target.load_position(slices.plan_key(task_id)))
        if stored is not None and stored.fingerprint == wanted and stored.key == key:
            # Resumed even when every slice is done (the run ended before it could say so):
            # copying again would write every row twice into an `insert` target.
            states = [
                slices.decode_state(target.load_position(slices.slice_key(task_id, i)))
                for i in range(len(stored.ranges))
            ]
            log.info(
                "run %s of task %s: resuming its unfinished key-range slices",
                self.claim.run_id,
                task_id,
                extra={"run_id": self.claim.run_id, "task_id": task_id},
            )
            # Not `write_plan`: a `truncate_insert` would truncate what the slices copied.
            target.prepare_target(_inserting(write_plan))
            return stored, states
        bounds = slices.key_bounds(source, detail.source_table, key, detail.where)
        ranges = slices.cut(*bounds, detail.parallelism) if bounds else ()
        plan = slices.SlicePlan(wanted, key, ranges)
        target.prepare_target(write_plan)  # creates the table; truncates, uncommitted
        target.save_position(slices.plan_key(task_id), slices.encode_plan(plan))
        fresh = slices.SliceState(None, done=False)
        for index in range(len(ranges)):
            target.save_position(slices.slice_key(task_id, index), slices.encode_state(fresh))
        target.commit()
        return plan, [fresh] * len(ranges)

    def _slice_thread(
        self,
        index: int,
        plan: slices.SlicePlan,
        state: slices.SliceState | None,
        columns: tuple[str, ...],
        write_plan: WritePlan,
        failures: list[BaseException],
    ) -> None:
        try:
            self._copy_slice(index, plan, state, columns, write_plan)
        except BaseException as exc:  # handed to the run's thread, which raises it
            with self._recording:
                failures.append(exc)
            self._aborted.set()

    def _copy_slice(
        self,
        index: int,
        plan: slices.SlicePlan,
        state: slices.SliceState | None,
        columns: tuple[str, ...],
        write_plan: WritePlan,
    ) -> None:
        """One slice: its keys past its position, up to its range's end, read as an incremental
        read on the key; then its position marked done."""
        spec, detail = self.spec, self.spec.detail
        source = self._open(spec.source.type, spec.source.content)
        target = self._open(spec.target.type, spec.target.content)
        if not isinstance(source, SqlConnector) or not isinstance(target, Positions):
            raise TypeError("a slice needs a SQL source and a target keeping positions")
        source.configure(detail.source_message)
        target.configure(detail.target_message)
        key_range = plan.ranges[index]
        at = state.at if state is not None and state.at is not None else key_range.after
        target.prepare_target(write_plan)
        passthrough = _passthrough(source, target, detail.source_table, columns, write_plan)
        read_plan = ReadPlan(
            table=detail.source_table,
            columns=columns,
            where=slices.upper_bound_where(source, detail.where, plan.key, key_range.upto),
            incremental_column=plan.key,
            watermark=None if at is None else str(at),
            batch_rows=self.settings.batch_rows,
            batch_seconds=self.settings.batch_seconds,
        )
        lane = _Lane(target, slices.slice_key(spec.task_id, index), slice_index=index)
        totals = _Totals()
        watermark = read_plan.watermark
        if passthrough is not None:
            watermark = self._raw_pass(
                source, target, read_plan, passthrough, write_plan, totals, watermark, lane
            )
        else:
            watermark = self._pass(source, target, read_plan, write_plan, totals, watermark, lane)
        with self._recording:
            self._joined(totals)
        if self._halted() or self._stepped:
            return  # its position is where the next run (or step) resumes it
        done = slices.SliceState(None if watermark is None else int(watermark), done=True)
        target.save_position(lane.key, slices.encode_state(done))
        target.commit()

    def _pass(
        self,
        source: Connector,
        target: Connector,
        read_plan: ReadPlan,
        write_plan: WritePlan,
        totals: _Totals,
        watermark: str | None,
        lane: _Lane,
    ) -> str | None:
        """One read of the source past `watermark`; returns the new watermark."""
        batches = source.read(read_plan)
        backlog = BACKLOGS.sampler(self.spec.task_id, self.spec.source.type)
        while True:
            started = time.perf_counter()
            batch: Batch | None = next(batches, None)
            totals.read_ms += (time.perf_counter() - started) * 1000
            backlog.sample(source.backlog)  # at most once a second (openfdi_source_backlog)
            if batch is None:
                return watermark
            if not batch.rows and not batch.refused and not batch.last:
                if self._halted() or self._step_over():  # an idle following read: a chance
                    return watermark  # to stop, or to end the step
                continue
            started = time.perf_counter()
            before = watermark
            if read_plan.incremental_column is not None:
                watermark = watermark_text(batch.position)
            # The position first: it opens the target's transaction, so the write joins it. A
            # driver's transaction block opened on an idle connection commits at its end
            # (psycopg's `transaction()`): written after, the position would commit apart.
            lane.save(before, watermark)
            result = target.write(batch, write_plan)
            target.commit()
            totals.write_ms += (time.perf_counter() - started) * 1000
            # The read's last batch ends a run that does not follow its source (a slice's
            # does not: the others may go on).
            ends_run = batch.last and not self.spec.follows_source and lane.slice_index is None
            written, nbytes, rejected = result.rows_written, batch.nbytes, result.rejected
            rejected = [*batch.refused, *rejected] if batch.refused else rejected
            acknowledge = batch.acknowledge
            del batch, result  # not kept alive while the next batch is read
            self._record(totals, written, nbytes, rejected, lane.checkpoint(watermark), ends_run)
            if acknowledge is not None:
                acknowledge()  # only now may the source forget the batch (target, checkpoint)
            # The batch that ends the run is checkpointed with its end: no step ends there.
            if self._halted() or (not ends_run and self._step_over()):
                return watermark

    def _raw_pass(
        self,
        source: Connector,
        target: Connector,
        read_plan: ReadPlan,
        form: tuple[str, ...],
        write_plan: WritePlan,
        totals: _Totals,
        watermark: str | None,
        lane: _Lane,
    ) -> str | None:
        """`_pass` by pass-through: slices move as bytes; a refused one goes the row path."""
        if not isinstance(source, PassThrough) or not isinstance(target, PassThrough):
            raise TypeError("a pass-through needs PassThrough connectors at both ends")
        with contextlib.closing(source.read_raw(read_plan, form)) as slices:
            while True:
                started = time.perf_counter()
                raw = next(slices, None)
                totals.read_ms += (time.perf_counter() - started) * 1000
                if raw is None:
                    return watermark
                started = time.perf_counter()
                rejected: list[RejectedRow] = []
                timed = _TimedSlice(raw)
                at = watermark
                if read_plan.incremental_column is not None:
                    at = watermark_text(raw.position)
                lane.save(watermark, at)  # first, as in `_pass`: the slice joins its transaction
                try:
                    written = target.write_raw(timed, write_plan, self._halted)
                    nbytes = raw.nbytes
                except SliceRefusedError as exc:
                    log.info(
                        "run %s: slice refused (%s); writing it row-wise", self.claim.run_id, exc
                    )
                    with contextlib.closing(raw.batches()) as batches:
                        outcome = self._write_rows(batches, target, write_plan)
                    written, nbytes, rejected = outcome if outcome else (None, 0, [])
                if written is None:
                    target.rollback()  # the position saved for the slice goes with it
                    return watermark  # stopped mid-slice: none of it was written (nor committed)
                watermark = at
                target.commit()
                # The target pulls the slice's bytes as it writes: the time the source took
                # to hand them over is reading, the rest writing.
                totals.read_ms += timed.read_ms
                totals.write_ms += (time.perf_counter() - started) * 1000 - timed.read_ms
                self._record(totals, written, nbytes, rejected, lane.checkpoint(watermark))
                if self._halted() or self._step_over():
                    return watermark

    def _resume_at(self, target: Positions) -> str | None:
        """Where this run reads from: the target's committed position when the target is one
        batch ahead of the checkpoint (a crash between their commits), else the checkpoint.

        The target keeps where its last batch was read from and up to. Only a batch read from the
        checkpoint moves the start: any other stored position is from before a change of the task
        (a reset, another source), and the checkpoint decides.
        """
        checkpoint = self._watermark
        stored = target.load_position(self.spec.task_id)
        if stored is None:
            return checkpoint
        try:
            saved = json.loads(stored)
            after, at = saved["after"], saved["at"]
        except (ValueError, TypeError, KeyError):
            return checkpoint  # not ours: written by hand or by another version
        if after == checkpoint and at != checkpoint:
            log.info(
                "run %s of task %s: the target committed past the checkpoint; resuming at %s",
                self.claim.run_id,
                self.spec.task_id,
                at,
                extra={"run_id": self.claim.run_id, "task_id": self.spec.task_id},
            )
            return None if at is None else str(at)
        return checkpoint

    def _write_rows(
        self, batches: Iterable[Batch], target: Connector, write_plan: WritePlan
    ) -> tuple[int, int, list[RejectedRow]] | None:
        """Write batches uncommitted; rows written, bytes and rejected rows, or None if stopped."""
        written = nbytes = 0
        rejected: list[RejectedRow] = []
        for batch in batches:
            if self._halted():
                target.rollback()
                return None
            result = target.write(batch, write_plan)
            written += result.rows_written
            nbytes += batch.nbytes
            rejected.extend(batch.refused)  # what the source could not read (a slice's fallback)
            rejected.extend(result.rejected)
        return written, nbytes, rejected

    def _record(
        self,
        totals: _Totals,
        written: int,
        nbytes: int,
        rejected: list[RejectedRow],
        watermark: str | None,
        ends_run: bool = False,
    ) -> None:
        """Checkpoint a committed batch: totals, watermark and dirty rows; enforce the limit.
        Slices record one at a time, so each checkpoint holds the totals of all before it."""
        with self._recording:
            self._record_locked(totals, written, nbytes, rejected, watermark, ends_run)

    def _record_locked(
        self,
        totals: _Totals,
        written: int,
        nbytes: int,
        rejected: list[RejectedRow],
        watermark: str | None,
        ends_run: bool,
    ) -> None:
        totals = self._joined(totals)
        self._committed += 1
        self._watermark = watermark
        RUNS.batch(self.spec.task_type.value, written, nbytes, len(rejected))
        totals.rows += written
        totals.nbytes += nbytes
        totals.dirty += len(rejected)
        dirty = [
            (json.dumps([_json_value(v) for v in r.row], default=str), r.reason) for r in rejected
        ]
        self._commit(totals, watermark, dirty, ends_run=ends_run)
        limit = self.settings.dirty_limit
        if limit and totals.dirty > limit:
            raise DirtyLimitExceeded(
                f"{totals.dirty} rows were rejected by the target, more than the limit "
                f"of {limit}; first reason: {rejected[0].reason if rejected else ''}"
            )

    def _joined(self, totals: _Totals) -> _Totals:
        """The run's totals, with a slice's reading and writing time moved into them (each
        slice times its own work; only rows recorded under the lock are the run's)."""
        if totals is not self._totals:
            self._totals.read_ms += totals.read_ms
            self._totals.write_ms += totals.write_ms
            totals.read_ms = totals.write_ms = 0.0
        return self._totals

    def _commit(
        self,
        totals: _Totals,
        watermark: str | None,
        dirty: list[tuple[str, str]],
        *,
        ends_run: bool = False,
    ) -> None:
        """Record a committed batch; the one that ends the run is held for `finish`, which
        writes it in its own transaction: the order target, checkpoint, run state still holds,
        with one metadata commit fewer (most scheduled runs are a single batch)."""
        checkpoint = runs.Checkpoint(self.spec.task_id, totals.progress(), watermark, dirty)
        if ends_run:
            self._held = checkpoint
        else:
            runs.commit_progress(self.db, self.claim, checkpoint, self.clock_ms())


def _inserting(plan: WritePlan) -> WritePlan:
    """`plan`, inserting where it would truncate first."""
    if plan.write_mode is not WriteMode.TRUNCATE_INSERT:
        return plan
    return dataclasses.replace(plan, write_mode=WriteMode.INSERT)


class _TimedSlice(RawSlice):
    """A slice whose `chunks()` count the time spent producing them (the source's reading)."""

    def __init__(self, raw: RawSlice) -> None:
        self._raw = raw
        self.form = raw.form
        self.position = raw.position
        self.read_ms = 0.0

    def chunks(self) -> Generator[bytes, None, None]:
        with contextlib.closing(self._raw.chunks()) as chunks:
            while True:
                started = time.perf_counter()
                chunk = next(chunks, None)
                self.read_ms += (time.perf_counter() - started) * 1000
                if chunk is None:
                    return
                self.nbytes += len(chunk)
                yield chunk
                del chunk

    def batches(self) -> Generator[Batch, None, None]:
        return self._raw.batches()


def _passthrough(
    source: Connector,
    target: Connector,
    table: str,
    columns: Sequence[str],
    write_plan: WritePlan,
) -> tuple[str, ...] | None:
    """The form both ends can pass these columns through in (the source's preferred one that
    the target accepts), or None."""
    if not isinstance(source, PassThrough) or not isinstance(target, PassThrough):
        return None
    if write_plan.columns is None:
        return None
    accepted = target.passthrough_forms(write_plan.table, write_plan.columns, as_target=True)
    offered = source.passthrough_forms(table, columns, as_target=False) if accepted else ()
    return next((form for form in offered if form in accepted), None)
