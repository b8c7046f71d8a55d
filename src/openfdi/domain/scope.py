"""Who is calling, and on which project and instance an FDI request acts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. Every credential belongs to exactly one project."""

    project_id: str
    subject: str  # the AK, or the user id of a token
    via: Literal["aksk", "token"]


@dataclass(frozen=True, slots=True)
class Scope:
    """The project and instance of an FDI path, already checked against the principal."""

    project_id: str
    instance_id: str
