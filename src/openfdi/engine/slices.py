"""Key-range slices of one TIMING copy (the task detail's `parallelism`): which copies can be
split, into which ranges, and where each slice's progress is kept.

A copy is split on its source table's primary key when that is one integer column: the range
from the key's minimum to its maximum is cut into `parallelism` parts of equal width (fewer when
the range holds fewer keys), the first open below and the last open above, so a row added after
the split is still copied by exactly one slice. Each slice reads its range as an incremental
read on the key, and its position (the last key its target committed) is written into the
target's `openfdi_positions`, in the transaction that writes its rows: a slice resumes exactly
where its target stopped, whatever happened to the metadata database meanwhile.

The plan (the ranges, and what they were cut for) is kept there too, committed before any slice
starts, with the truncation of a `truncate_insert` copy. A run that finds an unfinished plan cut
for the same table, key, filter and parallelism resumes it (a crash, a kill, a stop or a failure
ended the run before); any other run cuts a new one.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from openfdi.connectors._sqlbase import SqlConnector
from openfdi.connectors.spi import (
    Connector,
    LogicalType,
    Positions,
    ReadPlan,
    TableSchema,
)
from openfdi.domain.states import TaskType
from openfdi.domain.task_detail import TaskDetail

INTEGER_KEYS = frozenset({LogicalType.BIGINT, LogicalType.INT, LogicalType.SMALLINT})


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Keys `after < key <= upto`; None: open on that side."""

    after: int | None
    upto: int | None


@dataclass(frozen=True, slots=True)
class SlicePlan:
    """How one copy is cut: what for (`fingerprint`) and the ranges, in key order."""

    fingerprint: str
    key: str
    ranges: tuple[KeyRange, ...]


@dataclass(frozen=True, slots=True)
class SliceState:
    """Where one slice is: the last key its target committed (None: nothing yet), and whether
    its read reached the end of its range."""

    at: int | None
    done: bool


def split_key(
    detail: TaskDetail,
    task_type: TaskType,
    follows: bool,
    source: Connector,
    target: Connector,
    schema: TableSchema,
    *,
    resumable: bool = False,
) -> str | None:
    """The key column to cut this copy on, or None when it runs unsliced: `parallelism` 1 (unless
    the run must be `resumable`: then one slice, which commits its last key with its rows, as
    a run executed in bounded steps needs), an incremental or REALTIME task (its watermark
    already orders it), a source that is not a SQL table, a target that keeps no positions, or
    no single integer primary key."""
    if detail.parallelism < (1 if resumable else 2) or task_type is not TaskType.TIMING:
        return None
    if follows:
        return None
    if detail.incremental_column is not None:
        return None
    if not isinstance(source, SqlConnector) or not isinstance(target, Positions):
        return None
    if len(schema.primary_key) != 1:
        return None
    key = schema.column(schema.primary_key[0])
    return key.name if key.type in INTEGER_KEYS else None


def fingerprint(detail: TaskDetail, key: str) -> str:
    """What a plan was cut for: a run of a changed task does not resume it."""
    return json.dumps(
        [detail.source_table, key, detail.where, detail.parallelism, detail.target_table]
    )


def key_bounds(
    source: SqlConnector, table: str, key: str, where: str | None
) -> tuple[int, int] | None:
    """The smallest and largest key of the rows `where` selects; None when there are none.

    Read through the connector's own `read` (its dialect's quoting and conversion), each as the
    one row whose key is the MIN (MAX) of the selection: one index probe on a primary key.
    """
    column, source_table = source.q(key), source.qualified(table)
    selection = f" WHERE ({where})" if where else ""
    found: list[int] = []
    for aggregate in ("MIN", "MAX"):
        plan = ReadPlan(
            table=table,
            columns=(key,),
            where=f"{column} = (SELECT {aggregate}({column}) FROM {source_table}{selection})",
            batch_rows=1,
        )
        batches = source.read(plan)
        try:
            value = next((b.rows[0][0] for b in batches if b.rows), None)
        finally:
            close = getattr(batches, "close", None)  # a generator: ends the read transaction
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        if value is None:
            return None
        found.append(int(value))
    return found[0], found[1]


def cut(low: int, high: int, parts: int) -> tuple[KeyRange, ...]:
    """`parts` ranges of equal key width over [low, high] (fewer if it holds fewer keys); the
    first is open below and the last above, so keys outside the bounds are not lost."""
    width = high - low + 1
    count = max(1, min(parts, width))
    edges = [low - 1 + width * i // count for i in range(count + 1)]
    return tuple(
        KeyRange(
            after=None if i == 0 else edges[i],
            upto=None if i == count - 1 else edges[i + 1],
        )
        for i in range(count)
    )


def plan_key(task_id: str) -> str:
    return f"{task_id}/slices"


def slice_key(task_id: str, index: int) -> str:
    return f"{task_id}/slice/{index}"


def encode_plan(plan: SlicePlan) -> str:
    return json.dumps(
        {
            "for": plan.fingerprint,
            "key": plan.key,
            "ranges": [[r.after, r.upto] for r in plan.ranges],
        }
    )


def decode_plan(text: str | None) -> SlicePlan | None:
    """The stored plan, or None when there is none or it is not ours."""
    if text is None:
        return None
    try:
        doc = json.loads(text)
        ranges = tuple(KeyRange(_key_or_none(a), _key_or_none(b)) for a, b in doc["ranges"])
        return SlicePlan(str(doc["for"]), str(doc["key"]), ranges)
    except (ValueError, TypeError, KeyError):
        return None


def encode_state(state: SliceState) -> str:
    return json.dumps({"at": state.at, "done": state.done})


def decode_state(text: str | None) -> SliceState | None:
    if text is None:
        return None
    try:
        doc = json.loads(text)
        return SliceState(_key_or_none(doc["at"]), bool(doc["done"]))
    except (ValueError, TypeError, KeyError):
        return None


def _key_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"not a key: {value!r}")
    return int(value)


def upper_bound_where(
    source: SqlConnector, where: str | None, key: str, upto: int | None
) -> str | None:
    """The task's filter with the slice's upper bound ANDed to it (the lower bound is the
    slice's watermark: the read is incremental on the key)."""
    if upto is None:
        return where
    bound = f"{source.q(key)} <= {int(upto)}"
    return f"({where}) AND {bound}" if where else bound
