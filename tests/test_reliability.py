"""Reliability metrics: unit checks on built timelines, and an injected outage measured end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from llmload.errors import ConfigError
from llmload.metrics import RequestRecord
from llmload.reliability import parse_outage, reliability_metrics
from tests.conftest import LOCUST, REPO, locust_env

T0 = 1_700_000_000.0


def _rec(at_s: float, ok: bool) -> RequestRecord:
    """A request completing ``at_s`` after T0 (10 ms long)."""
    return RequestRecord(
        provider="p", model="m", scenario="s", endpoint="chat", started_at=T0 + at_s - 0.01, ok=ok, e2e_ms=10.0,
        error_kind=None if ok else "overloaded",
    )


def test_steady_success_is_full_uptime_without_incidents() -> None:
    stats = reliability_metrics([_rec(i * 0.1, True) for i in range(100)])
    assert stats["uptime_pct"] == 100.0 and stats["incidents"] == 0
    assert stats["mtbf_s"] is None and stats["mttr_s"] is None and stats["error_rate"] == 0.0


def test_scattered_errors_are_not_downtime() -> None:
    recs = [_rec(i * 0.1, i % 2 == 0) for i in range(100)]
    stats = reliability_metrics(recs)
    assert stats["uptime_pct"] == 100.0 and stats["incidents"] == 0
    assert stats["error_rate"] == pytest.approx(0.5)


def test_an_outage_is_one_incident_with_its_recovery_time() -> None:
    # Success every 100 ms for 10 s, except a failure-only stretch from 3.0 s to 6.0 s.
    recs = [_rec(i * 0.1, not 3.0 <= i * 0.1 < 6.0) for i in range(100)]
    stats = reliability_metrics(recs, outage_end=T0 + 6.0)
    assert stats["incidents"] == 1
    assert stats["mttr_s"] == pytest.approx(3.0, abs=0.11)
    assert stats["uptime_pct"] == pytest.approx(70.0, abs=10.0)
    assert stats["mtbf_s"] == pytest.approx(7.0, abs=1.0)
    assert stats["open_incident"] is False
    assert stats["outage_recovery_s"] == pytest.approx(0.0, abs=0.11)


def test_a_run_ending_in_failure_has_an_open_incident() -> None:
    recs = [_rec(i * 0.1, i < 50) for i in range(100)]
    stats = reliability_metrics(recs, outage_end=T0 + 6.0)
    assert stats["open_incident"] is True and stats["incidents"] == 0
    assert stats["outage_recovery_s"] is None


@pytest.mark.parametrize("spec", ["5", "a,b", "10,5", "-1,3", "1,2,3"])
def test_bad_outage_windows_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="--emulator-outage"):
        parse_outage(spec)


def test_outage_window_parses() -> None:
    assert parse_outage("5,10") == (5.0, 10.0) and parse_outage("") is None


@pytest.mark.slow
def test_injected_outage_is_measured_end_to_end(tmp_path: Path) -> None:
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "4", "-r", "4", "-t", "9s", "--emulator", "always",
         "--emulator-ttft-ms", "20", "--emulator-itl-ms", "2", "--emulator-output-tokens", "8",
         "--emulator-outage", "3,6", "--start-jitter", "0", "--run-name", "outage", "--report-dir", str(tmp_path),
         "--only-summary", "--csv", str(tmp_path / "locust")],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    data = json.loads((tmp_path / "outage" / "result.json").read_text())
    (result,) = data["results"]
    rel = result["reliability"]
    # Requests cut off by the run's end are counted as "interrupted", not as outage failures.
    assert set(result["errors_by_kind"]) - {"interrupted"} == {"overloaded"}
    assert rel["incidents"] >= 1
    # The outage is 3 s long; the longest incident covers it (client-side timing, generous bounds).
    assert 2.0 <= rel["longest_incident_s"] <= 4.5
    assert rel["uptime_pct"] < 90.0
    assert rel["outage_recovery_s"] is not None and 0.0 <= rel["outage_recovery_s"] < 1.5
    assert data["meta"]["emulator"]["outage"] == [3.0, 6.0]
