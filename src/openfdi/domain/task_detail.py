"""The part of `task_detail` the engine understands (docs/task-detail.md), parsed and checked.

The client's text is stored and echoed back unchanged; this is only the engine's reading of it.
Keys it does not know are kept and ignored. Checks here need no database: whether the tables
and columns exist is found out by the run, since a database may be down for a while.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

WRITE_MODES = ("insert", "upsert", "truncate_insert")
MAX_PARALLELISM = 16
"""Key-range slices of one copy at most: each holds a source and a target connection, and two
CPUs or a source's disks stop paying back long before this (docs/task-detail.md)."""
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$")


class TaskDetailError(ValueError):
    """task_detail cannot drive a run; the message says why, for a 400 FDI.3033."""


@dataclass(frozen=True, slots=True)
class FieldMapping:
    source: str
    target: str


@dataclass(frozen=True, slots=True)
class TaskDetail:
    source_table: str
    columns: tuple[str, ...] | None
    where: str | None
    incremental_column: str | None
    incremental_start: Any
    target_table: str
    write_mode: str
    key_columns: tuple[str, ...]
    create_table: bool
    mappings: tuple[FieldMapping, ...]
    source_message: dict[str, Any] | None = None
    """`sourceSelectedDatasource.message`: how messages become rows (a message source's
    connector vets and reads it; docs/task-detail.md, "Message ends")."""
    target_message: dict[str, Any] | None = None
    """`targetSelectedDatasource.message`: how rows become messages."""
    parallelism: int = 1
    """`parallelism`: key-range slices a TIMING copy runs at once (engine/slices.py)."""

    def target_name(self, source_column: str) -> str:
        for m in self.mappings:
            if m.source == source_column:
                return m.target
        return source_column


def _identifier(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise TaskDetailError(f"{where} must be a table or column name, got {value!r}")
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise TaskDetailError(f"{where} must be a non-empty list of column names")
    names = tuple(_identifier(v, where) for v in value)
    if len(set(names)) != len(names):
        raise TaskDetailError(f"{where} names a column twice")
    return names


def check_where(text: str) -> str:
    """Accept exactly one boolean SQL expression: no second statement, no comment, no DDL."""
    # Imported here: sqlglot costs 8 MiB and most tasks have no `where`.
    import sqlglot
    from sqlglot import exp

    boolean_nodes = (exp.Predicate, exp.Connector, exp.Not, exp.Boolean, exp.Is, exp.Exists)
    if not text.strip():
        raise TaskDetailError("sourceSelectedDatasource.where is empty")
    if ";" in text or "--" in text or "/*" in text:
        raise TaskDetailError("sourceSelectedDatasource.where must not contain ';' or comments")
    try:
        statements = sqlglot.parse(f"SELECT 1 FROM t WHERE {text}")
    except sqlglot.errors.SqlglotError as exc:
        raise TaskDetailError(f"sourceSelectedDatasource.where does not parse: {exc}") from exc
    if len(statements) != 1 or statements[0] is None:
        raise TaskDetailError("sourceSelectedDatasource.where must be one expression")
    condition = statements[0].args.get("where")
    node = condition.this if condition is not None else None
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, boolean_nodes):
        raise TaskDetailError("sourceSelectedDatasource.where must be a boolean expression")
    return text


@functools.lru_cache(maxsize=4096)
def parse_task_detail(text: str) -> TaskDetail:
    """The engine's view of a task_detail text (cached: every run of a task parses the same
    text, and checking a `where` with sqlglot costs milliseconds; TaskDetail is immutable)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TaskDetailError(f"not JSON: {exc}") from exc
    except RecursionError:
        # json.loads recurses per level: thousands of nested arrays exhaust the stack.
        raise TaskDetailError("nested too deeply to be a task_detail") from None
    if not isinstance(doc, dict):
        raise TaskDetailError("must be the JSON text of an object")
    source = doc.get("sourceSelectedDatasource")
    target = doc.get("targetSelectedDatasource")
    if not isinstance(source, dict) or not source.get("table"):
        raise TaskDetailError("sourceSelectedDatasource.table is required")
    if not isinstance(target, dict) or not target.get("table"):
        raise TaskDetailError("targetSelectedDatasource.table is required")

    columns = (
        _names(source["columns"], "sourceSelectedDatasource.columns")
        if source.get("columns") is not None
        else None
    )
    where = check_where(str(source["where"])) if source.get("where") is not None else None

    incremental = source.get("incremental")
    inc_column, inc_start = None, None
    if incremental is not None:
        if not isinstance(incremental, dict) or not incremental.get("column"):
            raise TaskDetailError("sourceSelectedDatasource.incremental.column is required")
        inc_column = _identifier(incremental["column"], "sourceSelectedDatasource.incremental")
        inc_start = incremental.get("start")

    mode = target.get("writeMode", "insert")
    if mode not in WRITE_MODES:
        raise TaskDetailError(
            f"targetSelectedDatasource.writeMode must be one of {', '.join(WRITE_MODES)}"
        )
    keys: tuple[str, ...] = ()
    if target.get("keyColumns") is not None:
        keys = _names(target["keyColumns"], "targetSelectedDatasource.keyColumns")
    if mode == "upsert" and not keys:
        raise TaskDetailError("writeMode upsert needs targetSelectedDatasource.keyColumns")
    create = target.get("createTable", True)
    if not isinstance(create, bool):
        raise TaskDetailError("targetSelectedDatasource.createTable must be true or false")

    mappings: list[FieldMapping] = []
    raw_mappings = doc.get("mappingTable")
    if raw_mappings is not None:
        if not isinstance(raw_mappings, list):
            raise TaskDetailError("mappingTable must be a list")
        for i, m in enumerate(raw_mappings):
            if not isinstance(m, dict):
                raise TaskDetailError(f"mappingTable[{i}] must be an object")
            mappings.append(
                FieldMapping(
                    _identifier(m.get("sourceField"), f"mappingTable[{i}].sourceField"),
                    _identifier(m.get("targetField"), f"mappingTable[{i}].targetField"),
                )
            )
        if len({m.target for m in mappings}) != len(mappings):
            raise TaskDetailError("mappingTable maps two fields to one target field")

    messages: list[dict[str, Any] | None] = []
    for end, name in ((source, "sourceSelectedDatasource"), (target, "targetSelectedDatasource")):
        message = end.get("message")
        if message is not None and not isinstance(message, dict):
            raise TaskDetailError(f"{name}.message must be an object")
        messages.append(message)

    parallelism = doc.get("parallelism")
    parallelism = 1 if parallelism is None else parallelism
    # bool is an int in Python: `true` must not pass as 1.
    if (
        isinstance(parallelism, bool)
        or not isinstance(parallelism, int)
        or not 1 <= parallelism <= MAX_PARALLELISM
    ):
        raise TaskDetailError(f"parallelism must be an integer from 1 to {MAX_PARALLELISM}")

    return TaskDetail(
        parallelism=parallelism,
        source_message=messages[0],
        target_message=messages[1],
        source_table=_identifier(source["table"], "sourceSelectedDatasource.table"),
        columns=columns,
        where=where,
        incremental_column=inc_column,
        incremental_start=inc_start,
        target_table=_identifier(target["table"], "targetSelectedDatasource.table"),
        write_mode=mode,
        key_columns=keys,
        create_table=create,
        mappings=tuple(mappings),
    )
