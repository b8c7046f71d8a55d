"""Composite (CDC) tasks: the rules that need no server (pure domain layer).

Names of the objects openfdi creates on the source (slot, publication) derive from the task id,
so a deleted task can always find and drop them, and two tasks never share one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

OPERATION_TYPES = ("INSERT", "UPDATE", "DELETE")
SOURCE_TYPES = frozenset({"POSTGRESQL", "MYSQL"})
"""Sources a composite task can follow: PostgreSQL's logical decoding, MySQL/MariaDB's binlog."""
TARGET_TYPES = frozenset({"POSTGRESQL", "MYSQL"})
"""Targets the apply step writes to today."""
MAPPING_STATUS_AUTO = "AUTO"
MAPPING_STATUS_MANUAL = "MANUAL"
INIT_MAPPINGS_SHOWN = 10
"""install_multi_tasks answers the first 10 mappings and the total (fdi-api.md C)."""

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


class CdcRuleError(ValueError):
    """A composite task's setting breaks a rule; `field` names the parameter."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


def slot_name(task_id: str) -> str:
    """The logical replication slot of a task (slot names: lowercase, digits, underscore)."""
    return f"openfdi_{task_id.lower()}"


def publication_name(task_id: str) -> str:
    return f"openfdi_{task_id.lower()}"


@dataclass(frozen=True, slots=True)
class TableName:
    """A table as `schema.table` or `table` (schema `public`)."""

    schema: str
    name: str

    @classmethod
    def parse(cls, text: str, field: str) -> TableName:
        parts = text.strip().split(".")
        if len(parts) == 1:
            parts = ["public", parts[0]]
        if len(parts) != 2 or not all(_IDENT.match(p) for p in parts):
            raise CdcRuleError(
                field,
                f"{text!r} is not a table name: use table or schema.table, with letters, digits "
                "and _ (at most 63 characters each)",
            )
        return cls(parts[0], parts[1])

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True, slots=True)
class TableMapping:
    mapping_id: str
    source: TableName
    target: TableName


def operation_types(values: Iterable[str] | None) -> tuple[str, ...]:
    """The change kinds a task applies: 1-3 distinct of INSERT, UPDATE, DELETE, in that order."""
    given = [str(v).strip().upper() for v in (values or [])]
    if not given:
        raise CdcRuleError("operation_types", "give 1 to 3 of INSERT, UPDATE, DELETE")
    unknown = [v for v in given if v not in OPERATION_TYPES]
    if unknown:
        raise CdcRuleError(
            "operation_types", f"{unknown[0]!r} is not one of INSERT, UPDATE, DELETE"
        )
    return tuple(op for op in OPERATION_TYPES if op in given)


def check_endpoint_types(source_type: str, target_type: str) -> None:
    if source_type not in SOURCE_TYPES:
        raise CdcRuleError(
            "source_datasource_id",
            f"a composite task follows a POSTGRESQL or MYSQL source's log; {source_type} is not "
            "supported yet",
        )
    if target_type not in TARGET_TYPES:
        raise CdcRuleError(
            "target_datasource_id",
            f"a composite task writes to a POSTGRESQL or MYSQL target; {target_type} is not "
            "supported yet",
        )


def check_primary_key(table: TableName, primary_key: tuple[str, ...]) -> None:
    """Changes are applied by key: a table without one cannot be followed exactly."""
    if not primary_key:
        raise CdcRuleError(
            "source_table",
            f"table {table} has no primary key: a composite task applies updates and deletes "
            "by primary key; add one (ALTER TABLE … ADD PRIMARY KEY) or leave the table out",
        )
