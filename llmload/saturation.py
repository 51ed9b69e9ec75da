"""Is the load generator itself the bottleneck? Process CPU and gevent event-loop lag, sampled during every run.

A saturated generator inflates every latency it measures: a greenlet whose chunk arrived waits for the event loop
before ``measure`` can timestamp it, so TTFT and ITL grow with the generator's load, not the target's. Two
signals catch it:

* process CPU (``psutil``), sampled once a second: near 100% of one core means the single-threaded event loop has
  no idle time left;
* event-loop lag: a greenlet asks to sleep :data:`LAG_INTERVAL_S` and records how late it wakes up. That lateness
  is exactly the delay any chunk timestamp can suffer at that moment.

Sampling runs from the end of ramp-up (``spawning_complete``) to the test's stop: the measured window.

When either crosses its threshold, every BenchmarkResult of the run gets a warning, the warning is logged, and the
figures go to ``result.json`` under ``meta["generator"]`` (per worker in distributed runs: each worker's figures
travel in Locust's ``report_to_master`` data under :data:`REPORT_KEY`, and once more in a message of that name
when the worker stops).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import gevent
import psutil
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from llmload.metrics import clock
from llmload.results import BenchmarkResult

logger = logging.getLogger(__name__)

LAG_INTERVAL_S = 0.1
CPU_INTERVAL_S = 1.0
CPU_LIMIT_PCT = 90.0
LAG_LIMIT_MS = 10.0
MIN_LAG_SAMPLES = 100
"""Below ~10 s of samples p99 is the maximum, which the one-off work of starting and stopping users dominates."""
MAX_SAMPLES = 36_000
"""Bounded memory for soak runs: an hour of lag samples; older ones drop out."""
REPORT_KEY = "llmload_generator"


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0.0 for no samples."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100.0 * len(ordered) + 0.5) - 1))]


class SaturationMonitor:
    """Samples this process's CPU and event-loop lag on two greenlets while a test runs."""

    def __init__(self) -> None:
        self.cpu_pct: deque[float] = deque(maxlen=MAX_SAMPLES)
        self.lag_ms: deque[float] = deque(maxlen=MAX_SAMPLES)
        self._greenlets: list[gevent.Greenlet] = []
        self._process = psutil.Process()

    @property
    def running(self) -> bool:
        return bool(self._greenlets)

    def reset(self) -> None:
        self.stop()
        self.cpu_pct.clear()
        self.lag_ms.clear()

    def start(self) -> None:
        """Start sampling, keeping earlier samples of this run; a no-op while already sampling."""
        if self.running:
            return
        self._process.cpu_percent(None)  # the first call only sets psutil's reference point
        self._greenlets = [gevent.spawn(self._sample_lag), gevent.spawn(self._sample_cpu)]

    def stop(self) -> None:
        greenlets, self._greenlets = self._greenlets, []
        gevent.killall(greenlets, block=False)

    def _sample_lag(self) -> None:
        while True:
            due = clock() + LAG_INTERVAL_S
            gevent.sleep(LAG_INTERVAL_S)
            self.lag_ms.append(max(0.0, (clock() - due) * 1000.0))

    def _sample_cpu(self) -> None:
        while True:
            gevent.sleep(CPU_INTERVAL_S)
            self.cpu_pct.append(self._process.cpu_percent(None))

    def figures(self) -> dict[str, Any]:
        cpu, lag = list(self.cpu_pct), list(self.lag_ms)
        return {
            "cpu_p50": round(_percentile(cpu, 50), 1),
            "cpu_p95": round(_percentile(cpu, 95), 1),
            "cpu_max": round(max(cpu, default=0.0), 1),
            "loop_lag_p50_ms": round(_percentile(lag, 50), 2),
            "loop_lag_p99_ms": round(_percentile(lag, 99), 2),
            "loop_lag_max_ms": round(max(lag, default=0.0), 2),
            "cpu_samples": len(cpu),
            "lag_samples": len(lag),
        }


def warnings_for(figures: dict[str, Any], where: str = "the load generator") -> list[str]:
    """The warnings one process's figures call for (empty when it kept up)."""
    found = []
    if figures.get("cpu_samples") and figures["cpu_p95"] > CPU_LIMIT_PCT:
        found.append(
            f"{where} was CPU-saturated (CPU p95 {figures['cpu_p95']:.0f}% > {CPU_LIMIT_PCT:.0f}%): latencies include "
            "client-side queueing; add workers (--processes) or use --provider openai-fast"
        )
    samples = figures.get("lag_samples", 0)
    # A lagging loop takes fewer samples (each one waits out its lag), so half of them late is a verdict on its own.
    sustained = samples and figures["loop_lag_p50_ms"] > LAG_LIMIT_MS
    if sustained or (samples >= MIN_LAG_SAMPLES and figures["loop_lag_p99_ms"] > LAG_LIMIT_MS):
        found.append(
            f"{where}'s event loop lagged (p50 {figures['loop_lag_p50_ms']:.1f} ms, p99 "
            f"{figures['loop_lag_p99_ms']:.1f} ms > {LAG_LIMIT_MS:.0f} ms): "
            "chunk timestamps may be late by that much; add workers or reduce users per process"
        )
    return found


def monitor(environment: Environment) -> SaturationMonitor:
    existing = getattr(environment, "llmload_saturation", None)
    if existing is None:
        existing = SaturationMonitor()
        environment.llmload_saturation = existing  # type: ignore[attr-defined]
        environment.llmload_worker_generators = {}  # type: ignore[attr-defined]
    return existing


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    monitor(environment).reset()
    environment.llmload_worker_generators = {}  # type: ignore[attr-defined]


@events.spawning_complete.add_listener
def _on_spawning_complete(**_: Any) -> None:
    # Sampling covers the measured window (ramp-up excluded, like the results): starting the emulator and
    # spawning users block the loop once, which says nothing about keeping up with the load.
    for environment in _environments():
        monitor(environment).start()


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    mon = monitor(environment)
    mon.stop()
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        # The periodic reports lag by up to 3 s; the final figures go with the stop. This listener runs before the
        # recorder's flush (registered earlier), so they reach the master before it finalizes.
        runner.send_message(REPORT_KEY, mon.figures())


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(REPORT_KEY, _on_final_figures)


def _on_final_figures(environment: Environment, msg: Any, **_: Any) -> None:
    if isinstance(msg.data, dict):
        monitor(environment)
        environment.llmload_worker_generators[msg.node_id] = msg.data  # type: ignore[attr-defined]


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    for environment in _environments():
        if isinstance(environment.runner, WorkerRunner):
            data[REPORT_KEY] = monitor(environment).figures()


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    figures = data.get(REPORT_KEY)
    if not isinstance(figures, dict):
        return
    for environment in _environments():
        if not isinstance(environment.runner, WorkerRunner):
            monitor(environment)
            environment.llmload_worker_generators[client_id] = figures  # type: ignore[attr-defined]


def _environments() -> list[Environment]:
    from llmload import plugin

    return plugin._environments


def apply(environment: Environment, results: list[BenchmarkResult], meta: dict[str, Any]) -> list[str]:
    """At finalize: put the generator figures in ``meta["generator"]`` and warn on every result if saturated."""
    mon = monitor(environment)
    workers: dict[str, dict[str, Any]] = dict(getattr(environment, "llmload_worker_generators", {}))
    if workers:
        generator: dict[str, Any] = {"workers": workers, "master": mon.figures()}
        found = [w for node, figures in sorted(workers.items()) for w in warnings_for(figures, f"worker {node}")]
    else:
        generator = mon.figures()
        found = warnings_for(generator)
    generator["cpu_limit_pct"] = CPU_LIMIT_PCT
    generator["loop_lag_limit_ms"] = LAG_LIMIT_MS
    meta["generator"] = generator
    for warning in found:
        logger.warning("llmload: %s", warning)
    for result in results:
        result.warnings.extend(w for w in found if w not in result.warnings)
    return found
