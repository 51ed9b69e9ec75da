"""Open-loop arrivals: requests start on a schedule (``--arrival-rate``), not when the previous one finished.

Each process holds one :class:`ArrivalSchedule`. Users act as the bounded pool of in-flight requests (max in-flight
= users): a free user takes the next scheduled time, sleeps until it and sends the request with ``scheduled_at``.
When every user is busy, the next free user takes an arrival whose time has already passed, and the request is
measured from its scheduled time too (``schedule_lag_ms``, ``e2e_from_schedule_ms``), so a generator that falls
behind cannot hide the target's queueing (no coordinated omission).

In distributed mode the master tells the workers how many of them share the rate (an internal option that
travels with Locust's spawn message), and each worker runs ``rate / workers`` with its own seed.
"""

from __future__ import annotations

import logging
import random
import sys
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from llmload.errors import ConfigError
from llmload.metrics import clock
from llmload.results import BenchmarkResult

logger = logging.getLogger("llmload")

EXIT_CONFIG_ERROR = 2
LAG_WARNING_P99_MS = 10.0
"""Schedule lag p99 above this means the generator (not the target) set the pace for part of the run."""


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    parser.add_argument("--arrival-rate", type=float, default=0.0,
                        help="Open-loop: requests per second across all workers (0 = closed loop); -u caps in-flight")
    parser.add_argument("--arrival-process", default="poisson", choices=["constant", "poisson"],
                        help="Open-loop inter-arrival times: constant or poisson (exponential gaps)")
    parser.add_argument("--arrival-seed", type=int, default=0, help="Seed of the Poisson arrival process")
    parser.add_argument("--llmload-arrival-workers", type=int, default=1, include_in_web_ui=False,
                        help="(internal) number of processes sharing the arrival rate")


class ArrivalSchedule:
    """Scheduled send times (``metrics.clock`` seconds) at ``rate`` per second, constant or Poisson."""

    def __init__(self, rate: float, process: str, seed: int, start: float) -> None:
        if rate <= 0:
            raise ConfigError("--arrival-rate must be > 0")
        if process not in ("constant", "poisson"):
            raise ConfigError(f"--arrival-process: '{process}' is not constant or poisson")
        self.rate = rate
        self.process = process
        self.rng = random.Random(seed)
        self.next_at = start

    def gap(self) -> float:
        if self.process == "constant":
            return 1.0 / self.rate
        return self.rng.expovariate(self.rate)

    def take(self) -> float:
        """The next arrival's scheduled time; advances the schedule."""
        due = self.next_at
        self.next_at += self.gap()
        return due


def schedule_for(environment: Environment) -> ArrivalSchedule | None:
    """This process's arrival schedule, created on first use; None in closed-loop runs."""
    opts = environment.parsed_options
    rate = getattr(opts, "arrival_rate", 0.0) or 0.0
    if rate <= 0:
        return None
    existing: ArrivalSchedule | None = getattr(environment, "llmload_arrivals", None)
    if existing is None:
        workers = max(1, int(getattr(opts, "llmload_arrival_workers", 1) or 1))
        runner = environment.runner
        index = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        existing = ArrivalSchedule(rate / workers, opts.arrival_process, opts.arrival_seed + 1_000_003 * index, clock())
        environment.llmload_arrivals = existing  # type: ignore[attr-defined]
    return existing


def lag_warnings(results: list[BenchmarkResult]) -> list[str]:
    """Add a warning to each result whose schedule lag p99 shows the generator fell behind; return them."""
    found = []
    for result in results:
        lag = result.schedule_lag
        if lag is not None and lag.p99 > LAG_WARNING_P99_MS:
            message = (
                f"generator fell behind schedule: schedule lag p99 {lag.p99:.1f} ms > {LAG_WARNING_P99_MS:.0f} ms "
                "(too few users for the arrival rate, or a saturated load generator); see e2e_from_schedule"
            )
            result.warnings.append(message)
            found.append(f"{result.provider}:{result.model}:{result.scenario}: {message}")
    return found


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is not None and getattr(opts, "arrival_rate", 0.0) < 0:
        logger.error("llmload: --arrival-rate must be >= 0 (0 = closed loop)")
        sys.exit(EXIT_CONFIG_ERROR)


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    environment.llmload_arrivals = None  # type: ignore[attr-defined]
    opts = environment.parsed_options
    runner = environment.runner
    if opts is not None and isinstance(runner, MasterRunner):
        # Fires before Locust builds the spawn messages, which carry the parsed options to the workers.
        opts.llmload_arrival_workers = max(1, len(runner.clients.ready) + len(runner.clients.running)
                                           + len(runner.clients.spawning))
