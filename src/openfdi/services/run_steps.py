"""The steps of a run as monitor-logs shows them (`detail_logs`): the reader and the writer, each
with a ROMA step status code, built from what the run recorded (its state, totals and times).

Status codes (the SDK's TaskMonitorLog.status): reader 100-108, writer 500-507, scheduler 900+.
openfdi uses: 99 task start; 102 / 502 reading / writing; 104 read finished (105 when nothing was
read); 500 writer started (nothing written yet); 504 write finished; 106 / 505 stopped by a
user; 107 / 506 interrupted in the reader / writer (a failed run, or one interrupted by a server
shutdown: the run does not record which side failed, so both steps carry the run's reason);
914 a scheduled fire refused because the previous run was still going.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from openfdi.domain.states import RunState
from openfdi.store.tables import DatasourceRow, RunRow, TaskRow
from openfdi.wire.runs import TaskMonitorDetailLog

START = 99
SKIPPED_FIRE = 914
# state -> (reader code, writer code) once both steps exist
_ENDED = {
    RunState.SUCCEEDED: (104, 504),
    RunState.CANCELLED: (106, 505),
    RunState.FAILED: (107, 506),
    RunState.INTERRUPTED: (107, 506),
}
_STEP_STATUS = {
    RunState.SUCCEEDED: ("NODE_END", "TASK_END"),
    RunState.CANCELLED: ("RUNTIME_CANCEL", "RUNTIME_CANCEL"),
}
_UNITS = (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024))


def size_with_unit(nbytes: int) -> tuple[float, str]:
    """Bytes as the monitor shows them: a float and its unit (B, KB, MB, GB)."""
    for unit, scale in _UNITS:
        if nbytes >= scale:
            return round(nbytes / scale, 2), unit
    return float(nbytes), "B"


def endpoint_types(session: Session, task: TaskRow) -> tuple[str, str]:
    """The source's and the target's datasource types (they name the reader and writer)."""
    found = session.execute(
        select(DatasourceRow.id, DatasourceRow.type).where(
            DatasourceRow.id.in_((task.source_datasource_id, task.target_datasource_id))
        )
    ).all()
    types = {ds_id: kind for ds_id, kind in found}
    return types[task.source_datasource_id], types[task.target_datasource_id]


def _step_id(run_id: str, step: str) -> str:
    """Stable across reads: the same step always has the same id (32 hex, like every id)."""
    return hashlib.md5(f"{run_id}:{step}".encode(), usedforsecurity=False).hexdigest()


def detail_logs(row: RunRow, source_type: str, target_type: str) -> list[TaskMonitorDetailLog]:
    """The run's steps, in order: ADAPTER alone for a run not started or a skipped fire, else
    READER then WRITER."""
    state = RunState(row.state)
    if state is RunState.SKIPPED or (state is RunState.STARTING and row.started_at is None):
        return [
            TaskMonitorDetailLog(
                id=_step_id(row.id, "adapter"),
                status=SKIPPED_FIRE if state is RunState.SKIPPED else START,
                position="ADAPTER",
                position_status="RUNTIME_CANCEL" if state is RunState.SKIPPED else "NORMAL",
                stage="adapter",
                dirty_data_count=0,
                data_count=0,
                data_size=0.0,
                data_size_unit="B",
                remarks=row.remarks,
                step_begin_time=row.created_at,
                step_end_time=row.ended_at,
            )
        ]
    if state.is_active:
        wrote = row.position == "WRITER"
        reader_code, writer_code = 102, (502 if wrote else 500)
        reader_status = writer_status = "NORMAL"
    else:
        reader_code, writer_code = _ENDED[state]
        if state is RunState.SUCCEEDED and row.data_count + row.dirty_data_count == 0:
            reader_code = 105
        failed = row.position_status or "RUNTIME_ERR"
        reader_status, writer_status = _STEP_STATUS.get(state, (failed, failed))
    read = row.data_count + row.dirty_data_count
    size, unit = size_with_unit(row.data_size_bytes)
    problem = row.remarks if state in (RunState.FAILED, RunState.INTERRUPTED) else None
    begin = row.started_at or row.created_at
    return [
        TaskMonitorDetailLog(
            id=_step_id(row.id, "reader"),
            status=reader_code,
            position="READER",
            position_status=reader_status,
            stage=f"{source_type.lower()}reader",
            dirty_data_count=0,
            data_count=read,
            data_size=size,
            data_size_unit=unit,
            spend_time=row.read_ms,
            remarks=problem or f"read {read} rows",
            step_begin_time=begin,
            step_end_time=row.ended_at,
        ),
        TaskMonitorDetailLog(
            id=_step_id(row.id, "writer"),
            status=writer_code,
            position="WRITER",
            position_status=writer_status,
            stage=f"{target_type.lower()}writer",
            dirty_data_count=row.dirty_data_count,
            data_count=row.data_count,
            data_size=size,
            data_size_unit=unit,
            spend_time=row.write_ms,
            remarks=problem
            or f"wrote {row.data_count} rows, {row.dirty_data_count} refused by the target",
            step_begin_time=begin,
            step_end_time=row.ended_at,
        ),
    ]
