"""Hostile file contents and names in a FILE folder, read into PostgreSQL through the served
openfdi and the official SDK, each run judged by its monitor log and dirty rows: a bad record is
one dirty row naming its line (JSON nested 100,000 deep, a lone surrogate, bytes that are not
UTF-8, a line of 20 MB), a file that cannot be read fails the run with a remark naming the file
and where (never "internal error", never a stack trace), an empty file is no rows, and odd file
names, links, loops, folders and FIFOs matching the pattern neither crash nor hang a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huaweicloudsdkroma.v2 import StopTaskRequest

from tests.engine.conftest import create_task, monitor_logs, wait_for
from tests.files.test_file_tasks import _datasource, _pg, _run, _sql
from tests.messages.test_message_tasks import _finished
from tests.messages.test_message_tasks import _run as _start

FIELDS = [{"name": "id", "type": "bigint"}, {"name": "note", "type": "text"}]


def _read(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, schema: str, folder: Path,
    message: dict[str, Any], table: str = "t",
) -> tuple[Any, list[tuple[Any, ...]], list[dict[str, Any]]]:  # fmt: skip
    """Run a task reading `folder` into PostgreSQL: its monitor log, the rows written (ordered
    by the first column) and the dirty rows."""
    files = _datasource(signed, base_path, "FILE", {"address": str(folder)})
    detail = {"sourceSelectedDatasource": {"table": table,
                                           "message": {"min_age_seconds": 0, **message}},
              "targetSelectedDatasource": {"table": table}}  # fmt: skip
    task = create_task(sdk, creds, files, _pg(signed, base_path, schema), detail)
    log = _run(sdk, creds, task)
    exists = _sql(f'SELECT to_regclass(\'"{schema}"."{table}"\') IS NOT NULL')[0][0]
    rows = _sql(f'SELECT * FROM "{schema}"."{table}" ORDER BY 1') if exists else []
    reply = signed.get(f"{base_path}/tasks/{task}/runs/{log.id}/dirty-data", params={"limit": 50})
    assert reply.status_code == 200, reply.text
    return log, rows, list(reply.json()["entities"])


@pytest.fixture
def folder(files_root: Path) -> Path:
    path = files_root / "in"
    path.mkdir()
    return path


def test_hostile_json_lines_are_dirty_rows_naming_their_line_and_the_rest_is_written(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str, folder: Path
) -> None:
    """Without the fix the nesting failed the run ("internal error: maximum recursion depth
    exceeded"), and so did the surrogate (the target's encoder) and the byte 0xff ("cannot read
    the file"), each losing every row of the file."""
    lines = [
        b'{"id": 1, "note": "a"}',
        b"[" * 100_000,  # 2: nested too deeply
        b'{"id": 3, "note": "\\ud800"}',  # 3: a lone surrogate, which no target stores
        b'{"id": 4, "note": "caf\xff"}',  # 4: not UTF-8
        b"[4]",  # 5: not an object
        b"",  # 6: blank, skipped
        b'{"id": NaN}',  # 7: not an integer
        b'{"id": 1e400}',  # 8: a 401-digit integer: PostgreSQL refuses it for bigint
        b'{"id": 9, "note": "\\u00fc\\ud83c\\udf89"}',  # 9: a surrogate pair is one character
        b'{"id": 10, "note": "' + b"x" * (20 << 20) + b'"}',  # 10: longer than 16 Mi characters
        b'{"id": 11, "note": "trunc',  # 11: the last line, cut (a file still being written)
    ]
    (folder / "t.jsonl").write_bytes(b"\n".join(lines))
    log, rows, dirty = _read(
        sdk, creds, signed, base_path, pg_schema, folder, {"format": "jsonl", "fields": FIELDS}
    )
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 2, 8), (
        log.remarks
    )
    assert rows == [(1, "a"), (9, "ü🎉")]
    reasons = sorted(d["reason"] for d in dirty)
    for expected in ("line 2: nested too deeply", "line 3: field note: U+D800",
                     "line 4: byte 0xff", "line 5: a line is not a JSON object", "line 7:",
                     "out of range for type bigint", "line 10: longer than 16 Mi characters",
                     "line 11:"):  # fmt: skip
        assert any(expected in r for r in reasons), (expected, reasons)
    assert all(len(d["row"]) < 10_000 for d in dirty)  # cut, not the 20 MB line


def test_a_json_number_too_large_for_a_double_is_a_dirty_row_not_infinity(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str, folder: Path
) -> None:
    """1e400 became float('inf'): PostgreSQL stored Infinity, silently."""
    (folder / "t.jsonl").write_text('{"id": 1, "x": 1e400}\n{"id": 2, "x": 2.5}\n')
    fields = [FIELDS[0], {"name": "x", "type": "double"}]
    log, rows, dirty = _read(
        sdk, creds, signed, base_path, pg_schema, folder, {"format": "jsonl", "fields": fields}
    )
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 1, 1)
    assert rows == [(2, 2.5)]
    assert "line 1: 1E+400 is out of range for a double" in dirty[0]["reason"]


@pytest.mark.parametrize("delimiter", [",", ";"])
@pytest.mark.parametrize("other", ["7", "x7"])
def test_a_csv_number_too_large_for_a_double_is_a_dirty_row_not_infinity(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str, folder: Path,
    delimiter: str, other: str,
) -> None:  # fmt: skip
    """pyarrow casts "1e400" to Infinity: PostgreSQL stored it on every path (the file's bytes
    passed through, TSV text, rows; `x7` sends the block value by value)."""
    d = delimiter
    (folder / "t.csv").write_text(f"id{d}x{d}y\n1{d}1e400{d}1\n2{d}2.5{d}{other}\n3{d}inf{d}3\n")
    fields = [FIELDS[0], {"name": "x", "type": "double"}, {"name": "y", "type": "bigint"}]
    message = {"fields": fields, "delimiter": delimiter}
    log, rows, dirty = _read(sdk, creds, signed, base_path, pg_schema, folder, message)
    bad = 1 if other == "7" else 2
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 3 - bad, bad)
    assert rows == ([(2, 2.5, 7)] if other == "7" else []) + [(3, float("inf"), 3)]
    assert any("1e400 is out of range for a double" in d["reason"] for d in dirty), dirty


def test_a_json_line_without_end_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """A 100 MB line (a file of one line, or one being written) was read whole, twice over
    (bytes and text): the read's peak RSS grew by 199 MB. Now the line is refused
    after 16 Mi characters, and the rest skipped without being held."""
    path = tmp_path / "t.jsonl"
    with path.open("wb") as out:
        out.write(b'{"id": 1}\n{"id": 2, "note": "')
        for _ in range(100):
            out.write(b"x" * (1 << 20))
    # The peak of this process's own memory (VmHWM: ru_maxrss would count the pytest
    # process it was forked from, which Linux carries across exec).
    script = f"""
import re, pyarrow
from openfdi.connectors.file.connector import FileConnector
from openfdi.connectors.spi import ReadPlan
def peak():
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\\s+(\\d+)", status.read())[1])
c = FileConnector({{"address": {str(tmp_path)!r}}})
c.configure({{"format": "jsonl", "min_age_seconds": 0, "fields": {FIELDS!r}}})
c.describe("t")
before = peak()
batches = list(c.read(ReadPlan(table="t")))
print(sum(len(b.rows) for b in batches), sum(len(b.refused) for b in batches),
      (peak() - before) // 1024)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    rows, refused, rise_mb = map(int, done.stdout.split())
    assert (rows, refused) == (1, 1)
    assert rise_mb < 80, (rise_mb, done.stdout)


def test_a_stop_ends_a_run_skipping_a_json_line_of_gigabytes_within_the_deadline(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str, folder: Path
) -> None:
    """A 2 GiB line (sparse: no disk used) takes seconds to skip, and nothing looked at the
    stop meanwhile: the engine abandoned the run's thread at the deadline ("the executor
    abandoned a statement that ignored cancellation"), the thread reading on."""
    with (folder / "t.jsonl").open("wb") as out:
        out.write(b'{"id": 1}\n')
        out.truncate(2 << 30)
        out.seek(2 << 30)
        out.write(b'\n{"id": 2}\n')
    files = _datasource(signed, base_path, "FILE", {"address": str(folder)})
    message = {"format": "jsonl", "fields": [FIELDS[0]], "min_age_seconds": 0}
    detail = {"sourceSelectedDatasource": {"table": "t", "message": message},
              "targetSelectedDatasource": {"table": "t"}}  # fmt: skip
    task = create_task(sdk, creds, files, _pg(signed, base_path, pg_schema), detail)
    _start(sdk, creds, task)
    wait_for(lambda: [g for g in monitor_logs(sdk, creds, task) if g.execute_status == "RUNNING"])
    time.sleep(0.5)
    stopped = time.monotonic()
    sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=task))
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=30, interval=0.05)
    took = time.monotonic() - stopped
    assert log.execute_status == "CANCELLED", log.remarks
    assert "abandoned" not in log.remarks, log.remarks
    assert took < 2.0, took


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_an_empty_file_is_no_rows_beside_the_others(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str, folder: Path,
    delimiter: str,
) -> None:  # fmt: skip
    """An empty (0-byte) CSV file, first by name, without declared fields: its columns come
    from the next file. `;` takes the row path, where pyarrow's "Empty CSV file" failed the run
    (and, without declared fields, the description too, whatever the delimiter)."""
    (folder / "t_0.csv").write_bytes(b"")
    (folder / "t_1.csv").write_text(f"id{delimiter}note\n1{delimiter}a\n2{delimiter}b\n")
    (folder / "t_2.csv").write_text(f"id{delimiter}note\n")  # a header only
    log, rows, _ = _read(sdk, creds, signed, base_path, pg_schema, folder, {"delimiter": delimiter})
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 2, 0), (
        log.remarks
    )
    assert rows == [(1, "a"), (2, "b")]


@pytest.mark.parametrize(
    ("name", "data", "message", "expected"),
    [
        ("t.csv", b"id,note\n1,a\n2,a\xffb\n3,c\n", {"fields": FIELDS},
         "file 't.csv' cannot be read: In CSV column #1: CSV conversion error to string: "
         "invalid UTF8 data (line 3: byte 0xff is not utf-8 text)"),
        ("t.csv", b"id,note\n1,a\n2,a\xffb\n3,c\n", {"delimiter": ";"},
         "file 't.csv' gives no columns: In CSV column #0: CSV conversion error to string: "
         "invalid UTF8 data (line 3: byte 0xff is not utf-8 text)"),
        ("t.csv", b'id;note\n1;a\n2;"' + b"x" * (30 << 20), {"fields": FIELDS, "delimiter": ";"},
         "file 't.csv' cannot be read: a CSV record longer than 4 MiB"),
        ("t.csv", b'id,note\n1,"abc\n2,d\n', {"fields": FIELDS},
         "file 't.csv' cannot be read: its last record opens a quote that is never closed"),
        ("t.csv", b'id;note\n1;a\n2;"abc\n3;d', {"fields": FIELDS, "delimiter": ";"},
         "file 't.csv' cannot be read: its last record opens a quote that is never closed"),
        ("t.csv", b"", {}, "file 't.csv' gives no columns: it is empty"),
        ("t.parquet", b"PAR1 not a footer PAR1", {"format": "parquet"},
         "file 't.parquet' gives no columns: Parquet file size is 22 bytes"),
    ],
)  # fmt: skip
def test_a_broken_file_fails_the_run_with_a_remark_naming_the_file_and_where(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str, folder: Path,
    name: str, data: bytes, message: dict[str, Any], expected: str,
) -> None:  # fmt: skip
    """Before, the remark was pyarrow's alone ("cannot read the file: In CSV column #1: CSV
    conversion error to string: invalid UTF8 data", "straddling object straddles two block
    boundaries (try to increase block size?)"): which file, and where in it, was not said; and
    a quote left open in the last record made the rest of the file one value (`2,d` was the
    end of row 1's note, the run a SUCCESS)."""
    (folder / name).write_bytes(data)
    log, _, _ = _read(sdk, creds, signed, base_path, pg_schema, folder, message)
    assert log.execute_status == "ERROR"
    assert expected in log.remarks, log.remarks
    assert "Traceback" not in log.remarks
    assert "internal error" not in log.remarks


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [("t.csv", b"id,id,note\n1,2,x\n", "the column name 'id' comes twice in its header"),
     ("t.csv", b"id,,note\n1,2,x\n", "a column name in its header is empty"),
     ("t.jsonl", b'{"\\ud800": 1, "id": 2}\n',
      "the column name '\\\\ud800' in its keys is not text")],
)  # fmt: skip
def test_column_names_no_table_can_have_fail_the_run_naming_the_file(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str, folder: Path,
    name: str, data: bytes, expected: str,
) -> None:  # fmt: skip
    """Before: "internal error: 'Field "id" exists 2 times in schema'", "empty identifier",
    "internal error: 'utf-8' codec can't encode character '\\ud800'"."""
    (folder / name).write_bytes(data)
    message = {"format": "jsonl"} if name.endswith(".jsonl") else {}
    log, _, _ = _read(sdk, creds, signed, base_path, pg_schema, folder, message)
    assert log.execute_status == "ERROR"
    assert f"file {name!r} gives no columns: {expected}" in log.remarks, log.remarks


def test_parquet_files_whose_schemas_differ_or_hold_no_rows(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str, folder: Path
) -> None:
    pq.write_table(pa.table({"id": [1, 2], "note": ["a", "b"]}), folder / "t_1.parquet")
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), "note": pa.array([], pa.string())}),
                   folder / "t_2.parquet")  # fmt: skip
    log, rows, _ = _read(sdk, creds, signed, base_path, pg_schema, folder, {"format": "parquet"})
    assert (log.execute_status, log.data_count) == ("SUCCESS", 2), log.remarks
    assert rows == [(1, "a"), (2, "b")]

    pq.write_table(pa.table({"other": [3]}), folder / "t_3.parquet")
    log, _, _ = _read(sdk, creds, signed, base_path, pg_schema, folder, {"format": "parquet"})
    assert log.execute_status == "ERROR", (log.data_count, log.dirty_data_count, log.remarks)
    assert "t_3.parquet" in log.remarks, log.remarks


def test_odd_names_links_loops_folders_and_fifos_neither_crash_nor_hang_a_run(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str, folder: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    outside = tmp_path / "secret.csv"
    outside.write_text("id,note\n666,secret\n")
    names = ["t with spaces.csv", "t\nnewline.csv", "t-ü🎉.csv", "-t.csv", "t--rf.csv"]
    for i, name in enumerate(names, 1):
        (folder / name).write_text(f"id,note\n{i},{name!r}\n")
    (folder / "t_link.csv").symlink_to(outside)  # a link out of the roots: never read
    (folder / "t_loop.csv").symlink_to(folder / "t_loop.csv")  # a link to itself
    (folder / "t_dir.csv").mkdir()  # a folder matching the pattern
    os.mkfifo(folder / "t_fifo.csv")  # opening it would wait for a writer for ever
    deep = folder / "t_deep.csv"
    for _ in range(50):
        deep = deep / "d"
    deep.mkdir(parents=True)
    log, rows, _ = _read(sdk, creds, signed, base_path, pg_schema, folder, {"pattern": "*t*.csv"})
    assert (log.execute_status, log.data_count) == ("SUCCESS", len(names)), log.remarks
    assert sorted(r[0] for r in rows) == list(range(1, len(names) + 1))
    assert 666 not in {r[0] for r in rows}
    assert json.loads(json.dumps([r[1] for r in rows]))  # every name came through as text
