"""What one run needs, handed from the services to the engine (no database rows, no wire)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openfdi.domain.states import TaskType
from openfdi.domain.task_detail import TaskDetail


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A data source as a connector sees it: its type and its decrypted content."""

    type: str
    content: dict[str, Any]

    def __repr__(self) -> str:  # never print secrets
        return f"Endpoint(type={self.type!r})"


@dataclass(frozen=True, slots=True)
class RunSpec:
    run_id: str
    task_id: str
    task_type: TaskType
    detail: TaskDetail
    source: Endpoint
    target: Endpoint
    watermark: str | None
    """Where the run resumes (the task's checkpoint), or None to start from the detail's start."""
    follows_source: bool = False
    """Keep reading new rows until stopped: only the supervisor's run of a started REALTIME
    task does; any other run (a manual `run` of any task) copies what is there and ends."""
