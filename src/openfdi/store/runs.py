"""The run lifecycle in the database: create (single flight), claim with a fencing epoch,
renew the lease, record progress, hand a stepped run over to its next step, finish, and close
runs whose lease expired.

Every write by an executor names the epoch it claimed; a newer claim bumps the epoch, so a
zombie executor (paused, partitioned, or presumed dead) can never move a run it no longer owns.

Slice runs (the Celery executor's parallel copies, engine/slices.py): a run cut into key-range
slices hands itself to one child run per unfinished slice (`create_children`), each claimed,
leased and fenced like any run, and waits, executed by nobody, under `CHILDREN_OWNER`. Children
are no runs of the task to single flight (tables.py), and every way a child ends (its `finish`,
its hand-off when stopped, a stop, `expire_leases`) ends the parent in the same transaction when
it was the last: the totals summed, SUCCEEDED only when every child did, FAILED with the failing
slice's remarks when one failed (its siblings are stopped first). A family's rows are locked
together, in id order as every statement locking several runs, so that of two children ending
at once exactly one ends the parent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Connection,
    Text,
    Update,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openfdi.domain.ids import new_hex_id
from openfdi.domain.states import ACTIVE_RUN_STATES, DesiredState, RunState, RunTrigger
from openfdi.store.db import Database
from openfdi.store.tables import CheckpointRow, DirtyRowRow, RunRow, TaskRow

_ACTIVE = tuple(s.value for s in ACTIVE_RUN_STATES)


class RunConflictError(Exception):
    """The task has an active run already (the partial unique index refused a second one)."""


class FencedError(Exception):
    """A newer claim owns the run: this executor must stop writing at once."""


@dataclass(frozen=True, slots=True)
class Claim:
    run_id: str
    epoch: int
    owner: str
    progress: Progress | None = None
    """The run's totals when claimed: a step or a takeover goes on counting from them."""
    parent_run_id: str | None = None
    """A slice run's parent (None: a run of its own); `slice_index` is its slice."""
    slice_index: int | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a committed batch leaves in the metadata: the run's totals so far, the task's
    watermark, and the rows the target refused (JSON text and reason)."""

    task_id: str
    progress: Progress
    watermark: str | None
    dirty: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Progress:
    """Totals of a run so far; written with the epoch guard."""

    data_count: int = 0
    dirty_data_count: int = 0
    data_size_bytes: int = 0
    read_ms: int = 0
    write_ms: int = 0
    remarks: str | None = None
    """What the run says of itself so far (a composite task's counts and lag); None keeps the
    run's remarks as they are. `finish` writes the final ones."""


class NotChecked:
    """`create_run`'s default: the newest run is not checked."""


NOT_CHECKED = NotChecked()


def create_run(
    db: Database,
    task_id: str,
    trigger: RunTrigger,
    now_ms: int,
    fire_time: int | None = None,
    *,
    newest_seen: int | NotChecked | None = NOT_CHECKED,
) -> str:
    """Insert a run in state `starting`; RunConflictError if one is active for the task, or
    when `newest_seen` is given (the created_at of the task's newest run of `trigger` when the
    caller decided to start one, None for none) and a newer one exists: the decision was made
    on what is no longer so (the supervisor read "no run yet", then another pass started a
    run that failed at once; without the check it started another at once, not after its
    backoff)."""
    run_id = new_hex_id()
    try:
        with db.write() as session:
            if not isinstance(newest_seen, NotChecked):
                newest = session.execute(
                    select(func.max(RunRow.created_at)).where(
                        RunRow.task_id == task_id, RunRow.trigger == RunTrigger(trigger).value
                    )
                ).scalar()
                if newest != newest_seen:
                    raise RunConflictError(task_id)
            session.add(
                RunRow(
                    id=run_id,
                    task_id=task_id,
                    trigger=RunTrigger(trigger).value,
                    fire_time=fire_time,
                    state=RunState.STARTING.value,
                    epoch=0,
                    created_at=now_ms,
                )
            )
    except IntegrityError as exc:
        raise RunConflictError(task_id) from exc
    return run_id


# The statements of a run's hot path are built once: building and cache-keying a statement
# costs SQLAlchemy more than executing it, and every scheduled fire runs each of them.
BROKER_OWNER_PREFIX = "celery:"
"""Lease owners whose runs a message broker carries (the Celery executor, engine/celery_queue.py):
the broker holds a run's message until the run ends and delivers it again should its worker be
lost, so such a run whose lease lapsed is taken over by the next claim (`claim`), and
`expire_leases` leaves it to that claim for a grace before closing it."""
STEP_OWNER_PREFIX = f"{BROKER_OWNER_PREFIX}step:"
"""Lease owners executing runs as bounded steps (OPENFDI_CELERY_STEP_SECONDS): each step's
message stays in the broker until the step ends, so every run they hold is carried, a started
REALTIME task's included."""
HANDOFF_OWNER = f"{STEP_OWNER_PREFIX}handoff"
"""The lease owner of a run between two steps (`hand_off`): nobody executes it, and only the
message published for its next step may claim it."""
_CARRIED = RunRow.lease_owner.startswith(BROKER_OWNER_PREFIX, autoescape=True) & (
    (RunRow.trigger != RunTrigger.SUPERVISOR.value)
    | RunRow.lease_owner.startswith(STEP_OWNER_PREFIX, autoescape=True)
)
"""A run whose message stays in the broker until it ends (or its step does): any but the
supervisor's REALTIME runs executed whole, whose message is acknowledged once they follow their
source (they never end by themselves)."""
_HANDED_OFF = (RunRow.state == RunState.RUNNING.value) & (RunRow.lease_owner == HANDOFF_OWNER)
CHILDREN_OWNER = f"{BROKER_OWNER_PREFIX}slices"
"""The lease owner of a run whose slices execute as child runs (`create_children`), without a
lease: nobody executes it, and its last child ends it. Children wait for their first claim under
it too (not NULL: no executor polling for unclaimed runs takes them)."""
_AWAITS_CHILDREN = (
    RunRow.parent_run_id.is_(None)
    & RunRow.state.in_(_ACTIVE)
    & (func.coalesce(RunRow.lease_owner, "") == CHILDREN_OWNER)
)
_IS_CHILD = RunRow.parent_run_id.is_not(None)

_GUARD = and_(
    RunRow.id == bindparam("g_run_id"),
    RunRow.epoch == bindparam("g_epoch"),
    RunRow.state.in_(_ACTIVE),
)
_CLAIM = (
    update(RunRow)
    .where(
        RunRow.id == bindparam("g_run_id"),
        or_(
            RunRow.state == RunState.STARTING.value,
            # A broker-carried run whose owner stopped renewing: its message came again.
            (RunRow.state == RunState.RUNNING.value)
            & _CARRIED
            & (RunRow.lease_expires_at < bindparam("p_now"))
            & (RunRow.lease_owner != HANDOFF_OWNER),
            # A run between two steps: only its next step's message takes it (a duplicate
            # of an earlier step's message would start a second chain of steps).
            _HANDED_OFF & (RunRow.epoch == bindparam("p_after")),
        ),
    )
    .values(
        epoch=RunRow.epoch + 1,
        lease_owner=bindparam("p_owner"),
        lease_expires_at=bindparam("p_expires"),
        state=RunState.RUNNING.value,
        started_at=func.coalesce(RunRow.started_at, bindparam("p_now")),
    )
    .returning(
        RunRow.epoch,
        RunRow.data_count,
        RunRow.dirty_data_count,
        RunRow.data_size_bytes,
        RunRow.read_ms,
        RunRow.write_ms,
        RunRow.parent_run_id,
        RunRow.slice_index,
    )
)
# The owner too: a renewal racing the hand-off to the next step must not take the run back.
_RENEW = (
    update(RunRow)
    .where(_GUARD, RunRow.lease_owner == bindparam("p_owner"))
    .values(lease_expires_at=bindparam("p_expires"))
)
_HAND_OFF = (
    update(RunRow)
    .where(_GUARD, RunRow.lease_owner == bindparam("p_owner"))
    .values(
        # Asked to stop meanwhile: the step that just ended was its last.
        state=case(
            (RunRow.state == RunState.STOPPING.value, RunState.CANCELLED.value),
            else_=RunState.RUNNING.value,
        ),
        ended_at=case(
            (RunRow.state == RunState.STOPPING.value, bindparam("p_now")), else_=RunRow.ended_at
        ),
        remarks=case((RunRow.state == RunState.STOPPING.value, "stopped"), else_=RunRow.remarks),
        position_status=case(
            (RunRow.state == RunState.STOPPING.value, "RUNTIME_CANCEL"),
            else_=RunRow.position_status,
        ),
        lease_owner=case(
            (RunRow.state == RunState.STOPPING.value, RunRow.lease_owner), else_=HANDOFF_OWNER
        ),
        lease_expires_at=case(
            (RunRow.state == RunState.STOPPING.value, None), else_=bindparam("p_lapsed")
        ),
    )
    .returning(RunRow.state)
)
_PROGRESS = (
    update(RunRow)
    .where(_GUARD)
    .values(
        data_count=bindparam("p_rows"),
        dirty_data_count=bindparam("p_dirty"),
        data_size_bytes=bindparam("p_bytes"),
        read_ms=bindparam("p_read_ms"),
        write_ms=bindparam("p_write_ms"),
        position=bindparam("p_position"),
        remarks=func.coalesce(bindparam("p_progress_remarks", type_=Text), RunRow.remarks),
    )
)
_FINISH = (
    update(RunRow)
    .where(_GUARD)
    .values(
        state=bindparam("p_state"),
        ended_at=bindparam("p_now"),
        remarks=bindparam("p_remarks"),
        position_status=bindparam("p_status"),
        # lease_owner stays: which executor ran the run to its end (one of several hosts).
        lease_expires_at=None,
    )
)
_CHECKPOINT_MOVE = (
    update(CheckpointRow)
    .where(CheckpointRow.task_id == bindparam("p_task_id"))
    .values(
        watermark=bindparam("p_watermark"),
        run_id=bindparam("g_run_id"),
        updated_at=bindparam("p_now"),
    )
)
_CHECKPOINT_FIRST = insert(CheckpointRow).values(
    task_id=bindparam("p_task_id"),
    watermark=bindparam("p_watermark"),
    run_id=bindparam("g_run_id"),
    updated_at=bindparam("p_now"),
)


def _guard(claim_: Claim) -> dict[str, object]:
    """Only the claimed epoch may write, and only while the run is active."""
    return {"g_run_id": claim_.run_id, "g_epoch": claim_.epoch}


def claim(
    db: Database, run_id: str, owner: str, now_ms: int, lease_ms: int, *, after: int = 0
) -> Claim | None:
    """Take a `starting` run: bump its epoch, set the lease, mark it running. None if taken.

    A `running` run carried by a broker (`BROKER_OWNER_PREFIX`) whose lease lapsed is taken
    over the same way: the new epoch fences its lost owner out, and the run goes on from its
    last checkpoint. A run handed off between two steps (`hand_off`) is taken only by the
    message of its next step, published `after` the epoch that ended the step before. One
    guarded UPDATE RETURNING the new epoch: the row lock it takes makes two claimers race
    safely. The claim carries the run's totals so far: its steps count as one run.
    """
    params = {
        "g_run_id": run_id,
        "p_owner": owner,
        "p_expires": now_ms + lease_ms,
        "p_now": now_ms,
        "p_after": after,
    }
    with db.write_conn() as conn:
        row = conn.execute(_CLAIM, params).first()
    if row is None:
        return None
    epoch, rows, dirty, nbytes, read_ms, write_ms = (v or 0 for v in row[:6])
    progress = Progress(rows, dirty, nbytes, read_ms, write_ms)
    return Claim(run_id, epoch, owner, progress, row.parent_run_id, row.slice_index)


def reserve_unclaimed(
    db: Database, owner: str, limit: int, now_ms: int, lease_ms: int
) -> list[tuple[str, str]]:
    """Reserve for `owner` the oldest runs nobody has claimed or reserved; their
    (run_id, task_id). One statement, so executors polling side by side never take the same
    run: on PostgreSQL rows another is reserving are skipped (SKIP LOCKED) and the outer
    conditions are checked again after any lock wait; SQLite runs one writer at a time."""
    oldest = (
        select(RunRow.id)
        .where(RunRow.state == RunState.STARTING.value, RunRow.lease_owner.is_(None))
        .order_by(RunRow.created_at)
        .limit(limit)
        .with_for_update(key_share=True, skip_locked=True)
        .scalar_subquery()
    )
    with db.write_conn() as conn:
        rows = conn.execute(
            update(RunRow)
            .where(
                RunRow.id.in_(oldest),
                RunRow.state == RunState.STARTING.value,
                RunRow.lease_owner.is_(None),
            )
            .values(lease_owner=owner, lease_expires_at=now_ms + lease_ms)
            .returning(RunRow.id, RunRow.task_id, RunRow.created_at)
        ).all()
    return [(run_id, task_id) for run_id, task_id, _ in sorted(rows, key=lambda r: r[2])]


def reserve(db: Database, run_ids: list[str], owner: str, now_ms: int, lease_ms: int) -> list[str]:
    """Mark queued (`starting`) runs as this executor's until `now_ms + lease_ms`, so that
    `expire_leases` does not close them for never having been claimed; the ids still queued
    (the others were claimed or ended meanwhile)."""
    if not run_ids:
        return []
    queued = (RunRow.id.in_(run_ids), RunRow.state == RunState.STARTING.value)
    with db.write_conn() as conn:
        ids = _locked(conn, *queued)  # in id order, as every statement locking several runs
        if ids:
            conn.execute(
                update(RunRow)
                .where(RunRow.id.in_(ids), *queued)
                .values(lease_owner=owner, lease_expires_at=now_ms + lease_ms)
            )
    return ids


def renew(db: Database, claim_: Claim, now_ms: int, lease_ms: int) -> None:
    params = {**_guard(claim_), "p_owner": claim_.owner, "p_expires": now_ms + lease_ms}
    with db.write_conn() as conn:
        result = conn.execute(_RENEW, params)
        if result.rowcount != 1:
            raise FencedError(claim_.run_id)


def hand_off(db: Database, claim_: Claim, now_ms: int) -> RunState:
    """End the claim's step without ending the run (the Celery executor's bounded steps): the
    run stays `running`, its lease lapsed under `HANDOFF_OWNER`, for the message of its next
    step (published before, `claim(after=claim_.epoch)`) to claim at once. A run asked to stop
    meanwhile ends `cancelled` instead. The state it is left in; FencedError if a newer claim
    owns it."""
    params = {**_guard(claim_), "p_owner": claim_.owner, "p_now": now_ms, "p_lapsed": now_ms - 1}
    parent = claim_.parent_run_id
    with db.write_conn() as conn:
        if parent is not None:
            _lock_family(conn, parent)
        state = conn.execute(_HAND_OFF, params).scalar_one_or_none()
        if state is None:
            raise FencedError(claim_.run_id)
        if parent is not None and state != RunState.RUNNING.value:
            _close_parent(conn, parent, now_ms)  # a stopped slice: maybe the family's last
    return RunState(state)


def record_progress(
    session: Session | Connection, claim_: Claim, progress: Progress, position: str
) -> None:
    """Write the run's totals inside the caller's transaction (the checkpoint's transaction)."""
    params = {
        **_guard(claim_),
        "p_rows": progress.data_count,
        "p_dirty": progress.dirty_data_count,
        "p_bytes": progress.data_size_bytes,
        "p_read_ms": progress.read_ms,
        "p_write_ms": progress.write_ms,
        "p_position": position,
        "p_progress_remarks": progress.remarks,
    }
    result = session.execute(_PROGRESS, params)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise FencedError(claim_.run_id)


def finish(
    db: Database,
    claim_: Claim,
    state: RunState,
    now_ms: int,
    remarks: str | None = None,
    position_status: str | None = None,
    *,
    last_batch: Checkpoint | None = None,
    before_parent_ends: Callable[[RunState], None] | None = None,
) -> ParentEnd | None:
    """End the run in a final state; FencedError if a newer claim owns it.

    `last_batch`: the checkpoint of the run's last committed batch, written in the same
    transaction (a short scheduled run then costs one metadata commit fewer).

    A slice run (`Claim.parent_run_id`) that fails stops its siblings; the last of a family to
    end ends the parent as well (`_close_parent`), and says so: how the parent ended. Should it,
    `before_parent_ends` is called first, with the parent's state, inside this transaction
    (holding the family's rows): what must be written elsewhere before the parent ends.
    """
    if state.is_active:
        raise ValueError(f"{state} is not a final state")
    params = {
        **_guard(claim_),
        "p_state": state.value,
        "p_now": now_ms,
        "p_remarks": remarks,
        "p_status": position_status,
    }
    parent = claim_.parent_run_id
    with db.write_conn() as conn:
        if parent is not None:
            _lock_family(conn, parent)
        if last_batch is not None:
            _write_checkpoint(conn, claim_, last_batch, now_ms)
        if conn.execute(_FINISH, params).rowcount != 1:
            raise FencedError(claim_.run_id)
        if parent is None:
            return None
        if state is RunState.FAILED:  # the parent fails once the others have stopped
            conn.execute(
                _stop(RunRow.parent_run_id == parent, now_ms, now_ms + SIBLING_STOP_DEADLINE_MS)
            )
        return _close_parent(conn, parent, now_ms, before_parent_ends)


SIBLING_STOP_DEADLINE_MS = 4_000
"""How long the siblings of a failed slice run may stay `stopping` (the executor's stop
deadline, its abandon margin and a second more, as a user's stop gets)."""


@dataclass(frozen=True, slots=True)
class ParentEnd:
    """How a slice run's parent ended, as the last of its children ended it."""

    run_id: str
    state: RunState
    elapsed_ms: int


def create_children(
    db: Database, claim_: Claim, slice_indexes: list[int], now_ms: int
) -> list[str] | None:
    """Hand the claimed run to one child run per slice (their ids, in slice order), in one
    transaction: the children wait `starting` for their messages' claims, and the run stays
    `running` under `CHILDREN_OWNER` without a lease, executed by nobody, until its last child
    ends it. None, creating nothing, when the run was asked to stop meanwhile; FencedError if
    a newer claim owns it."""
    params = {**_guard(claim_), "p_owner": claim_.owner}
    with db.write_conn() as conn:
        row = conn.execute(
            update(RunRow)
            .where(
                _GUARD,
                RunRow.state == RunState.RUNNING.value,
                RunRow.lease_owner == bindparam("p_owner"),
            )
            .values(lease_owner=CHILDREN_OWNER, lease_expires_at=None)
            .returning(RunRow.task_id, RunRow.trigger),
            params,
        ).first()
        if row is None:
            state = conn.scalar(select(RunRow.state).where(_GUARD), params)
            if state == RunState.STOPPING.value:
                return None
            raise FencedError(claim_.run_id)
        ids = [new_hex_id() for _ in slice_indexes]
        if ids:
            conn.execute(
                insert(RunRow),
                [
                    {
                        "id": child_id,
                        "task_id": row.task_id,
                        "trigger": row.trigger,
                        "fire_time": None,
                        "state": RunState.STARTING.value,
                        "epoch": 0,
                        "lease_owner": CHILDREN_OWNER,
                        "created_at": now_ms,
                        "parent_run_id": claim_.run_id,
                        "slice_index": index,
                    }
                    for child_id, index in zip(ids, slice_indexes, strict=True)
                ],
            )
    return ids


def queued_children(db: Database, parent_run_id: str) -> list[str]:
    """The parent's children no executor has claimed yet, in slice order: those whose messages
    (maybe) were never published."""
    query = (
        select(RunRow.id)
        .where(RunRow.parent_run_id == parent_run_id, RunRow.state == RunState.STARTING.value)
        .order_by(RunRow.slice_index)
    )
    with db.lookup() as conn:
        return list(conn.scalars(query))


def long_queued_children(db: Database, created_before_ms: int, limit: int = 1000) -> list[str]:
    """Slice runs of any run still unclaimed that were created before `created_before_ms`,
    oldest first: those whose messages the broker may have lost."""
    query = (
        select(RunRow.id)
        .where(
            _IS_CHILD,
            RunRow.state == RunState.STARTING.value,
            RunRow.created_at < created_before_ms,
        )
        .order_by(RunRow.created_at, RunRow.id)
        .limit(limit)
    )
    with db.lookup() as conn:
        return list(conn.scalars(query))


def _lock_family(conn: Connection, parent_run_id: str) -> None:
    """Lock a parent and all its children, in id order (`_locked`): whatever ends one of them
    and maybe the parent holds the whole family, so that two such transactions go one after
    the other, and the second sees what the first committed."""
    _locked(conn, or_(RunRow.id == parent_run_id, RunRow.parent_run_id == parent_run_id))


def _close_parent(
    conn: Connection,
    parent_run_id: str,
    now_ms: int,
    before_ending: Callable[[RunState], None] | None = None,
) -> ParentEnd | None:
    """End the parent if none of its children is active any more (the caller holds the
    family's rows): totals summed; FAILED with the first failed slice's remarks if one failed,
    else CANCELLED if one was stopped, else INTERRUPTED if one was, else SUCCEEDED. How it
    ended, or None if it goes on (or had ended)."""
    head = conn.execute(
        select(RunRow.state, RunRow.started_at, RunRow.created_at).where(
            RunRow.id == parent_run_id, _AWAITS_CHILDREN
        )
    ).first()
    if head is None:  # ended, or not a run waiting for children
        return None
    kids = conn.execute(
        select(
            RunRow.slice_index,
            RunRow.state,
            RunRow.remarks,
            RunRow.position_status,
            RunRow.data_count,
            RunRow.dirty_data_count,
            RunRow.data_size_bytes,
            RunRow.read_ms,
            RunRow.write_ms,
        )
        .where(RunRow.parent_run_id == parent_run_id)
        .order_by(RunRow.slice_index)
    ).all()
    if any(k.state in _ACTIVE for k in kids):
        return None
    state, remarks, status = RunState.SUCCEEDED, None, None
    for wanted in (RunState.FAILED, RunState.CANCELLED, RunState.INTERRUPTED):
        first = next((k for k in kids if k.state == wanted.value), None)
        if first is not None:
            state, status = wanted, first.position_status
            remarks = "stopped" if wanted is RunState.CANCELLED else first.remarks
            if wanted is RunState.FAILED:
                remarks = f"slice {first.slice_index}: {first.remarks}"
            break
    if before_ending is not None:
        before_ending(state)
    conn.execute(
        update(RunRow)
        .where(RunRow.id == parent_run_id)
        .values(
            state=state.value,
            ended_at=now_ms,
            remarks=remarks,
            position_status=status,
            data_count=sum(k.data_count or 0 for k in kids),
            dirty_data_count=sum(k.dirty_data_count or 0 for k in kids),
            data_size_bytes=sum(k.data_size_bytes or 0 for k in kids),
            read_ms=sum(k.read_ms or 0 for k in kids),
            write_ms=sum(k.write_ms or 0 for k in kids),
            position="WRITER" if kids else RunRow.position,
            lease_expires_at=None,
            stop_deadline_at=None,
        )
    )
    started = head.started_at or head.created_at
    return ParentEnd(parent_run_id, state, max(0, now_ms - started))


def _close_parents(conn: Connection, stopped: list[tuple[str, str | None]], now_ms: int) -> None:
    """After a statement ended or stopped runs (their ids and parents): end the parents whose
    last child that was (or that, waiting for children, have none active left)."""
    parents = {parent for _, parent in stopped if parent is not None}
    parents |= {run_id for run_id, parent in stopped if parent is None}
    for parent in sorted(parents):
        _close_parent(conn, parent, now_ms)


def _stop(task_filter: ColumnElement[bool], now_ms: int, deadline_ms: int) -> Update:
    """The stop request, as ONE statement over the matching tasks' active runs.

    A run nobody has claimed yet (`starting`, queued in an executor) moved no data: it ends
    `cancelled` here and then, and its executor's claim finds nothing to take; so does a run
    between two steps (`hand_off`), whose committed steps stay. A claimed run
    goes `stopping` with a stop deadline: its owner sees that and stops, and by the deadline
    `expire_leases` ends it CANCELLED whoever holds it. A run already stopping keeps its
    deadline (a second stop does not postpone the first).

    One statement, not one per state: under READ COMMITTED each statement sees the runs
    committed before it began, so a second UPDATE caught runs created after the first and
    moved them from `starting` straight to `stopping`, where nothing ever ended them. A single
    UPDATE decides each row from the version it locks (PostgreSQL re-reads a row a concurrent
    claim changed meanwhile), so each run goes exactly one way.
    """
    starting = RunRow.state == RunState.STARTING.value
    stopping = RunRow.state == RunState.STOPPING.value
    idle = starting | _HANDED_OFF
    return (
        update(RunRow)
        .where(task_filter, RunRow.state.in_(_ACTIVE))
        .values(
            state=case((idle, RunState.CANCELLED.value), else_=RunState.STOPPING.value),
            ended_at=case((idle, now_ms), else_=RunRow.ended_at),
            remarks=case(
                (starting, "stopped before it started"),
                (_HANDED_OFF, "stopped between two steps"),
                else_=RunRow.remarks,
            ),
            position_status=case((idle, "RUNTIME_CANCEL"), else_=RunRow.position_status),
            # A handed-off run keeps the owner of its last step, and the epoch moves on: the
            # message of its next step finds nothing to claim.
            epoch=case((_HANDED_OFF, RunRow.epoch + 1), else_=RunRow.epoch),
            lease_owner=case((starting, None), else_=RunRow.lease_owner),
            lease_expires_at=case((idle, None), else_=RunRow.lease_expires_at),
            stop_deadline_at=case(
                (idle, None), (stopping, RunRow.stop_deadline_at), else_=deadline_ms
            ),
        )
        .returning(RunRow.id, RunRow.parent_run_id)
    )


def request_stop(db: Database, task_id: str, now_ms: int, deadline_ms: int) -> list[str]:
    """Stop the task's active run; its id (or nothing). See `_stop` and `request_stop_many`."""
    with db.write_conn() as conn:
        return request_stop_many(conn, [task_id], now_ms, deadline_ms)


def request_stop_many(
    conn: Connection, task_ids: list[str], now_ms: int, deadline_ms: int
) -> list[str]:
    """`request_stop` for several tasks, in the caller's transaction (a batch stop); the ids of
    the runs stopped (not of their slice runs).

    Their runs are locked first, in id order, as every statement locking several runs does
    (`_locked`), so that two such transactions never wait for each other in a cycle. A run
    whose slices execute as child runs stops with them: its children still queued end at once,
    the others go `stopping` with it; and it ends there and then if none is left active.
    """
    if not task_ids:
        return []
    active = (RunRow.task_id.in_(task_ids), RunRow.state.in_(_ACTIVE))
    ids = _locked(conn, *active)
    if not ids:
        return []
    stopped = conn.execute(_stop(RunRow.id.in_(ids), now_ms, now_ms + deadline_ms)).all()
    _close_parents(conn, [(run_id, parent) for run_id, parent in stopped], now_ms)
    return [run_id for run_id, parent in stopped if parent is None]


def _locked(conn: Connection, *where: ColumnElement[bool], skip_locked: bool = False) -> list[str]:
    """Lock the runs matching `where` in id order (PostgreSQL; SQLite has one writer) and
    return their ids. FOR NO KEY UPDATE is the lock an UPDATE of non-key columns takes anyway;
    unlike FOR UPDATE it lets rows referencing the run (dirty rows) be inserted meanwhile."""
    query = (
        select(RunRow.id)
        .where(*where)
        .order_by(RunRow.id)
        .with_for_update(key_share=True, skip_locked=skip_locked)
    )
    return list(conn.scalars(query))


def expire_leases(db: Database, now_ms: int, starting_grace_ms: int) -> list[str]:
    """End the runs whose time is up, in one UPDATE: a `stopping` run past its stop deadline
    ends CANCELLED whoever holds it; a lease (or a queued run's reservation) past its expiry,
    or a run neither claimed nor reserved within the grace, ends INTERRUPTED (its owner is
    gone). Every active state thus has an exit with a deadline (domain/states.py).

    Bumping the epoch fences the old owner, should it wake up again. On PostgreSQL the rows
    are locked in id order, skipping those another transaction holds (a concurrent pass, a
    stop, a finish): they are decided by that one or by the next pass, and two passes never
    deadlock.
    """
    stop_overdue = (RunRow.state == RunState.STOPPING.value) & (
        func.coalesce(RunRow.stop_deadline_at, 0) < now_ms
    )
    # A broker-carried run's message is delivered again when its worker is lost: the claim of
    # that delivery gets `starting_grace_ms` beyond the lease to take the run over.
    lapsed_by = case((_CARRIED, now_ms - starting_grace_ms), else_=now_ms)
    lease_lapsed = RunRow.lease_expires_at.is_not(None) & (RunRow.lease_expires_at < lapsed_by)
    never_claimed = (
        (RunRow.state == RunState.STARTING.value)
        & RunRow.lease_expires_at.is_(None)
        & (RunRow.created_at < now_ms - starting_grace_ms)
    )
    # A slice run waits in the broker for a free worker as long as it takes (its message is
    # acknowledged late, and comes back if lost with its worker); its parent, executed by
    # nobody, is ended by its last child.
    never_claimed = never_claimed & RunRow.parent_run_id.is_(None)
    due = and_(
        RunRow.state.in_(_ACTIVE),
        or_(stop_overdue, lease_lapsed, never_claimed),
        func.coalesce(RunRow.lease_owner, "") != CHILDREN_OWNER,
    )
    unclaimed = f"interrupted: no executor started the run within {starting_grace_ms // 1000} s"
    with db.write_conn() as conn:
        ids = _locked(conn, due, skip_locked=True)
        if not ids:
            return []
        # A child ends with its parent locked too: a child whose parent another transaction
        # holds is left to the next pass (skipped, never waited for: no cycle of waits).
        kids = conn.execute(
            select(RunRow.id, RunRow.parent_run_id).where(RunRow.id.in_(ids), _IS_CHILD)
        ).all()
        if kids:
            parents = {parent for _, parent in kids}
            held = set(_locked(conn, RunRow.id.in_(parents), skip_locked=True))
            left = {kid for kid, parent in kids if parent not in held}
            ids = [run_id for run_id in ids if run_id not in left]
            if not ids:
                return []
        ended = conn.execute(
            update(RunRow)
            .where(RunRow.id.in_(ids), due)
            .values(
                state=case(
                    (stop_overdue, RunState.CANCELLED.value),
                    else_=RunState.INTERRUPTED.value,
                ),
                epoch=RunRow.epoch + 1,
                ended_at=now_ms,
                remarks=case(
                    (stop_overdue, "stopped at the stop deadline; its executor did not end it"),
                    (lease_lapsed, "interrupted: the executor stopped renewing its lease"),
                    else_=unclaimed,
                ),
                position_status=case((stop_overdue, "RUNTIME_CANCEL"), else_="INTERNAL_ERR"),
                lease_owner=None,
                lease_expires_at=None,
            )
            .returning(RunRow.id, RunRow.parent_run_id)
        ).all()
        _close_parents(conn, [(r.id, r.parent_run_id) for r in ended if r.parent_run_id], now_ms)
        return [run_id for run_id, _ in ended]


def commit_progress(db: Database, claim_: Claim, checkpoint: Checkpoint, now_ms: int) -> None:
    """After the target committed a batch: totals, checkpoint and dirty rows, in one transaction.

    The epoch guard comes first, so a fenced executor changes nothing at all.
    """
    with db.write_conn() as conn:
        _write_checkpoint(conn, claim_, checkpoint, now_ms)


def _write_checkpoint(conn: Connection, claim_: Claim, checkpoint: Checkpoint, now_ms: int) -> None:
    record_progress(conn, claim_, checkpoint.progress, "WRITER")
    if checkpoint.dirty:
        conn.execute(
            insert(DirtyRowRow),
            [
                {"run_id": claim_.run_id, "row": row, "reason": reason, "created_at": now_ms}
                for row, reason in checkpoint.dirty
            ],
        )
    if claim_.parent_run_id is not None:
        return  # a slice's position is in its target; the task's watermark is not its own
    params = {
        **_guard(claim_),
        "p_task_id": checkpoint.task_id,
        "p_watermark": checkpoint.watermark,
        "p_now": now_ms,
    }
    # Single flight: no other run of the task writes this row, so update-else-insert is safe.
    if conn.execute(_CHECKPOINT_MOVE, params).rowcount == 0:
        conn.execute(_CHECKPOINT_FIRST, params)


def load_watermark(db: Database, task_id: str) -> str | None:
    with db.lookup() as conn:
        return conn.execute(
            select(CheckpointRow.watermark).where(CheckpointRow.task_id == task_id)
        ).scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class LeaseView:
    """What a delivered message needs to know of its run before claiming it."""

    task_id: str
    state: RunState
    lease_expires_at: int | None
    epoch: int = 0
    lease_owner: str | None = None

    @property
    def handed_off(self) -> bool:
        """Between two steps: only the next step's message claims it (`claim`)."""
        return self.state is RunState.RUNNING and self.lease_owner == HANDOFF_OWNER

    @property
    def awaits_children(self) -> bool:
        """Handed to its slice runs (`create_children`): its last child ends it."""
        return self.state is RunState.RUNNING and self.lease_owner == CHILDREN_OWNER


def lease_view(db: Database, run_id: str) -> LeaseView | None:
    query = select(
        RunRow.task_id, RunRow.state, RunRow.lease_expires_at, RunRow.epoch, RunRow.lease_owner
    ).where(RunRow.id == run_id)
    with db.lookup() as conn:
        row = conn.execute(query).first()
    return None if row is None else LeaseView(row[0], RunState(row[1]), row[2], row[3], row[4])


def failed_in_a_row(db: Database, task_id: str) -> int:
    """How many of the supervisor's latest ended runs of the task failed in a row: those since
    its last ended run that did not fail, and since the task was last changed (a change is a
    fresh start). Manual runs do not count: the supervisor ignores them."""
    mine = (RunRow.trigger == RunTrigger.SUPERVISOR.value) & RunRow.parent_run_id.is_(None)
    not_failed = select(func.max(RunRow.created_at)).where(
        RunRow.task_id == task_id, mine, RunRow.state.not_in((RunState.FAILED.value, *_ACTIVE))
    )
    changed = select(TaskRow.updated_at).where(TaskRow.id == task_id)
    query = select(func.count()).where(
        RunRow.task_id == task_id,
        mine,
        RunRow.state == RunState.FAILED.value,
        RunRow.created_at > func.coalesce(not_failed.scalar_subquery(), -1),
        RunRow.created_at >= func.coalesce(changed.scalar_subquery(), -1),
    )
    with db.lookup() as conn:
        return int(conn.execute(query).scalar_one())


def wanted_running(db: Database, task_id: str) -> bool:
    """Whether the task's desired state is running (a REALTIME task the supervisor restarts)."""
    with db.lookup() as conn:
        status = conn.execute(select(TaskRow.status).where(TaskRow.id == task_id)).scalar()
    return status == DesiredState.RUNNING.value
