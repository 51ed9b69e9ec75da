"""Load shapes on a real Locust Environment and LocalRunner: tick() sequences, level numbering and windows, the
breaking-point decision on synthetic records, and the seeded arrival schedules of open-loop runs."""

from __future__ import annotations

import statistics
import subprocess
from typing import Any

import pytest
from locust.argument_parser import get_parser
from locust.env import Environment

from llmload import plugin
from llmload.aggregate import GroupAccumulator, RunAccumulator
from llmload.errors import ConfigError
from llmload.metrics import RequestRecord
from llmload.openloop import ArrivalSchedule
from llmload.shapes import Level, LLMLoadShape, in_measured_window, judge_level, plan_levels, tracker
from llmload.users import LLMUser
from tests.conftest import LOCUST, REPO, locust_env


class ShapeTestUser(LLMUser):
    abstract = False


def make_shape(*args: str) -> tuple[LLMLoadShape, Environment]:
    options = get_parser().parse_args(["-f", "locustfiles/chat.py", *args])
    shape = LLMLoadShape()
    environment = Environment(user_classes=[ShapeTestUser], shape_class=shape, parsed_options=options)
    environment.create_local_runner()
    shape.runner = environment.runner
    shape.reset_time()
    shape._prepare()
    return shape, environment


def ticks(shape: LLMLoadShape, times: list[float], now0: float = 1000.0) -> list[Any]:
    return [shape.level_tick(t, now0 + t) for t in times]


def record(level: int, started_at: float, *, ok: bool = True, ttft_ms: float = 100.0, scenario: str = "s"
           ) -> RequestRecord:
    return RequestRecord(provider="openai", model="m", scenario=scenario, endpoint="chat", started_at=started_at, ok=ok,
                         e2e_ms=200.0, ttft_ms=ttft_ms if ok else None, level=level,
                         error_kind=None if ok else "server_error")


def test_step_shape_ticks_levels_and_ends() -> None:
    shape, environment = make_shape("--load-shape", "step", "--step-users", "5", "--step-count", "3",
                                    "--level-duration", "10s", "--level-ramp", "2s")
    assert [lv.users for lv in shape.levels] == [5, 10, 15]
    assert ticks(shape, [0, 9.9, 10, 25, 30]) == [(5, 2.5), (5, 2.5), (10, 2.5), (15, 2.5), None]
    windows = tracker(environment).windows
    assert sorted(windows) == [0, 1, 2]
    # Each window starts after its level's ramp and ends when the next level begins.
    assert windows[1]["window_start"] == pytest.approx(1012.0)
    assert windows[0]["window_end"] == pytest.approx(1010.0)
    assert windows[2]["window_end"] == pytest.approx(1030.0)


def test_spike_soak_and_sweep_plans() -> None:
    spike, environment = make_shape("--load-shape", "spike", "-u", "4", "--spike-users", "40",
                                    "--level-duration", "5s", "--level-ramp", "1s")
    assert ticks(spike, [0, 5, 10, 15]) == [(4, 4.0), (40, 36.0), (4, 36.0), None]
    assert tracker(environment).current == 2
    soak, _ = make_shape("--load-shape", "soak", "-u", "7", "--level-duration", "1h", "--level-ramp", "10s")
    assert [(lv.users, lv.duration_s) for lv in soak.levels] == [(7, 3600.0)]
    sweep, _ = make_shape("--load-shape", "sweep", "--sweep-levels", "1,5,10,20,50", "--level-duration", "30s")
    assert [lv.users for lv in sweep.levels] == [1, 5, 10, 20, 50]
    assert [lv.index for lv in sweep.levels] == [0, 1, 2, 3, 4]
    assert sweep.levels[4].start_s == 120.0


def test_no_shape_returns_locust_options_until_run_time() -> None:
    shape, environment = make_shape("-u", "8", "-r", "2", "-t", "5s")
    assert shape.tick() == (8, 2.0)
    shape.start_time -= 6
    shape._prepared_for = shape.start_time
    assert shape.tick() is None
    assert tracker(environment).meta() == {}


def test_bad_shape_options_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError, match="--sweep-levels"):
        make_shape("--load-shape", "sweep", "--sweep-levels", "1,x")
    with pytest.raises(ConfigError, match="--level-duration must be longer"):
        plan_levels([1, 2], 5.0, 5.0)


def test_measured_records_exclude_ramp_and_other_levels() -> None:
    shape, environment = make_shape("--load-shape", "sweep", "--sweep-levels", "2,4", "--level-duration", "10s",
                                    "--level-ramp", "3s")
    ticks(shape, [0, 10, 20])
    records = [record(0, 1001.0), record(0, 1004.0), record(1, 1012.0), record(1, 1015.0), record(1, 1021.0)]
    kept = [r for r in records if in_measured_window(environment, r)]
    assert [(r.level, r.started_at) for r in kept] == [(0, 1004.0), (1, 1015.0)]


def _level_groups(records: list[RequestRecord], level: int) -> list[GroupAccumulator]:
    aggregate = RunAccumulator()
    for r in records:
        aggregate.add(r)
    return aggregate.level_groups(level)


def test_judge_level_thresholds() -> None:
    level = Level(index=1, users=10, start_s=0, duration_s=10, ramp_s=2)
    good = [record(1, 0, ttft_ms=t) for t in range(100, 200)]
    assert not judge_level(level, _level_groups(good, 1), ttft_p95_limit_ms=500, error_rate_limit=0.05).broken
    slow = judge_level(level, _level_groups(good, 1), ttft_p95_limit_ms=150, error_rate_limit=0.05)
    assert slow.broken and "TTFT p95" in slow.reason and slow.ttft_p95_ms == pytest.approx(194.05)
    # Two scenarios in one level are judged together.
    failing = good + [record(1, 0, ok=False, scenario="other")] * 10
    verdict = judge_level(level, _level_groups(failing, 1), ttft_p95_limit_ms=0, error_rate_limit=0.05)
    assert verdict.broken and "error rate" in verdict.reason and verdict.requests == 110
    assert judge_level(level, [], 0, 0.05).broken


def test_breaking_point_stops_after_first_broken_level_and_reports_last_good() -> None:
    shape, environment = make_shape("--load-shape", "breaking_point", "--sweep-levels", "1,2,4,8",
                                    "--level-duration", "10s", "--level-ramp", "2s",
                                    "--breaking-ttft-p95-ms", "300", "--breaking-error-rate", "0.1")
    recorder = plugin.state(environment).recorder
    assert shape.level_tick(0, 1000.0) == (1, 1.0)
    for i in range(20):
        recorder.add(record(0, 1003.0 + i * 0.1, ttft_ms=100.0))
    assert shape.level_tick(10, 1010.0) == (2, 1.0)
    for i in range(20):
        recorder.add(record(1, 1013.0 + i * 0.1, ttft_ms=120.0))
    assert shape.level_tick(20, 1020.0) == (4, 1.0)
    for i in range(20):
        recorder.add(record(2, 1023.0 + i * 0.1, ttft_ms=900.0))
    assert shape.level_tick(30, 1030.0) is None
    meta = tracker(environment).meta()["breaking_point"]
    assert meta["last_good_level"] == 1 and meta["last_good_users"] == 2
    assert [v["broken"] for v in meta["verdicts"]] == [False, False, True]


def test_constant_arrivals_are_evenly_spaced() -> None:
    schedule = ArrivalSchedule(4.0, "constant", seed=0, start=10.0)
    assert [schedule.take() for _ in range(4)] == [10.0, 10.25, 10.5, 10.75]


def test_poisson_arrivals_are_seeded_with_the_requested_mean_rate() -> None:
    first = ArrivalSchedule(50.0, "poisson", seed=42, start=0.0)
    again = ArrivalSchedule(50.0, "poisson", seed=42, start=0.0)
    other = ArrivalSchedule(50.0, "poisson", seed=43, start=0.0)
    times = [first.take() for _ in range(20_000)]
    assert times[:100] == [again.take() for _ in range(100)]
    assert times[:100] != [other.take() for _ in range(100)]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert 1 / statistics.fmean(gaps) == pytest.approx(50.0, rel=0.03)
    # Exponential gaps: the standard deviation equals the mean (a constant process would have none).
    assert statistics.pstdev(gaps) == pytest.approx(statistics.fmean(gaps), rel=0.05)


def test_arrival_schedule_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="--arrival-rate"):
        ArrivalSchedule(0.0, "poisson", seed=0, start=0.0)
    with pytest.raises(ConfigError, match="--arrival-process"):
        ArrivalSchedule(1.0, "bursty", seed=0, start=0.0)


@pytest.mark.slow
@pytest.mark.parametrize(("option", "message"), [
    (["--load-shape", "sweep", "--sweep-levels", "1,x"], "--sweep-levels: '1,x' must be comma-separated"),
    (["--load-shape", "step", "--level-duration", "5s", "--level-ramp", "5s"], "--level-duration must be longer"),
    (["--arrival-rate", "-1"], "--arrival-rate must be >= 0"),
])
def test_bad_load_options_exit_2_with_one_line(option: list[str], message: str) -> None:
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-t", "2s", "--only-summary", *option],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
