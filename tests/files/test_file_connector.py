"""The FILE connector on real disk: a file appears only complete (temp name, then rename), one
per run unless `max_rows` says otherwise, with uncommitted rows dropped; an incremental read
resumes mid-file at the next record after a crash, leaves a file still being written for later,
and turns a malformed line into a dirty row."""

from __future__ import annotations

import os
import time
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from openfdi.connectors.errors import SliceRefusedError
from openfdi.connectors.file.connector import FileConnector
from openfdi.connectors.spi import (
    Batch,
    Column,
    HostPaths,
    LogicalType,
    ReadPlan,
    TableSchema,
    WritePlan,
)

SCHEMA = TableSchema(
    "orders",
    (Column("id", LogicalType.BIGINT), Column("v", LogicalType.DECIMAL, precision=9, scale=2)),
)
PLAN = WritePlan("orders", columns=SCHEMA.names, source_schema=SCHEMA)


def _connector(folder: Path, **options: object) -> FileConnector:
    connector = FileConnector({"address": str(folder)}, HostPaths(file_roots=(folder,)))
    connector.configure(options)
    return connector


def _rows(n: int, start: int = 0) -> list[tuple[int, Decimal]]:
    return [(i, Decimal(i) / 4) for i in range(start, start + n)]


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_a_file_is_published_whole_with_committed_rows_only(tmp_path: Path) -> None:
    target = _connector(tmp_path, format="parquet")
    target.prepare_target(PLAN)
    target.write(Batch.of(SCHEMA.names, _rows(5)), PLAN)
    target.commit()
    target.write(Batch.of(SCHEMA.names, _rows(5, 5)), PLAN)
    target.commit()
    assert _visible(tmp_path) == []  # being written: under a hidden temp name only
    assert len(list(tmp_path.iterdir())) == 1
    target.write(Batch.of(SCHEMA.names, _rows(5, 10)), PLAN)  # never committed
    target.close()  # a stopped run: its committed rows become a complete file
    [name] = _visible(tmp_path)
    assert list(tmp_path.iterdir()) == [tmp_path / name]
    table = pq.read_table(tmp_path / name)
    assert table.column("id").to_pylist() == list(range(10))
    assert str(table.schema.field("v").type) == "decimal128(9, 2)"
    assert pq.ParquetFile(tmp_path / name).metadata.num_row_groups == 1  # batches gathered


def test_max_rows_splits_a_run_into_complete_files(tmp_path: Path) -> None:
    target = _connector(tmp_path, max_rows=4)
    target.prepare_target(PLAN)
    target.write(Batch.of(SCHEMA.names, _rows(6)), PLAN)
    target.commit()
    target.write(Batch(SCHEMA.names, _rows(5, 6), 0, last=True), PLAN)
    target.commit()
    target.close()
    names = _visible(tmp_path)
    assert [n.rsplit("_", 1)[1] for n in names] == ["0001.csv", "0002.csv", "0003.csv"]
    lines = [(tmp_path / n).read_text().splitlines() for n in names]
    assert [len(f) - 1 for f in lines] == [4, 4, 3]  # header + rows
    assert lines[2][-1] == "10,2.50"


def test_an_incremental_read_resumes_mid_file_and_waits_for_a_file_being_written(
    tmp_path: Path,
) -> None:
    old = time.time() - 60
    for n, (first, count) in enumerate([(0, 10), (10, 4)], start=1):
        path = tmp_path / f"orders_{n}.csv"
        path.write_text("id,v\n" + "".join(f"{i},{i}.25\n" for i in range(first, first + count)))
        os.utime(path, (old + n, old + n))
    plan = ReadPlan("orders", incremental_column="_file_mtime", batch_rows=3)
    source = _connector(tmp_path)
    batches = source.read(plan)
    seen = [next(batches), next(batches)]  # then the process dies
    assert [r[0] for b in seen for r in b.rows] == list(range(6))
    resumed = _connector(tmp_path)
    rest = list(resumed.read(ReadPlan(**{**_fields(plan), "watermark": seen[-1].position})))
    assert [r[0] for b in rest for r in b.rows] == list(range(6, 14))
    assert rest[-1].last

    # A file modified just now may be half written: neither it nor any later file is read yet.
    (tmp_path / "orders_3.csv").write_text("id,v\n14,1.00\n")
    again = list(
        _connector(tmp_path).read(ReadPlan(**{**_fields(plan), "watermark": rest[-1].position}))
    )
    assert [r for b in again for r in b.rows] == []
    assert again[-1].position == rest[-1].position


def _fields(plan: ReadPlan) -> dict[str, object]:
    return {f: getattr(plan, f) for f in ("table", "incremental_column", "batch_rows")}


def test_a_malformed_line_is_a_dirty_row_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text('id,v\n1,1.5\n2,2.5,extra\n3,x\n4,"4.5"\n')
    os.utime(path, (time.time() - 60,) * 2)
    fields = [{"name": "id", "type": "bigint"}, {"name": "v", "type": "decimal"}]
    batches = list(_connector(tmp_path, fields=fields).read(ReadPlan("orders")))
    assert [r for b in batches for r in b.rows] == [(1, Decimal("1.5")), (4, Decimal("4.5"))]
    refused = [r for b in batches for r in b.refused]
    assert len(refused) == 2
    assert "expected 2 fields" in refused[0].reason
    assert "'x' is not a decimal" in refused[1].reason


def test_a_csv_passes_through_as_tsv_text_and_a_bad_slice_falls_back_to_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "id,v,at,ok,note\n"
        '1,1.50,2026-01-02T03:04:05.5+02:00,true,"tab\there, ""q"" \\ and\nline"\n'
        "2,,,,\n"
    )
    os.utime(path, (time.time() - 60,) * 2)
    source = _connector(tmp_path)
    names = ("id", "v", "at", "ok", "note")
    as_csv, form = source.passthrough_forms("orders", names, as_target=False)
    assert form == ("text-tsv", "bigint", "decimal(38,2)", "timestamptz", "boolean", "text")
    assert as_csv == ("text-csv", *form[1:])
    [whole] = list(source.read_raw(ReadPlan("orders"), as_csv))
    assert b"".join(whole.chunks()) == path.read_bytes().split(b"\n", 1)[1]  # the rows, as they are
    [raw] = list(source.read_raw(ReadPlan("orders"), form))
    assert b"".join(raw.chunks()) == (
        b'1\t1.50\t2026-01-02 01:04:05.500000\t1\ttab\\there, "q" \\\\ and\\nline\n'
        b"2\t\\N\t\\N\t\\N\t\\N\n"
    )

    path.write_text("id,v\n1,1.50\n2,abc\n")  # not a number
    os.utime(path, (time.time() - 60,) * 2)
    source = _connector(tmp_path, fields=[{"name": "id", "type": "bigint"},
                                          {"name": "v", "type": "decimal", "precision": 9,
                                           "scale": 2}])  # fmt: skip
    for form in source.passthrough_forms("orders", ("id", "v"), as_target=False):
        [raw] = list(source.read_raw(ReadPlan("orders"), form))
        with pytest.raises(SliceRefusedError):
            list(raw.chunks())
        [batch] = list(raw.batches())
        assert batch.rows == [(1, Decimal("1.50"))]
        assert [r.row for r in batch.refused] == [("2", "abc")]


CRASHING_WRITER = """
import os, sys
from decimal import Decimal
from openfdi.connectors.file.connector import FileConnector
from openfdi.connectors.spi import Batch, Column, HostPaths, LogicalType, TableSchema, WritePlan
folder = sys.argv[1]
schema = TableSchema("orders", (Column("id", LogicalType.BIGINT),))
plan = WritePlan("orders", columns=("id",), source_schema=schema,
                 keeps_committed=sys.argv[3] == "resumes")
target = FileConnector({"address": folder}, HostPaths(file_roots=(folder,)))
target.configure({"format": sys.argv[2]})
target.prepare_target(plan)
for start in (0, 3):
    target.write(Batch.of(("id",), [(i,) for i in range(start, start + 3)]), plan)
    target.commit()
target.write(Batch.of(("id",), [(99,)]), plan)  # written, never committed
os.kill(os.getpid(), 9)
"""


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_after_a_kill_the_next_run_publishes_the_committed_rows(fmt: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    died = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(tmp_path), fmt, "repeats"], check=False
    )
    assert died.returncode == -9
    assert _visible(tmp_path) == []  # nothing half written is visible
    target = _connector(tmp_path, format=fmt)
    target.prepare_target(PLAN)  # the next run of a target finds and publishes them
    target.close()
    [name] = _visible(tmp_path)
    assert list(tmp_path.iterdir()) == [tmp_path / name]
    text = (tmp_path / name).read_text().splitlines()
    assert text == (
        ['"id"', *map(str, range(6))] if fmt == "csv" else [f'{{"id":{i}}}' for i in range(6)]
    )


def test_a_parquet_file_of_a_run_that_resumes_past_its_commits_is_published_at_each(
    tmp_path: Path,
) -> None:
    # A Parquet file cannot be recovered after a kill (its footer comes last). A run that
    # resumes past its commits (incremental, a message source) would lose those rows: its
    # checkpoint moved on. So each commit publishes the file it wrote.
    import subprocess
    import sys

    died = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(tmp_path), "parquet", "resumes"], check=False
    )
    assert died.returncode == -9
    names = _visible(tmp_path)
    assert len(names) == 2  # one per commit; the uncommitted row in none
    ids = sorted(i for n in names for i in pq.read_table(tmp_path / n).column("id").to_pylist())
    assert ids == list(range(6))
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no unfinished file left

    # A full copy, which the next run repeats, still writes one file at its end.
    other = tmp_path / "full"
    other.mkdir()
    died = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(other), "parquet", "repeats"], check=False
    )
    assert died.returncode == -9
    assert _visible(other) == []


def test_a_csv_is_read_only_a_few_blocks_ahead_of_its_consumer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openfdi.connectors._files import formats
    from openfdi.connectors._files.options import parse_options

    monkeypatch.setattr(formats, "CSV_BLOCK", 64 * 1024)
    path = tmp_path / "big.csv"
    path.write_text("id,note\n" + "".join(f"{i},{'x' * 90}\n" for i in range(40_000)))  # 3.7 MB

    with path.open("rb") as handle:
        blocks = formats.csv_blocks(handle, parse_options({}))
        first, _ = next(blocks)
        time.sleep(0.5)  # pyarrow's I/O thread would read on meanwhile
        assert handle.tell() <= 6 * 64 * 1024  # the lead, not the 3.7 MB file
        assert first.num_rows + sum(b.num_rows for b, _ in blocks) == 40_000
