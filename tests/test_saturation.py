"""Generator saturation detection: event-loop lag and CPU figures, warnings on results, result.json meta."""

from __future__ import annotations

import json
import subprocess
import time

import gevent
import pytest
from locust.env import Environment

from llmload import saturation
from tests.conftest import LOCUST, REPO, locust_env
from tests.report_fixtures import synthetic_result

CALM = {"cpu_p95": 20.0, "loop_lag_p50_ms": 0.5, "loop_lag_p99_ms": 1.0, "cpu_samples": 30, "lag_samples": 300}


def test_blocking_the_event_loop_shows_up_as_lag() -> None:
    mon = saturation.SaturationMonitor()
    mon.start()
    try:
        for _ in range(4):
            gevent.sleep(0.01)
            time.sleep(0.15)  # work that never yields, as on a saturated generator; spans a sampler wake-up
    finally:
        mon.stop()
    figures = mon.figures()
    assert figures["lag_samples"] >= 3
    # A 150 ms stretch over a 100 ms sampling interval delays some wake-up by at least 50 ms.
    assert figures["loop_lag_max_ms"] >= 30


def test_warnings_name_the_signal_and_threshold() -> None:
    assert saturation.warnings_for(CALM) == []
    (cpu,) = saturation.warnings_for({**CALM, "cpu_p95": 97.0})
    assert "CPU p95 97%" in cpu
    (lag,) = saturation.warnings_for({**CALM, "loop_lag_p99_ms": 25.0}, "worker w1")
    assert lag.startswith("worker w1") and "25.0 ms" in lag
    # Too few lag samples: p99 is the maximum, which user start/stop dominates; no verdict from it...
    assert saturation.warnings_for({**CALM, "loop_lag_p99_ms": 25.0, "lag_samples": 20}) == []
    # ...unless the typical sample is late: a saturated loop takes few samples because each waits out its lag.
    (sustained,) = saturation.warnings_for({**CALM, "loop_lag_p50_ms": 130.0, "loop_lag_p99_ms": 880.0,
                                            "lag_samples": 47})
    assert "p50 130.0 ms" in sustained


def test_apply_warns_every_result_and_records_worker_figures() -> None:
    environment = Environment()
    saturation.monitor(environment)
    environment.llmload_worker_generators = {  # type: ignore[attr-defined]
        "w1": CALM, "w2": {**CALM, "cpu_p95": 99.0},
    }
    results = [synthetic_result(provider="p", model="m", scenario=s) for s in ("a", "b")]
    meta: dict = {}
    found = saturation.apply(environment, results, meta)
    assert len(found) == 1 and "worker w2" in found[0]
    assert all(found[0] in r.warnings for r in results)
    assert meta["generator"]["workers"]["w2"]["cpu_p95"] == 99.0
    assert meta["generator"]["cpu_limit_pct"] == saturation.CPU_LIMIT_PCT


@pytest.mark.slow
@pytest.mark.parametrize("processes", [0, 2])
def test_headless_fast_run_records_generator_figures(tmp_path, processes: int) -> None:
    extra = ["--processes", str(processes)] if processes else []
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "8", "-r", "8", "-t", "6s", *extra,
         "--provider", "openai-fast", "--run-name", "gen", "--report-dir", str(tmp_path), "--only-summary",
         "--no-html", "--emulator-ttft-ms", "50", "--emulator-itl-ms", "5"],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result_json = tmp_path / "gen" / "result.json"
    assert result_json.exists(), proc.stderr[-2000:]
    data = json.loads(result_json.read_text())
    generator = data["meta"]["generator"]
    # Distributed: each worker's figures arrive through report_to_master; locally, the process's own.
    per_process = list(generator["workers"].values()) if processes else [generator]
    assert len(per_process) == (processes or 1)
    for figures in per_process:
        assert figures["lag_samples"] >= 10 and figures["cpu_samples"] >= 1
        assert 0.0 <= figures["loop_lag_p50_ms"] <= figures["loop_lag_p99_ms"] <= figures["loop_lag_max_ms"]
    (result,) = data["results"]
    assert result["provider"] == "openai-fast" and result["requests_ok"] >= 20 and result["requests_failed"] == 0
