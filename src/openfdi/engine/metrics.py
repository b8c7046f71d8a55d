"""What the engine counts for Prometheus: runs by outcome, rows and bytes moved, rows refused,
run durations; each by task type.

Counted where the runs execute. In `openfdi serve` without worker processes that is the server
itself, whose `/metrics` reads `RUNS.registry`. With worker processes, each worker counts in its
own files under `<data dir>/metrics` (prometheus_client's multiprocess mode, switched on by the
`PROMETHEUS_MULTIPROC_DIR` the server hands its workers), and the server's `/metrics` adds them
up, so the totals survive a worker's exit or restart until the server starts again.

Also each running task's source backlog (`openfdi_source_backlog`): a gauge with a series per
run that must vanish when the run ends, which prometheus_client's multiprocess mode cannot do
(it keeps a removed series in its files), so `Backlogs` keeps it itself: in memory, and in
multiprocess mode also in one small JSON file per worker process beside the counters' files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


def shared_dir(data_dir: Path) -> Path:
    """Where worker processes keep their counts."""
    return data_dir / "metrics"


def reset_shared_dir(data_dir: Path) -> Path:
    """Empty the shared directory (the server, before it starts its workers): counts are the
    server's since it started, and files of processes long gone would add up forever."""
    path = shared_dir(data_dir)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class RunMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "openfdi_runs", "runs ended, by task type and outcome (the run's state)",
            ["task_type", "outcome"], registry=r,
        )  # fmt: skip
        self.rows = Counter(
            "openfdi_rows_moved", "rows committed to targets", ["task_type"], registry=r
        )
        self.bytes = Counter(
            "openfdi_bytes_moved", "bytes of the rows committed to targets", ["task_type"],
            registry=r,
        )  # fmt: skip
        self.refused = Counter(
            "openfdi_rows_refused", "rows targets refused (dirty data)", ["task_type"], registry=r
        )
        self.duration = Histogram(
            "openfdi_run_duration_seconds", "how long runs took, by task type and outcome",
            ["task_type", "outcome"], buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip

    def batch(self, task_type: str, rows: int, nbytes: int, refused: int) -> None:
        """A batch the target committed (counted as it happens: a REALTIME run never ends)."""
        self.rows.labels(task_type).inc(rows)
        self.bytes.labels(task_type).inc(nbytes)
        if refused:
            self.refused.labels(task_type).inc(refused)

    def ended(self, task_type: str, outcome: str, seconds: float) -> None:
        self.runs.labels(task_type, outcome).inc()
        self.duration.labels(task_type, outcome).observe(seconds)


RUNS = RunMetrics()
"""This process's counts (in its shared files when it is a worker process)."""


BACKLOG_EVERY_S = 1.0
"""How often a run asks its source for its backlog: each ask is a round trip to the system."""
_BACKLOG_FILE = "backlog-{pid}.json"
BacklogKey = tuple[str, str]
"""(task id, source type)"""


def backlog_family(values: dict[BacklogKey, int]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        "openfdi_source_backlog",
        "messages the source system holds for a running task and has not delivered yet "
        "(only for sources that can tell)",
        labels=["task_id", "source_type"],
    )
    for (task_id, source_type), value in sorted(values.items()):
        gauge.add_metric([task_id, source_type], value)
    return gauge


class Backlogs:
    """The latest backlog of each running task's source, by (task id, source type)."""

    def __init__(self) -> None:
        self._values: dict[BacklogKey, int] = {}
        self._lock = threading.Lock()

    def set(self, task_id: str, source_type: str, value: int | None) -> None:
        """Record a run's backlog; None (the source cannot tell now) removes its series."""
        key = (task_id, source_type)
        with self._lock:
            if self._values.get(key) == value:
                return  # unchanged (a table source's None every second): nothing to write
            if value is None:
                del self._values[key]
            else:
                self._values[key] = value
            self._share()

    def forget(self, task_id: str) -> None:
        """The task's run ended: its series goes."""
        with self._lock:
            gone = [k for k in self._values if k[0] == task_id]
            for key in gone:
                del self._values[key]
            if gone:
                self._share()

    def values(self) -> dict[BacklogKey, int]:
        with self._lock:
            return dict(self._values)

    def _share(self) -> None:
        """In a worker process, write the values where the server's /metrics reads them
        (replaced whole, so a reader never sees half a file)."""
        where = os.environ.get(MULTIPROCESS_ENV)
        if not where:
            return
        path = Path(where) / _BACKLOG_FILE.format(pid=os.getpid())
        temporary = path.with_suffix(".tmp")
        rows = [[task_id, kind, value] for (task_id, kind), value in self._values.items()]
        with contextlib.suppress(OSError):  # a metric is never worth failing a run for
            temporary.write_text(json.dumps(rows))
            temporary.replace(path)

    def sampler(self, task_id: str, source_type: str) -> BacklogSampler:
        return BacklogSampler(self, task_id, source_type)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def shared_backlogs(path: Path) -> dict[BacklogKey, int]:
    """The backlogs the live worker processes wrote under `path` (a killed worker's file stays
    behind until the server restarts: its pid is gone, so it is skipped)."""
    values: dict[BacklogKey, int] = {}
    for file in path.glob(_BACKLOG_FILE.format(pid="*")):
        pid = file.stem.removeprefix("backlog-")
        if not pid.isdigit() or not _alive(int(pid)):
            continue
        with contextlib.suppress(OSError, ValueError):
            for task_id, kind, value in json.loads(file.read_text()):
                values[(str(task_id), str(kind))] = int(value)
    return values


class BacklogSampler:
    """Asks one run's source for its backlog at most every BACKLOG_EVERY_S."""

    def __init__(
        self,
        backlogs: Backlogs,
        task_id: str,
        source_type: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backlogs = backlogs
        self.task_id = task_id
        self.source_type = source_type
        self.clock = clock
        self._next = 0.0

    def sample(self, read: Callable[[], int | None]) -> None:
        now = self.clock()
        if now < self._next:
            return
        self._next = now + BACKLOG_EVERY_S
        try:
            value = read()
        except Exception:  # a metric never fails a run: a broken connection fails the next
            log.debug("task %s: no backlog", self.task_id, exc_info=True)  # receive anyway
            value = None
        self.backlogs.set(self.task_id, self.source_type, value)


BACKLOGS = Backlogs()
"""This process's running tasks' source backlogs."""


def iter_backlogs(in_workers: Path | None) -> Iterator[GaugeMetricFamily]:
    """The backlog gauge of this process, or of the worker processes sharing `in_workers`."""
    values = shared_backlogs(in_workers) if in_workers is not None else BACKLOGS.values()
    yield backlog_family(values)


class _ThisProcessRuns(Collector):
    """This process's run counts and source backlogs, read at scrape time."""

    def collect(self) -> Iterator[Metric]:
        yield from RUNS.registry.collect()
        yield from iter_backlogs(None)


def serve_this_process(host: str, port: int) -> None:
    """A `/metrics` endpoint of this process's runs, on a thread: for a Celery worker, whose
    runs execute here on another host than the server's, so no server's `/metrics` sees them."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_ThisProcessRuns())
    start_http_server(port, addr=host, registry=registry)
    log.info("metrics of this worker's runs on http://%s:%d/metrics", host, port)
