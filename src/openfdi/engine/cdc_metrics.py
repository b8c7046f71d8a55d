"""What composite (CDC) runs count for Prometheus, in the engine's registry (`RUNS.registry`,
which `/metrics` reads, in shared files when runs execute in worker processes)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from openfdi.engine.metrics import RUNS

CHANGES = Counter(
    "openfdi_cdc_changes_applied",
    "changes a composite task applied to its target, by task, source table and kind",
    ["task_id", "table", "kind"],
    registry=RUNS.registry,
)
LAG = Gauge(
    "openfdi_cdc_lag_seconds",
    "now minus the source commit time of the last change a composite task applied",
    ["task_id"],
    registry=RUNS.registry,
    multiprocess_mode="mostrecent",
)
