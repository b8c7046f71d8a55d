"""The brake on password guessing: failed sign-ins counted per key (a user name, a client address)
and the locks they earn, in table `signin_throttle`; this module is its only writer.

Layer: store. The caller owns the transaction (`Database.write_conn`). An attempt is counted as
a failure *before* the password is checked (`begin_attempt`) and taken back once it succeeds
(`attempt_succeeded`): so parallel guesses cannot all slip in before the first failure is
written, and at most `max_failures` attempts per key are ever being checked or failed.

Rows are locked by an upsert on PostgreSQL (SQLite's writers are serialised anyway), always the
user's row before the address's, so two sign-ins never wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from openfdi.store.tables import SignInThrottleRow

USER = "user"
ADDRESS = "address"

_R = SignInThrottleRow
_PRUNE_BATCH = 100


@dataclass(frozen=True, slots=True)
class Brake:
    """The rule of one kind of key.

    After `max_failures` failed attempts (0: no limit) the key is locked for `lock_ms`; failures
    are forgotten once `lock_ms` passes without an attempt. `forgets_on_success`: a success
    clears the count (a user's failures must be consecutive); otherwise a success only takes
    back its own attempt (an address's failures, whoever's password they tried).
    """

    max_failures: int
    lock_ms: int
    forgets_on_success: bool


@dataclass(frozen=True, slots=True)
class ThrottleKey:
    kind: str
    subject: str
    brake: Brake


def _row_of(key: ThrottleKey) -> ColumnElement[bool]:
    return (_R.kind == key.kind) & (_R.subject == key.subject)


def _locked_rows(conn: Connection, keys: Sequence[ThrottleKey], now_ms: int) -> list[Any]:
    """Each key's row (failures, last_attempt_at, locked_until), created if missing, locked
    for this transaction.

    One upsert whose update changes nothing: unlike "insert or ignore, then SELECT FOR UPDATE",
    it cannot miss a row that another sign-in deleted between the two statements (PostgreSQL
    retries the insert), and it takes the row lock itself.
    """
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    rows = []
    for key in keys:
        statement = insert(_R).values(
            kind=key.kind,
            subject=key.subject,
            failures=0,
            last_attempt_at=now_ms,
            locked_until=0,
            expires_at=now_ms + key.brake.lock_ms,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[_R.kind, _R.subject], set_={"failures": _R.failures}
        )
        returning = statement.returning(_R.failures, _R.last_attempt_at, _R.locked_until)
        rows.append(conn.execute(returning).one())
    return rows


def _prune(conn: Connection, now_ms: int) -> None:
    # SKIP LOCKED: a row another sign-in holds is left for the next prune, never waited on
    # (waiting here, while holding other rows, could close a cycle with that sign-in).
    expired = (
        select(_R.kind, _R.subject)
        .where(_R.expires_at < now_ms)
        .limit(_PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    conn.execute(delete(_R).where(tuple_(_R.kind, _R.subject).in_(expired)))


def begin_attempt(conn: Connection, keys: Sequence[ThrottleKey], now_ms: int) -> int:
    """Count one attempt against every key, unless a key is locked.

    Returns 0 when the attempt may go on (it counts as a failure until `attempt_succeeded`),
    else the milliseconds until the last of the keys' locks ends (nothing is counted then).
    """
    _prune(conn, now_ms)
    keys = [key for key in keys if key.brake.max_failures > 0]
    rows = _locked_rows(conn, keys, now_ms)
    wait = max((row.locked_until - now_ms for row in rows), default=0)
    if wait > 0:
        return wait
    for key, row in zip(keys, rows, strict=True):
        brake = key.brake
        forgotten = now_ms - row.last_attempt_at >= brake.lock_ms
        failures = (0 if forgotten else row.failures) + 1
        locked_until = now_ms + brake.lock_ms if failures >= brake.max_failures else 0
        conn.execute(
            update(_R)
            .where(_row_of(key))
            .values(
                failures=failures,
                last_attempt_at=now_ms,
                locked_until=locked_until,
                expires_at=max(locked_until, now_ms + brake.lock_ms),
            )
        )
    return 0


def attempt_succeeded(conn: Connection, keys: Sequence[ThrottleKey], now_ms: int) -> None:
    """Take back the attempt `begin_attempt` counted, per each key's `forgets_on_success`."""
    keys = [key for key in keys if key.brake.max_failures > 0]
    for key, row in zip(keys, _locked_rows(conn, keys, now_ms), strict=True):
        failures = 0 if key.brake.forgets_on_success else max(row.failures - 1, 0)
        if failures == 0:  # nothing left to remember
            conn.execute(delete(_R).where(_row_of(key)))
            continue
        still_locked = failures >= key.brake.max_failures
        conn.execute(
            update(_R)
            .where(_row_of(key))
            .values(failures=failures, locked_until=row.locked_until if still_locked else 0)
        )
