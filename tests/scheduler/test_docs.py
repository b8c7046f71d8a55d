"""docs/scheduling.md's SDK example, verbatim, against `openfdi serve --demo` (a real process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.process import Served

ROOT = Path(__file__).resolve().parents[2]


def test_the_sdk_example_schedules_and_runs_the_demo_task(served: Served) -> None:
    doc = (ROOT / "docs" / "scheduling.md").read_text()
    match = re.search(r"<!-- scheduling-sdk-example -->\s*```python\n(.*?)```", doc, re.S)
    assert match, "docs/scheduling.md has no SDK example block"
    result = subprocess.run(
        [sys.executable, "-c", match.group(1)],
        env={**os.environ, "OPENFDI_ENDPOINT": served.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    fired = re.fullmatch(
        r"fired at (\d\d):(\d\d):(\d\d) UTC, started (\d+) ms later, (\d+) rows copied\n",
        result.stdout,
    )
    assert fired, result.stdout
    assert int(fired.group(3)) % 2 == 0  # on the plan's even seconds
    # How late it started is for bench/scheduler.py; a busy CI machine must not fail this.
    assert int(fired.group(5)) > 0


def test_the_sdk_example_plans_a_new_task(served: Served) -> None:
    doc = (ROOT / "docs" / "scheduling.md").read_text()
    match = re.search(r"<!-- scheduling-new-task-sdk-example -->\s*```python\n(.*?)```", doc, re.S)
    assert match, "docs/scheduling.md has no new-task SDK example block"
    result = subprocess.run(
        [sys.executable, "-c", match.group(1)],
        env={**os.environ, "OPENFDI_ENDPOINT": served.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    copied = re.fullmatch(r"plan \S+: first scheduled run copied (\d+) rows\n", result.stdout)
    assert copied, result.stdout
    assert int(copied.group(1)) > 0
