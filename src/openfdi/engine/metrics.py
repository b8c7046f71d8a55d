"""What the engine counts for Prometheus: runs by outcome, rows and bytes moved, rows refused,
run durations; each by task type.

Counted where the runs execute. In `openfdi serve` without worker processes that is the server
itself, whose `/metrics` reads `RUNS.registry`. With worker processes, each worker counts in its
own files under `<data dir>/metrics` (prometheus_client's multiprocess mode, switched on by the
`PROMETHEUS_MULTIPROC_DIR` the server hands its workers), and the server's `/metrics` adds them
up, so the totals survive a worker's exit or restart until the server starts again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram

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
