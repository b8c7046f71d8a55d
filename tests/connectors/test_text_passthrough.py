"""The text pass-through form (`connectors/_tsv`): for every source x target pair that speaks it,
a copy through `read_raw`/`write_raw` leaves exactly the table the row path (`read`/`write`)
leaves, dirty rows included.

Each pair copies the same source table twice into targets created from the source schema: once
by rows, once as the engine's `_raw_pass` does (a refused slice is written again by rows). The
text form is asked for explicitly, so PostgreSQL to PostgreSQL (which prefers binary) is covered
too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from openfdi.connectors._tsv import TEXT_FORM_TYPES, TSV
from openfdi.connectors.errors import SliceRefusedError
from openfdi.connectors.spi import (
    Batch,
    Connector,
    PassThrough,
    ReadPlan,
    TableSchema,
    WritePlan,
)
from openfdi.connectors.testing.canonical import CANONICAL_ROWS, CANONICAL_SCHEMA
from openfdi.connectors.testing.harness import Harness
from tests.connectors.test_connector_types import assert_same_values

Row = tuple[Any, ...]

_KEPT = [i for i, c in enumerate(CANONICAL_SCHEMA.columns) if c.type in TEXT_FORM_TYPES]
SCHEMA = replace(CANONICAL_SCHEMA, columns=tuple(CANONICAL_SCHEMA.columns[i] for i in _KEPT))
_NAMES = SCHEMA.names

_AWKWARD_TEXTS = [
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "back\\slash",
    "\\N",
    "\\\\N",
    "NULL",
    "ends with a backslash \\",
    "\\t is not a tab",
    "x\x08y",  # backspace: PostgreSQL writes it as \b
    "form\x0cfeed",  # \f, which MySQL's LOAD DATA would read as 'f'
    "vertical\x0btab",  # \v, likewise
    "😀 ünïcödé 中文 €",
    "   ",
]


def _rows() -> list[Row]:
    rows = [tuple(row[i] for i in _KEPT) for row in CANONICAL_ROWS]
    for n, text in enumerate(_AWKWARD_TEXTS):
        rows.append(
            (
                100 + n,
                n,
                -n,
                Decimal(n) / 100,
                # 1/7 to the column's 10 decimals: a value with more would be refused
                round(Decimal(1) / 7, 10) if n % 2 else Decimal("-12345678901234567890.5"),
                1 / (n + 3),
                text[:32],
                text * 3,
                n % 2 == 0,
                date(1 + n * 150, 1 + n % 12, 28),
                datetime(1971 + n, 12, 31, 23, 59, 59, n),
                datetime(1999 + n, 6, 1, 12, 0, 0, 999999 - n, tzinfo=UTC),
            )
        )
    return rows


def _read_all(connector: Connector, table: str) -> list[Row]:
    return sorted(
        (r for b in connector.read(ReadPlan(table, batch_rows=1000)) for r in b.rows),
        key=lambda r: r[0],
    )


def _read_plan(table: str, **incremental: Any) -> ReadPlan:
    return ReadPlan(table, columns=_NAMES, batch_rows=7, **incremental)


def _copy_by_rows(
    src: Connector, dst: Connector, table: str, plan: WritePlan, **incremental: Any
) -> list[Any]:
    dst.prepare_target(plan)
    rejected = []
    for batch in src.read(_read_plan(table, **incremental)):
        rejected.extend(r.row[0] for r in dst.write(batch, plan).rejected)
    dst.commit()
    return sorted(rejected)


def _copy_raw(
    src: Connector,
    dst: Connector,
    table: str,
    plan: WritePlan,
    form: tuple[str, ...],
    **incremental: Any,
) -> tuple[list[Any], int, int]:
    """What the engine's `_raw_pass` does; returns the rejected keys, slices written as bytes
    and slices refused (written again by rows)."""
    assert isinstance(src, PassThrough)
    assert isinstance(dst, PassThrough)
    rejected: list[Any] = []
    raw_slices = refused = 0
    positions = []
    for raw in src.read_raw(_read_plan(table, **incremental), form):
        try:
            written = dst.write_raw(raw, plan, lambda: False)
            assert written is not None
            raw_slices += 1
        except SliceRefusedError:
            refused += 1
            batches: list[Batch] = list(raw.batches())
            for batch in batches:
                rejected.extend(r.row[0] for r in dst.write(batch, plan).rejected)
        dst.commit()
        positions.append(raw.position)
    if incremental:  # each slice ends at its position: the watermark to save after it
        assert positions == sorted(positions)
        assert positions[-1] == max(r[_NAMES.index("ts")] for r in _read_all(dst, plan.table))
    return sorted(rejected), raw_slices, refused


def _both_copies(
    src: Connector, dst: Connector, table: str, **incremental: Any
) -> tuple[list[Any], tuple[list[Any], int, int]]:
    """Copy `table` by rows into `<table>_by_rows` and by text form into `<table>_by_raw`."""
    assert isinstance(src, PassThrough)
    assert isinstance(dst, PassThrough)
    schema = src.describe(table).select(_NAMES)
    by_rows = WritePlan(f"{table}_by_rows", columns=_NAMES, source_schema=schema)
    rejected_by_rows = _copy_by_rows(src, dst, table, by_rows, **incremental)

    by_raw = WritePlan(f"{table}_by_raw", columns=_NAMES, source_schema=schema)
    dst.prepare_target(by_raw)
    offered = src.passthrough_forms(table, _NAMES, as_target=False)
    accepted = dst.passthrough_forms(by_raw.table, _NAMES, as_target=True)
    form = next(f for f in offered if f[0] == TSV)
    assert form in accepted, (form, accepted)
    return rejected_by_rows, _copy_raw(src, dst, table, by_raw, form, **incremental)


def _same_tables(dst: Connector, table: str) -> list[Row]:
    by_rows = _read_all(dst, f"{table}_by_rows")
    assert_same_values(SCHEMA, by_rows, _read_all(dst, f"{table}_by_raw"))
    return by_rows


_MARKS = {"postgresql": [pytest.mark.postgres], "mysql": [pytest.mark.mysql], "sqlite": []}
_SOURCES = [pytest.param(s, marks=_MARKS[s], id=s) for s in ("sqlite", "postgresql", "mysql")]


def _text_pairs() -> list[Any]:
    return [
        pytest.param(s, t, marks=_MARKS[s] + _MARKS[t], id=f"{s}-to-{t}")
        for s in ("sqlite", "postgresql", "mysql")
        for t in ("postgresql", "mysql")
    ]


def _source_table(source: Harness) -> list[Row]:
    """Write `_rows()` into the table `src` of the source, created from SCHEMA; returns them."""
    writer = source.connector()
    plan = WritePlan("src", source_schema=SCHEMA)
    writer.prepare_target(plan)
    rows = _rows()
    assert writer.write(Batch.of(_NAMES, rows), plan).rejected == []
    writer.commit()
    return rows


@pytest.mark.parametrize(("src_name", "dst_name"), _text_pairs())
def test_a_text_pass_through_copy_equals_the_row_copy(
    src_name: str, dst_name: str, make_harness: Callable[[str], Harness]
) -> None:
    source, target = make_harness(src_name), make_harness(dst_name)
    rows = _source_table(source)

    dst = target.connector()
    rejected_by_rows, (rejected_raw, raw_slices, refused) = _both_copies(
        source.connector(), dst, "src"
    )

    assert rejected_by_rows == rejected_raw == []
    assert raw_slices > 0
    if dst_name == "mysql" and src_name == "postgresql":
        assert refused > 0  # the slice holding \f and \v went by rows
    else:
        assert refused == 0
    assert len(_same_tables(dst, "src")) == len(rows)


@pytest.mark.parametrize("src_name", _SOURCES)
def test_an_incremental_text_read_moves_what_the_row_read_moves_past_the_watermark(
    src_name: str, make_harness: Callable[[str], Harness]
) -> None:
    source, target = make_harness(src_name), make_harness("postgresql")
    rows = _source_table(source)
    dst = target.connector()
    stamps = sorted(r[_NAMES.index("ts")] for r in rows if r[_NAMES.index("ts")] is not None)
    watermark = stamps[len(stamps) // 3].isoformat()

    rejected_by_rows, (rejected_raw, raw_slices, refused) = _both_copies(
        source.connector(), dst, "src", incremental_column="ts", watermark=watermark
    )

    assert (rejected_by_rows, rejected_raw, refused) == ([], [], 0)
    assert raw_slices > 1
    copied = _same_tables(dst, "src")
    assert len(copied) == len(stamps) - len(stamps) // 3 - 1


# Stored forms the row path reads leniently and the text form must not carry as they are.
_ODD_SQLITE_VALUES = [
    ("b", "'true'"),
    ("b", "2"),
    ("b", "0.0"),
    ("i", "5.0"),
    ("i", "'12'"),
    ("i", "99999999999"),
    ("s", "'x'"),
    ("d", "0.125"),
    ("d", "'1e3'"),
    ("d", "' 1.5'"),
    ("d", "'12.345'"),
    ("d", "7"),
    ("x", "'1.5'"),
    ("x", "12"),
    ("x", "X'00'"),
    ("v", "12"),
    ("v", "X'41'"),
    ("t", "'nul' || char(0) || 'inside'"),
    ("dt", "'2026-01-02 10:00:00'"),
    ("dt", "'2026-02-30'"),
    ("dt", "738000"),
    ("ts", "'2026-01-02T03:04:05'"),
    ("ts", "'2026-01-02 03:04:05+02:00'"),
    ("ts", "'2026-01-02 03:04:05.123+02'"),
    ("ts", "'2026-01-02 03:04:05.12345Z'"),
    ("tz", "'2026-01-02 03:04:05.1-02+00:00'"),
    ("ts", "'2026-01-02 24:00:00'"),
    ("ts", "1700000000"),
    ("tz", "'2026-01-02 03:04:05'"),
    ("tz", "'2026-01-02 03:04:05Z'"),
    ("tz", "'2026-01-02 03:04:05-05:00'"),
    ("tz", "'2026-01-02 03:04:05.5+00:00'"),
]


@pytest.mark.parametrize(
    "dst_name", [pytest.param(t, marks=_MARKS[t], id=t) for t in ("postgresql", "mysql")]
)
def test_sqlite_values_in_other_forms_than_its_own_take_the_row_path(
    dst_name: str, make_harness: Callable[[str], Harness]
) -> None:
    """Each odd value in a table of its own, so no other value's refusal hides it."""
    source, target = make_harness("sqlite"), make_harness(dst_name)
    writer, src, dst = source.connector(), source.connector(), target.connector()
    good = _rows()[:2]
    refusals = 0
    for n, (column, literal) in enumerate(_ODD_SQLITE_VALUES):
        table = f"odd_{n}"
        plan = WritePlan(table, source_schema=replace(SCHEMA, name=table))
        writer.prepare_target(plan)
        writer.write(Batch.of(_NAMES, good), plan)
        writer.commit()
        source.execute(f"INSERT INTO {table} (id, {column}) VALUES (1000, {literal})")

        rejected_by_rows, (rejected_raw, _raw_slices, refused) = _both_copies(src, dst, table)

        assert rejected_raw == rejected_by_rows, (column, literal)
        copied = _same_tables(dst, table)
        assert len(copied) + len(rejected_by_rows) == 3, (column, literal)
        refusals += refused
    assert refusals > 0


@pytest.mark.parametrize(
    "dst_name", [pytest.param(t, marks=_MARKS[t], id=t) for t in ("postgresql", "mysql")]
)
def test_sqlite_lines_of_single_columns_between_doubles_and_texts(
    dst_name: str, make_harness: Callable[[str], Harness]
) -> None:
    """SQLite joins runs of columns into one field; a run of one column comes back alone."""
    source, target = make_harness("sqlite"), make_harness(dst_name)
    source.execute(
        "CREATE TABLE lone (id INTEGER PRIMARY KEY, x DOUBLE, n INT, t TEXT, "
        "d DECIMAL(12,2), v VARCHAR(8), b BOOLEAN)"
    )
    source.execute(
        "INSERT INTO lone VALUES (1, 0.1, 7, 'a\tb', 12.5, NULL, 1), "
        "(2, NULL, NULL, NULL, 3, 'x', 0), (3, 1e300, -1, '', NULL, '', NULL)"
    )
    src, dst = source.connector(), target.connector()
    assert isinstance(src, PassThrough)
    assert isinstance(dst, PassThrough)
    names = ("id", "x", "n", "t", "d", "v", "b")
    schema = src.describe("lone")
    copies = {}
    for table in ("lone_by_rows", "lone_by_raw"):
        plan = WritePlan(table, columns=names, source_schema=schema)
        dst.prepare_target(plan)
        read = ReadPlan("lone", columns=names)
        if table == "lone_by_rows":
            for batch in src.read(read):
                assert dst.write(batch, plan).rejected == []
        else:
            (form,) = src.passthrough_forms("lone", names, as_target=False)
            for raw in src.read_raw(read, form):
                assert dst.write_raw(raw, plan, lambda: False) == 3
        dst.commit()
        copies[table] = _read_all(dst, table)
    assert_same_values(schema, copies["lone_by_rows"], copies["lone_by_raw"])


def test_a_text_form_column_set_is_offered_and_others_are_not(
    make_harness: Callable[[str], Harness],
) -> None:
    source = make_harness("sqlite")
    source.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, d DECIMAL(10), b BLOB, x REAL)")
    src = source.connector()
    assert isinstance(src, PassThrough)
    assert src.passthrough_forms("t", ["id", "x"], as_target=False) == ((TSV, "bigint", "double"),)
    assert src.passthrough_forms("t", ["id", "b"], as_target=False) == ()
    assert src.passthrough_forms("t", ["id", "d"], as_target=False) == ()  # no scale
    assert src.passthrough_forms("t", ["id", "x"], as_target=True) == ()  # never a target


def test_schema_is_the_text_form_part_of_the_canonical_one() -> None:
    assert isinstance(SCHEMA, TableSchema)
    assert {c.type for c in SCHEMA.columns} == TEXT_FORM_TYPES
