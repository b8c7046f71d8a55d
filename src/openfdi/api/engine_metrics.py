"""Prometheus metrics of the engine and the scheduler, read live at scrape time.

A custom collector rather than counters bumped on the hot path: the planner already keeps
running totals (`PlannerStats`) and the executor knows its queue, so a scrape reads them and the
fire path pays nothing. The runs' own counts (engine/metrics.py) come from where runs execute:
this process, or the worker processes' shared files (`RunsCollector`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from openfdi.engine.metrics import RUNS, iter_backlogs, shared_dir
from openfdi.scheduler.planner import Planner
from openfdi.services.runtime import Runtime


class RunsCollector(Collector):
    """The run counts of every process that executes runs: this one's, or with worker processes
    the sum of their files (those of exited workers included, so totals never drop when a
    worker is restarted), and the backlog of each running task's source."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        if not self.runtime.runs_in_worker_processes:
            yield from RUNS.registry.collect()
            yield from iter_backlogs(None)
            return
        path = shared_dir(self.runtime.settings.data_dir)
        if path.is_dir():  # made by the server as it starts its workers
            shared = MultiProcessCollector(None, path=str(path))  # type: ignore[no-untyped-call]
            yield from shared.collect()  # type: ignore[no-untyped-call]
            yield from iter_backlogs(path)


class EngineCollector(Collector):
    def __init__(self, runtime: Runtime, planner: Planner | None) -> None:
        self.runtime = runtime
        self.planner = planner

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        executor = self.runtime.executor
        if executor is not None:
            queued = executor.queued()
            yield GaugeMetricFamily(
                "openfdi_runs_executing",
                "runs this server executes now",
                value=len(executor.active_run_ids()) - queued,
            )
            yield GaugeMetricFamily(
                "openfdi_runs_queued", "runs waiting for a free run worker", value=queued
            )
        if self.planner is None:
            return
        stats = self.planner.stats
        yield GaugeMetricFamily(
            "openfdi_scheduler_armed_tasks", "started TIMING tasks with a plan", value=stats.armed
        )
        fires = CounterMetricFamily(
            "openfdi_scheduler_fires", "fires handled, by outcome", labels=["outcome"]
        )
        fires.add_metric(["run"], stats.runs)
        fires.add_metric(["skipped"], stats.skipped)
        yield fires
        yield CounterMetricFamily("openfdi_scheduler_ticks", "scheduler passes", value=stats.ticks)
        yield CounterMetricFamily(
            "openfdi_scheduler_cpu_seconds", "CPU time of the scheduler's passes", value=stats.cpu_s
        )
        yield GaugeMetricFamily(
            "openfdi_scheduler_tick_max_seconds",
            "longest scheduler pass since the server started",
            value=stats.max_tick_s,
        )
