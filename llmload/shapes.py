"""Load shapes: numbered load levels (step, spike, soak, sweep, breaking-point search) on Locust's own runners.

Locust uses the first ``LoadTestShape`` subclass it finds in the locustfile, so a locustfile that imports
:class:`LLMLoadShape` gets every shape through ``--load-shape``. Without ``--load-shape`` the class returns what
``-u``/``-r``/``-t`` ask for (``use_common_options``), so plain runs behave as without a shape.

Every level has a number. The shape (on the master or local runner) publishes the current level in the per-process
:class:`LevelTracker` and, in distributed mode, sends it to the workers with a custom message; users tag each record
with it. A level's measured window starts once its ramp has finished (``--level-ramp``) and ends with the level, so
only requests started inside it count (:func:`in_measured_window`).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import gevent
from locust import LoadTestShape, events
from locust.env import Environment
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner
from locust.util.timespan import parse_timespan

from llmload.aggregate import Distribution, GroupAccumulator
from llmload.errors import ConfigError
from llmload.metrics import RequestRecord

logger = logging.getLogger("llmload")

SHAPES = ("none", "step", "spike", "soak", "sweep", "breaking_point")
LEVEL_MESSAGE = "llmload_level"
EXIT_CONFIG_ERROR = 2


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    parser.add_argument("--load-shape", default="none", choices=SHAPES,
                        help="Load shape; none = Locust's -u/-r/-t")
    parser.add_argument("--sweep-levels", default="1,5,10,20,50",
                        help="Users per level for sweep and breaking_point, e.g. 1,5,10,20,50")
    parser.add_argument("--step-users", type=int, default=10, help="step: users added per level")
    parser.add_argument("--step-count", type=int, default=5, help="step: number of levels")
    parser.add_argument("--spike-users", type=int, default=50, help="spike: users during the spike (base = -u)")
    parser.add_argument("--level-duration", default="30s", help="Duration of each level, e.g. 30s, 2m")
    parser.add_argument("--level-ramp", default="5s", help="Ramp time at the start of each level, not measured")
    parser.add_argument("--breaking-ttft-p95-ms", type=float, default=0.0,
                        help="breaking_point: a level breaks when its TTFT p95 exceeds this (0 = not used)")
    parser.add_argument("--breaking-error-rate", type=float, default=0.05,
                        help="breaking_point: a level breaks when its error rate exceeds this")


def parse_duration(text: str, option: str) -> float:
    try:
        seconds = float(parse_timespan(text))
    except ValueError as exc:
        raise ConfigError(f"{option}: '{text}' is not a duration; use e.g. 30s, 2m, 1h30m") from exc
    if seconds < 0:
        raise ConfigError(f"{option} must be >= 0")
    return seconds


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"--sweep-levels: '{text}' must be comma-separated user counts, e.g. 1,5,10") from exc
    if not levels or any(n < 1 for n in levels):
        raise ConfigError("--sweep-levels needs at least one user count, each >= 1")
    return levels


@dataclass(frozen=True, slots=True)
class Level:
    """One load level: ``users`` held from ``start_s`` (seconds since the test started) for ``duration_s``."""

    index: int
    users: int
    start_s: float
    duration_s: float
    ramp_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


def plan_levels(user_counts: list[int], duration_s: float, ramp_s: float) -> list[Level]:
    if duration_s <= ramp_s:
        raise ConfigError("--level-duration must be longer than --level-ramp")
    return [
        Level(index=i, users=users, start_s=i * duration_s, duration_s=duration_s, ramp_s=ramp_s)
        for i, users in enumerate(user_counts)
    ]


def shape_user_counts(opts: Any) -> list[int]:
    """The users per level of the shape ``--load-shape`` names."""
    base = max(1, int(getattr(opts, "num_users", None) or 1))
    match opts.load_shape:
        case "step":
            if opts.step_users < 1 or opts.step_count < 1:
                raise ConfigError("--step-users and --step-count must be >= 1")
            return [opts.step_users * (i + 1) for i in range(opts.step_count)]
        case "spike":
            if opts.spike_users < 1:
                raise ConfigError("--spike-users must be >= 1")
            return [base, opts.spike_users, base]
        case "soak":
            return [base]
        case "sweep" | "breaking_point":
            return parse_levels(opts.sweep_levels)
    raise ConfigError(f"--load-shape: unknown shape '{opts.load_shape}'; choose one of {', '.join(SHAPES)}")


@dataclass(slots=True)
class LevelVerdict:
    level: int
    users: int
    requests: int
    error_rate: float
    ttft_p95_ms: float | None
    broken: bool
    reason: str


def judge_level(
    level: Level, groups: list[GroupAccumulator], ttft_p95_limit_ms: float, error_rate_limit: float
) -> LevelVerdict:
    """Whether a level crossed a breaking-point threshold, from the aggregates of its measured window."""
    requests = sum(g.total for g in groups)
    errors = sum(g.total - g.ok for g in groups)
    error_rate = errors / requests if requests else 0.0
    ttfts = Distribution.combined(g.ttft for g in groups)
    p95 = ttfts.percentile(95) if ttfts.count else None
    reasons = []
    if not requests:
        reasons.append("no request finished in the level's window")
    if requests and error_rate > error_rate_limit:
        reasons.append(f"error rate {error_rate:.1%} > {error_rate_limit:.1%}")
    if ttft_p95_limit_ms > 0 and p95 is not None and p95 > ttft_p95_limit_ms:
        reasons.append(f"TTFT p95 {p95:.1f} ms > {ttft_p95_limit_ms:.1f} ms")
    return LevelVerdict(level.index, level.users, requests, error_rate, p95, bool(reasons), "; ".join(reasons))


class LevelTracker:
    """Per-process level state: the current level, and (on the master or local runner) each level's window."""

    def __init__(self) -> None:
        self.current: int | None = None
        self.windows: dict[int, dict[str, Any]] = {}
        self.verdicts: list[LevelVerdict] = []
        self.last_good: LevelVerdict | None = None
        self.shape: str = "none"

    def reset(self, shape: str) -> None:
        """Forget the previous run's windows; ``current`` stays, so re-opening the same level is recognised."""
        self.windows = {}
        self.verdicts = []
        self.last_good = None
        self.shape = shape

    def meta(self) -> dict[str, Any]:
        if self.shape == "none":
            return {}
        data: dict[str, Any] = {"load_shape": self.shape, "levels": {str(k): v for k, v in self.windows.items()}}
        if self.shape == "breaking_point":
            data["breaking_point"] = {
                "last_good_level": self.last_good.level if self.last_good else None,
                "last_good_users": self.last_good.users if self.last_good else None,
                "verdicts": [asdict(v) for v in self.verdicts],
            }
        return data


def tracker(environment: Environment) -> LevelTracker:
    existing = getattr(environment, "llmload_levels", None)
    if existing is None:
        existing = LevelTracker()
        environment.llmload_levels = existing  # type: ignore[attr-defined]
    return existing


def current_level(environment: Environment) -> int | None:
    return tracker(environment).current


def in_measured_window(environment: Environment, record: RequestRecord) -> bool:
    """Whether a record started inside its level's measured window (after the level's ramp, before its end)."""
    windows = tracker(environment).windows
    window = windows.get(record.level) if record.level is not None else None
    return window is not None and window["window_start"] <= record.started_at < window.get("window_end", float("inf"))


def level_loads(environment: Environment) -> dict[int, dict[str, Any]]:
    return {level: {"users": w["users"], "level": level} for level, w in tracker(environment).windows.items()}


def summary_lines(environment: Environment) -> list[str]:
    levels = tracker(environment)
    if levels.shape != "breaking_point":
        return []
    if levels.last_good is None:
        return ["breaking point: no level passed the thresholds"]
    return [f"breaking point: last good level L{levels.last_good.level} ({levels.last_good.users} users)"]


class LLMLoadShape(LoadTestShape):
    """Delegates to the shape ``--load-shape`` picks; without one, holds ``-u`` users at ``-r`` until ``-t``."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self.levels: list[Level] = []
        self._prepared_for: float | None = None
        self._active: Level | None = None
        self._paused_s = 0.0

    def _opts(self) -> Any:
        assert self.runner is not None
        return self.runner.environment.parsed_options

    def _prepare(self) -> None:
        opts = self._opts()
        env = self.runner.environment  # type: ignore[union-attr]
        tracker(env).reset(opts.load_shape)
        self._active = None
        self._paused_s = 0.0
        self.levels = []
        if opts.load_shape != "none":
            self.levels = validate(opts)
        self._prepared_for = self.start_time

    def tick(self) -> tuple[int, float] | None:
        if self._prepared_for != self.start_time:
            try:
                self._prepare()
            except ConfigError as exc:
                from llmload import plugin

                plugin.fail_run(self.runner.environment, str(exc))  # type: ignore[union-attr]
                return None
        opts = self._opts()
        elapsed = self.get_run_time()
        if not self.levels:
            if opts.run_time and elapsed >= opts.run_time:
                return None
            return int(opts.num_users or 1), float(opts.spawn_rate or 1)
        return self.level_tick(elapsed, time.time())

    def level_tick(self, elapsed: float, now: float) -> tuple[int, float] | None:
        """The users and spawn rate at ``elapsed`` seconds; None ends the test (last level over, or broken)."""
        elapsed -= self._paused_s
        level = next((lv for lv in self.levels if lv.start_s <= elapsed < lv.end_s), None)
        if self._active is not None and (level is None or level.index != self._active.index):
            self._close_level(self._active, now)
            if self._stopped_by_breaking_point():
                return None
        if level is None:
            return None
        if self._active is None or self._active.index != level.index:
            self._open_level(level, now)
        previous = self.levels[level.index - 1].users if level.index > 0 else 0
        spawn_rate = max(1.0, abs(level.users - previous) / max(level.ramp_s, 1e-3))
        return level.users, spawn_rate

    def _open_level(self, level: Level, now: float) -> None:
        env = self.runner.environment  # type: ignore[union-attr]
        levels = tracker(env)
        levels.windows[level.index] = {"users": level.users, "started_at": now, "window_start": now + level.ramp_s}
        self._active = level
        if levels.current == level.index:
            # MasterRunner.start() resets the shape's clock right after the first tick: the same level again,
            # with a new window but nothing new to announce.
            return
        levels.current = level.index
        logger.info("llmload: level L%d: %d users (measured from +%.0f s)", level.index, level.users, level.ramp_s)
        if isinstance(self.runner, MasterRunner):
            self.runner.send_message(LEVEL_MESSAGE, {"level": level.index})

    def _close_level(self, level: Level, now: float) -> None:
        env = self.runner.environment  # type: ignore[union-attr]
        levels = tracker(env)
        levels.windows[level.index]["window_end"] = now
        if levels.shape != "breaking_point":
            return
        opts = self._opts()
        if isinstance(self.runner, MasterRunner):
            # Workers ship records with their periodic reports: wait for the reports that carry the end of the
            # window (the level keeps its users meanwhile; its window has already ended).
            waited_from = time.monotonic()
            gevent.sleep(WORKER_REPORT_INTERVAL + 0.5)
            # The wait must not eat into the next level's planned duration.
            self._paused_s += time.monotonic() - waited_from
        groups = env.llmload_state.recorder.aggregate.level_groups(level.index)  # type: ignore[attr-defined]
        verdict = judge_level(level, groups, opts.breaking_ttft_p95_ms, opts.breaking_error_rate)
        levels.verdicts.append(verdict)
        if verdict.broken:
            logger.info("llmload: level L%d broke: %s", level.index, verdict.reason)
        else:
            levels.last_good = verdict

    def _stopped_by_breaking_point(self) -> bool:
        verdicts = tracker(self.runner.environment).verdicts  # type: ignore[union-attr]
        return bool(verdicts) and verdicts[-1].broken


def validate(opts: Any) -> list[Level]:
    """The levels the options describe; a ConfigError naming the option to fix otherwise."""
    if opts.breaking_error_rate < 0 or opts.breaking_ttft_p95_ms < 0:
        raise ConfigError("--breaking-error-rate and --breaking-ttft-p95-ms must be >= 0")
    return plan_levels(shape_user_counts(opts), parse_duration(opts.level_duration, "--level-duration"),
                       parse_duration(opts.level_ramp, "--level-ramp"))


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        # The level message for a run's first level arrives just before the spawn message that fires the
        # worker's test_start, so nothing here may reset the level at test start.
        def on_level(msg: Any, **__: Any) -> None:
            tracker(environment).current = (msg.data or {}).get("level")

        runner.register_message(LEVEL_MESSAGE, on_level)
        return
    opts = environment.parsed_options
    if opts is not None and getattr(opts, "load_shape", "none") != "none":
        try:
            validate(opts)
        except ConfigError as exc:
            logger.error("llmload: %s", exc)
            sys.exit(EXIT_CONFIG_ERROR)


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner) or opts is None:
        return
    # Options edited in the web UI are checked again here, as a one-line error rather than a shape traceback.
    if opts.load_shape != "none":
        from llmload import plugin

        try:
            validate(opts)
        except ConfigError as exc:
            plugin.fail_run(environment, str(exc))
