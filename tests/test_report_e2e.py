"""Real locust runs write result.json, result.csv and report.html: headless at the end, web UI when stopped."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

import llmload
from tests.conftest import LOCUST, REPO, locust_env

pytestmark = pytest.mark.slow

EMULATOR_ARGS = ["--emulator-ttft-ms", "30", "--emulator-itl-ms", "5", "--emulator-output-tokens", "8"]


def _check_outputs(run_dir: Path) -> None:
    result = json.loads((run_dir / "result.json").read_text())
    csv = pd.read_csv(run_dir / "result.csv")
    assert len(csv) == len(result["results"]) >= 1
    first = result["results"][0]
    assert csv.loc[0, "requests_total"] == first["requests_total"] > 0
    assert csv.loc[0, "ttft_p50_ms"] == pytest.approx(first["ttft"]["p50"])
    frame = llmload.load_results(str(run_dir))
    assert list(frame["provider"]) == list(csv["provider"])
    html = (run_dir / "report.html").read_text()
    assert 'id="chart-e2e-dist"' in html and "Configuration and environment" in html


def test_headless_run_writes_csv_and_report(tmp_path: Path) -> None:
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "4", "-r", "4", "-t", "4s", "--run-name", "hl",
         "--report-dir", str(tmp_path), "--only-summary", "--no-history", *EMULATOR_ARGS],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_outputs(tmp_path / "hl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_web_ui_run_writes_report_when_stopped(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [LOCUST, "-f", "locustfiles/chat.py", "--web-host", "127.0.0.1", "--web-port", str(port), "--run-name",
         "webui", "--report-dir", str(tmp_path), "--no-history", *EMULATOR_ARGS],
        cwd=REPO, env=locust_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/", timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "locust web UI did not come up"
                time.sleep(0.3)
        form = urllib.parse.urlencode({"user_count": 4, "spawn_rate": 4, "host": ""}).encode()
        urllib.request.urlopen(urllib.request.Request(base + "/swarm", data=form), timeout=5).close()
        time.sleep(3)
        urllib.request.urlopen(urllib.request.Request(base + "/stop", method="POST"), timeout=5).close()
        report = tmp_path / "webui" / "report.html"
        deadline = time.monotonic() + 30
        while not report.exists():
            assert time.monotonic() < deadline, "the web UI run wrote no report after /stop"
            time.sleep(0.3)
        _check_outputs(tmp_path / "webui")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
