"""docs/cdc.md's SDK example, run verbatim against a live server: the task it makes follows."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cdc.conftest import Ends, pg_datasource, same_rows, start_stop, wait_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "cdc.md"


def test_the_sdk_example_of_the_docs_creates_and_starts_a_following_task(
    sdk, creds, ends: Ends
) -> None:
    block = re.search(r"<!-- cdc-sdk-example -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None, "docs/cdc.md lost its SDK example"
    ends.both("CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12,2))")
    names = {
        "client": sdk,
        "instance_id": creds.instance_id,
        "source_id": pg_datasource(sdk, creds.instance_id, ends.pg.content(ends.src)),
        "target_id": pg_datasource(sdk, creds.instance_id, ends.pg.content(ends.dst)),
    }
    exec(compile(block.group(1), str(DOC), "exec"), names)  # our own docs, verbatim
    with ends.src_conn() as src:
        src.execute("INSERT INTO orders VALUES (1, 9.99), (2, 0.01)")
        src.execute("DELETE FROM orders WHERE id = 2")
    wait_for(lambda: same_rows(ends, "orders") and bool(_count(ends)))
    start_stop(sdk, creds, str(names["task_id"]), "stop")


def _count(ends: Ends) -> int:
    with ends.dst_conn() as dst:
        found = dst.execute("SELECT count(*) FROM orders").fetchone()
    return int(found[0]) if found else 0
