"""openfdi/logs.py: one JSON object a line with the ids a record carries, or text with them."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from openfdi import logs


def _record(message: str = "run failed: %s", **extra: str) -> logging.LogRecord:
    record = logging.LogRecord("openfdi.engine.runner", logging.WARNING, "x.py", 1, message,
                               ("no table",), None)  # fmt: skip
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_json_line_carries_level_logger_message_time_and_the_run_ids() -> None:
    line = logs.json_formatter().format(_record(task_id="t1", run_id="r1"))
    parsed = json.loads(line)
    assert parsed["level"] == "WARNING"
    assert parsed["logger"] == "openfdi.engine.runner"
    assert parsed["message"] == "run failed: no table"
    assert parsed["task_id"] == "t1"
    assert parsed["run_id"] == "r1"
    assert parsed["time"].endswith("+00:00")  # ISO 8601, UTC
    assert "\n" not in line


def test_a_traceback_stays_inside_the_json_line() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, "x.py", 1, "boom", (), sys.exc_info())
    line = logs.json_formatter().format(record)
    assert "\n" not in line
    assert "ValueError: bad value" in json.loads(line)["exc_info"]


def test_text_lines_end_with_the_ids_the_record_carries() -> None:
    text = logs.TextFormatter().format(_record(task_id="t1", run_id="r1"))
    assert text.endswith(
        "WARNING openfdi.engine.runner run failed: no table [task_id=t1 run_id=r1]"
    )
    assert logs.TextFormatter().format(_record()).endswith("run failed: no table")


def test_the_filter_adds_the_current_request_id() -> None:
    record = _record()
    token = logs.request_id.set("req-7")
    try:
        logs.ContextFilter().filter(record)
    finally:
        logs.request_id.reset(token)
    assert json.loads(logs.json_formatter().format(record))["request_id"] == "req-7"
    untouched = _record()
    logs.ContextFilter().filter(untouched)  # outside a request: no request id at all
    assert "request_id" not in json.loads(logs.json_formatter().format(untouched))


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    root.handlers[:] = saved
    root.setLevel(level)


def test_configure_replaces_its_own_handler_and_basic_config_s_and_honours_the_format(
    root_handlers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    others = [h for h in root.handlers if type(h) is not logging.StreamHandler]
    root.addHandler(logging.StreamHandler(io.StringIO()))  # what logging.basicConfig adds
    monkeypatch.setenv("OPENFDI_LOG_FORMAT", "json")
    logs.configure("warning")
    logs.configure()
    ours = [h for h in root.handlers if getattr(h, "openfdi", False)]
    assert len(ours) == 1
    assert [h for h in root.handlers if not getattr(h, "openfdi", False)] == others
    assert root.level == logging.WARNING
    stream = io.StringIO()
    ours[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("openfdi.test").warning("failed", extra={"run_id": "r9"})
    assert json.loads(stream.getvalue())["run_id"] == "r9"
    monkeypatch.setenv("OPENFDI_LOG_FORMAT", "text")
    logs.configure()
    ours = [h for h in root.handlers if getattr(h, "openfdi", False)]
    assert isinstance(ours[0].formatter, logs.TextFormatter)
