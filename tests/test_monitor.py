"""Live monitoring: rolling window, thresholds, alerts (log, webhook), --fail-on, the web UI tab and /metrics."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from llmload.errors import ConfigError
from llmload.history import HistoryStore
from llmload.live import Alert, Monitor, load_thresholds, parse_fail_on, parse_thresholds, post_webhook
from llmload.metrics import RequestRecord
from tests.conftest import LOCUST, REPO, locust_env


def record(done_at: float, *, ok: bool = True, ttft: float = 100.0, itl: float = 10.0, tokens: int = 5,
           model: str = "m") -> RequestRecord:
    e2e = ttft + itl * (tokens - 1)
    return RequestRecord(provider="openai", model=model, scenario="s", endpoint="chat",
                         started_at=done_at - e2e / 1000.0, ok=ok, e2e_ms=e2e, ttft_ms=ttft if ok else None,
                         itl_ms=[itl] * (tokens - 1) if ok else [], output_tokens=tokens if ok else 0)


class Receiver:
    """A local webhook receiver on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        bodies: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self.bodies = bodies
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_thresholds_validate_with_one_line_errors(tmp_path: Path) -> None:
    parsed = parse_thresholds({"ttft_p95_ms": {"max": 800}, "output_tokens_per_s": {"max_decrease_pct": 30}})
    assert parsed["ttft_p95_ms"].max == 800 and parsed["output_tokens_per_s"].relative
    bad = [
        ({"ttft_p99_ms": {"max": 1}}, "unknown metric 'ttft_p99_ms'"),
        ({"ttft_p95_ms": 800}, "must be a mapping"),
        ({"ttft_p95_ms": {"maximum": 800}}, "ttft_p95_ms.maximum is not a limit"),
        ({"error_rate": {"max": "high"}}, "error_rate.max must be a number"),
        ({"error_rate": {"max": -1}}, "must be a number >= 0"),
        ([1, 2], "must be a mapping of metric"),
    ]
    for data, message in bad:
        with pytest.raises(ConfigError, match=message) as info:
            parse_thresholds(data)
        assert "\n" not in str(info.value)
    broken = tmp_path / "t.yaml"
    broken.write_text("ttft_p95_ms: {max: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_thresholds(str(broken))
    with pytest.raises(ConfigError, match="no such file"):
        load_thresholds(str(tmp_path / "missing.yaml"))
    assert parse_fail_on("ttft_p95, error_rate") == {"ttft_p95_ms", "error_rate"}
    with pytest.raises(ConfigError, match="unknown metric 'latency'"):
        parse_fail_on("latency")


def test_example_thresholds_file_is_valid() -> None:
    assert set(load_thresholds(str(REPO / "config" / "thresholds.example.yaml"))) == {
        "ttft_p95_ms", "itl_p50_ms", "error_rate", "output_tokens_per_s"}


def test_rolling_window_figures_and_expiry() -> None:
    now = 1000.0
    monitor = Monitor(window_s=10.0)
    for i in range(20):
        monitor(record(now - 9.5 + i * 0.5, ttft=100.0 + i, tokens=11))
    monitor(record(now - 1.0, ok=False))
    (stats,) = monitor.snapshot(now)
    assert stats.requests == 21
    assert stats.ttft_p95_ms == pytest.approx(118.05, abs=0.01)
    assert stats.itl_p50_ms == pytest.approx(10.0)
    assert stats.error_rate == pytest.approx(1 / 21)
    # The window has covered 9.5 s of completions so far (the oldest is 9.5 s old), not the full 10 s.
    assert stats.output_tokens_per_s == pytest.approx(20 * 11 / 9.5)
    # Five seconds later the older half has left the window.
    (later,) = monitor.snapshot(now + 5.0)
    assert later.requests == 12


def test_alerts_fire_once_per_breach_and_use_the_baseline() -> None:
    now = time.time()
    monitor = Monitor(thresholds=parse_thresholds({"ttft_p95_ms": {"max_increase_pct": 20},
                                                   "error_rate": {"max": 0.1}}),
                      fail_on={"error_rate"}, baseline={("openai", "m"): {"ttft_p95_ms": 100.0}})
    for i in range(10):
        monitor(record(now - i * 0.1, ttft=150.0))
    alerts = monitor.check(now)
    assert [a.metric for a in alerts] == ["ttft_p95_ms"]
    assert "+50.0% vs baseline" in alerts[0].message and not alerts[0].fail
    assert monitor.check(now) == []
    for i in range(5):
        monitor(record(now - i * 0.1, ok=False))
    (error_alert,) = monitor.check(now)
    assert error_alert.metric == "error_rate" and error_alert.fail
    # Too few requests in the window: nothing is judged.
    quiet = Monitor(thresholds=parse_thresholds({"ttft_p95_ms": {"max": 1}}))
    quiet(record(now, ttft=500.0))
    assert quiet.check(now) == []


def test_webhook_posts_json(receiver: Receiver) -> None:
    alert = Alert(1.0, "openai", "m", "ttft_p95_ms", "openai:m: ttft_p95_ms 900 > max 800", 900.0, True)
    post_webhook(receiver.url, alert)
    assert receiver.bodies == [{"source": "llmload", **alert.to_dict()}]
    # An unreachable webhook is logged, not raised.
    post_webhook("http://127.0.0.1:9/hook", alert, timeout_s=2)


@pytest.mark.slow
def test_fail_on_stops_the_run_with_exit_3_and_alerts(tmp_path: Path, receiver: Receiver) -> None:
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("ttft_p95_ms: {max: 60}\n")
    started = time.monotonic()
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "6", "-r", "6", "-t", "40s", "--run-name", "slo",
         "--only-summary", "--report-dir", str(tmp_path), "--no-html", "--emulator-ttft-ms", "200",
         "--emulator-output-tokens", "4", "--emulator-itl-ms", "5", "--thresholds", str(thresholds),
         "--fail-on", "ttft_p95", "--alert-webhook", receiver.url],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=90,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert elapsed < 35, "the run should stop at the breach, long before -t 40s"
    assert "SLO breach" in proc.stderr and "ttft_p95_ms" in proc.stderr
    assert len(receiver.bodies) >= 1
    body = receiver.bodies[0]
    assert body["metric"] == "ttft_p95_ms" and body["fail"] is True and body["value"] > 60
    # Without --history-db the run lands in history.db inside its --report-dir.
    with HistoryStore(str(tmp_path / "history.db")) as store:
        assert [r.run_id for r in store.runs()] == ["slo"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.headers.get("Content-Type", ""), response.read().decode()


@pytest.mark.slow
def test_web_ui_llm_tab_json_and_prometheus(tmp_path: Path) -> None:
    port, prometheus_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [LOCUST, "-f", "locustfiles/chat.py", "--web-host", "127.0.0.1", "--web-port", str(port),
         "--report-dir", str(tmp_path), "--no-html", "--no-history", "--emulator-ttft-ms", "50",
         "--emulator-output-tokens", "6", "--emulator-itl-ms", "10", "--prometheus-port", str(prometheus_port)],
        cwd=REPO, env=locust_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _, index = _get(base + "/")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "locust web UI did not come up"
                time.sleep(0.3)
        assert '"extended_tabs": [{"key": "llm", "title": "LLM"}]' in index, index[-1500:]
        form = urllib.parse.urlencode({"user_count": 4, "spawn_rate": 4, "host": ""}).encode()
        with urllib.request.urlopen(urllib.request.Request(base + "/swarm", data=form), timeout=5) as response:
            assert json.loads(response.read())["success"] is True
        swarmed = time.monotonic()
        stats: list[dict[str, Any]] = []
        while time.monotonic() - swarmed < 10:
            stats = json.loads(_get(base + "/llm/stats")[1])["stats"]
            if stats and stats[0]["ttft_p95_ms"] is not None and stats[0]["output_tokens_per_s"] > 0:
                break
            time.sleep(0.5)
        assert stats, "no live LLM figures within 10 s of starting the run"
        row = stats[0]
        assert row["provider"] == "openai" and 40 <= row["ttft_p95_ms"] <= 2000 and row["itl_p50_ms"] >= 5
        tab = json.loads(_get(base + "/stats/requests")[1])["extended_stats"]
        assert tab[0]["key"] == "llm" and tab[0]["data"][0]["name"].startswith("openai:")
        content_type, metrics = _get(base + "/metrics")
        assert content_type.startswith("text/plain")
        gauge = [line for line in metrics.splitlines() if line.startswith("llmload_ttft_p95_ms{")]
        assert gauge and 40 <= float(gauge[0].rsplit(" ", 1)[1]) <= 2000
        _, standalone = _get(f"http://127.0.0.1:{prometheus_port}/metrics")
        assert "llmload_output_tokens_per_s{" in standalone and 'provider="openai"' in standalone
        _, page = _get(base + "/llm")
        assert "llm/stats" in page
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_bad_thresholds_file_exits_2_with_one_line(tmp_path: Path) -> None:
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("ttft_p95_ms: {maximum: 800}\n")
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "1", "-r", "1", "-t", "3s", "--report-dir",
         str(tmp_path), "--thresholds", str(thresholds)],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "ttft_p95_ms.maximum is not a limit" in errors[0]
    assert not (tmp_path / "history.db").exists()
