"""A text value UTF-8 cannot carry (a lone surrogate, "\\ud800", which JSON's escapes and
Python strings allow) refuses its own row at every SQL target, the rest of the batch written.
Before, the driver's UnicodeEncodeError was no row error: the whole run failed as "internal
error: 'utf-8' codec can't encode character '\\ud800'" (a RabbitMQ message holding one, into
PostgreSQL), nothing of the batch written."""

from __future__ import annotations

from typing import Any

import pytest

from openfdi.connectors.spi import Batch, Column, LogicalType, TableSchema, WriteMode, WritePlan

SCHEMA = TableSchema(
    "notes",
    (
        Column("id", LogicalType.BIGINT, nullable=False, is_primary_key=True),
        Column("note", LogicalType.TEXT),
    ),
    primary_key=("id",),
)
ROWS = [(1, "fine"), (2, "half \ud800 a pair"), (3, "also fine"), (4, "\udfff")]


@pytest.mark.needs("write")
@pytest.mark.parametrize("mode", [WriteMode.INSERT, WriteMode.UPSERT])
def test_a_lone_surrogate_refuses_its_row_only(harness: Any, mode: WriteMode) -> None:
    plan = WritePlan(table="notes", write_mode=mode, key_columns=("id",), source_schema=SCHEMA)
    with harness.connector() as target:
        target.prepare_target(plan)
        result = target.write(Batch.of(("id", "note"), ROWS), plan)
        target.commit()
    assert result.rows_written == 2
    assert [row.row[0] for row in result.rejected] == [2, 4]
    assert [row.reason for row in result.rejected] == [
        f"a text value holds U+{code}, a lone surrogate, which UTF-8 cannot encode"
        for code in ("D800", "DFFF")
    ]
    assert sorted(harness.query(f"SELECT id, note FROM {harness.q('notes')}")) == [
        (1, "fine"),
        (3, "also fine"),
    ]
