"""A real headless `locust` run in a subprocess: the walking skeleton end to end, and its measurement accuracy.

Accuracy contract (issue 2): emulator at TTFT 200 ms / ITL 10 ms with 16 users; the measured TTFT p50 lies within
3 ms and the ITL p50 within 1 ms of the emulator's ground truth (what it actually did, per request: first content
byte sent minus request received; gaps between token sends).
"""

from __future__ import annotations

import json
import statistics
import subprocess

import pytest

from llmload.emulator import EmulatorProcess, MockConfiguration
from tests.conftest import LOCUST, REPO, locust_env

pytestmark = [pytest.mark.slow, pytest.mark.accuracy]


def test_headless_run_writes_results_and_is_accurate(tmp_path) -> None:
    config = MockConfiguration(ttft_ms=200, itl_ms=10, output_tokens=40)
    with EmulatorProcess("openai", config) as emu:
        proc = subprocess.run(
            [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "16", "-r", "16", "-t", "10s",
             "--host", f"{emu.url}/v1", "--scenario", "complex_query", "--run-name", "accuracy",
             "--report-dir", str(tmp_path), "--only-summary"],
            cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=90,
        )
        truth = [t for t in emu.truth() if t["first_content_at"] and t["tokens_sent"] == 40]
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = tmp_path / "accuracy"
    data = json.loads((run_dir / "result.json").read_text())
    assert "complex_query" in (run_dir / "report.html").read_text()
    (result,) = data["results"]
    assert result["provider"] == "openai" and result["scenario"] == "complex_query"
    assert result["requests_ok"] >= 100 and result["requests_failed"] == 0
    assert result["tokens"]["output_tokens"] == 40 * result["requests_ok"]
    assert "llmload results (accuracy)" in proc.stdout
    # Locust's own tables carry the TTFT and ITL rows too.
    assert "TTFT" in proc.stderr + proc.stdout and "ITL" in proc.stderr + proc.stdout

    truth_ttft = statistics.median((t["first_content_at"] - t["received_at"]) * 1000 for t in truth)
    truth_itl = statistics.median((t["last_content_at"] - t["first_content_at"]) * 1000 / 39 for t in truth)
    measured_ttft = result["ttft"]["p50"]
    measured_itl = result["itl"]["p50"]
    print(f"TTFT p50 measured {measured_ttft:.2f} truth {truth_ttft:.2f}; ITL p50 {measured_itl:.3f} / {truth_itl:.3f}")
    assert abs(measured_ttft - truth_ttft) <= 3.0
    assert abs(measured_itl - truth_itl) <= 1.0
