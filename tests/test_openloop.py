"""Open-loop arrivals in a real headless run: a rate the users cannot keep up with against a slow emulator.

Two users (max in-flight 2) against ~0.4 s requests serve at most ~5 requests/s; asking for 15/s must show up as
schedule lag (reported as a warning), with latency measured from the schedule, never hidden (no coordinated
omission), and the emulator must never see more than two requests in flight.
"""

from __future__ import annotations

import gzip
import json
import subprocess

import pytest

from llmload.emulator import EmulatorProcess, MockConfiguration
from tests.conftest import LOCUST, REPO, locust_env

pytestmark = pytest.mark.slow


def _max_in_flight(truth: list[dict]) -> int:
    edges = sorted([(t["received_at"], 1) for t in truth] + [(t["done_at"] or t["received_at"], -1) for t in truth],
                   key=lambda edge: (edge[0], edge[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_open_loop_behind_schedule_reports_lag(tmp_path) -> None:
    config = MockConfiguration(ttft_ms=300, itl_ms=10, output_tokens=10)
    with EmulatorProcess("openai", config) as emu:
        proc = subprocess.run(
            [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "2", "-r", "2", "-t", "5s",
             "--stop-timeout", "2", "--arrival-rate", "15", "--arrival-process", "constant", "--start-jitter", "0",
             "--host", f"{emu.url}/v1", "--run-name", "openloop", "--report-dir", str(tmp_path), "--only-summary",
             "--no-html"],
            cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=90,
        )
        truth = emu.truth()
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "openloop" / "result.json").read_text())
    (result,) = data["results"]
    assert result["requests_ok"] >= 5 and result["requests_failed"] == 0
    assert result["schedule_lag"]["p99"] > 100.0
    assert any("fell behind schedule" in w for w in result["warnings"])
    assert any("fell behind schedule" in w for w in data["meta"]["warnings"])
    assert "fell behind schedule" in proc.stdout
    assert result["e2e_from_schedule"]["p50"] >= result["e2e"]["p50"]
    with gzip.open(tmp_path / "openloop" / "records.jsonl.gz", "rt") as lines:
        records = [json.loads(line) for line in lines]
    finished = [r for r in records if r["ok"]]
    assert finished and all(r["e2e_from_schedule_ms"] >= r["e2e_ms"] for r in finished)
    # Lag grows while the generator is behind: the last requests waited far longer than the first.
    lags = [r["schedule_lag_ms"] for r in sorted(finished, key=lambda r: r["started_at"])]
    assert lags[-1] > lags[0] + 500
    assert _max_in_flight(truth) <= 2


def test_open_loop_with_spare_users_keeps_the_arrival_rate(tmp_path) -> None:
    config = MockConfiguration(ttft_ms=30, itl_ms=3, output_tokens=5)
    with EmulatorProcess("openai", config) as emu:
        proc = subprocess.run(
            [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "10", "-r", "10", "-t", "5s",
             "--stop-timeout", "2", "--arrival-rate", "10", "--arrival-process", "poisson", "--arrival-seed", "3",
             "--start-jitter", "0", "--host", f"{emu.url}/v1", "--run-name", "rate", "--report-dir", str(tmp_path),
             "--only-summary", "--no-html"],
            cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=90,
        )
        truth = emu.truth()
    assert proc.returncode == 0, proc.stderr[-3000:]
    span = max(t["received_at"] for t in truth) - min(t["received_at"] for t in truth)
    # ~10/s for ~4-5 s; Poisson counts over ~45 expected arrivals stay well inside these bounds.
    assert 20 <= len(truth) <= 80
    assert 6.0 <= (len(truth) - 1) / span <= 15.0
