"""Canary credentials never leave the process; names from config and the target are escaped in the HTML report.

The canaries are planted in the environment of real headless ``locust`` runs that *send* them: to the emulator via
``--host`` (successful requests), and to a server that rejects them with 401 and echoes them back in the error
body, as some real APIs echo a key prefix. Every file the runs write and everything they print is then searched.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from llmload.emulator import EmulatorProcess, MockConfiguration
from tests.conftest import LOCUST, REPO, locust_env
from tests.raw_http import RawHTTPServer, free_port

pytestmark = pytest.mark.slow

# Shapes the generic key patterns do not catch: only the registered-secret path can redact these.
CANARIES = {
    "OPENAI_API_KEY": "canaryOPENAI0123456789abcdef",
    "ANTHROPIC_API_KEY": "canaryANTHROPIC0123456789abcdef",
    "AWS_ACCESS_KEY_ID": "canaryAWSID0123456789",
    "AWS_SECRET_ACCESS_KEY": "canaryAWSSECRET0123456789abcdef",
}


def _echo_headers(head: bytes) -> bytes:
    """401 with a JSON error that quotes the request's headers back, as some APIs echo a key prefix."""
    body = json.dumps({"error": {"message": f"Incorrect API key provided. You sent: {head.decode('latin-1')}",
                                 "type": "invalid_request_error", "code": "invalid_api_key"}}).encode()
    return (
        b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )


@pytest.fixture()
def echo_server() -> Iterator[RawHTTPServer]:
    server = RawHTTPServer(_echo_headers)
    yield server
    server.close()


def _all_output(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, gzip files (records.jsonl.gz) decompressed."""
    return {
        str(p): gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_canary_keys_appear_in_no_output(tmp_path: Path, echo_server: RawHTTPServer) -> None:
    env = {**locust_env(), **CANARIES, "AWS_REGION": "us-east-1"}
    with EmulatorProcess("all", MockConfiguration(ttft_ms=10, itl_ms=1, output_tokens=6)) as emu:
        runs = {
            "to_emulator": ["--host", f"{emu.url}/v1"],
            "auth_errors": ["--host", f"{echo_server.url}/v1"],
            "embedded": ["--emulator", "always", "--emulator-error-rate", "0.5",
                         "--emulator-faults", "server_error=1,midstream_error=1"],
        }
        procs = {
            name: subprocess.Popen(
                [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "2", "-r", "2", "-t", "3s", *args,
                 "--run-name", name, "--report-dir", str(tmp_path / "reports"), "--csv", str(tmp_path / name),
                 "--html", str(tmp_path / f"{name}-locust.html"), "--loglevel", "DEBUG"],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for name, args in runs.items()
        }
        outputs = {name: proc.communicate(timeout=90) for name, proc in procs.items()}
    auth = json.loads((tmp_path / "reports" / "auth_errors" / "result.json").read_text())
    assert auth["results"][0]["errors_by_kind"].get("auth", 0) > 0, "the echoing server was not reached"
    sent = json.loads((tmp_path / "reports" / "to_emulator" / "result.json").read_text())
    assert sent["results"][0]["requests_ok"] > 0
    texts = {f"{name} stdout": out for name, (out, _) in outputs.items()}
    texts |= {f"{name} stderr": err for name, (_, err) in outputs.items()}
    files = _all_output(tmp_path)
    assert any(path.endswith("result.json") for path in files) and any(path.endswith(".csv") for path in files)
    assert any(path.endswith(".jsonl.gz") for path in files)
    for var, canary in CANARIES.items():
        for where, text in texts.items():
            assert canary not in text, f"{var} leaked into {where}"
        for path, content in files.items():
            assert canary.encode() not in content, f"{var} leaked into {path}"


def test_report_escapes_scenario_and_model_names(tmp_path: Path) -> None:
    evil_scenario = "<script>alert('scenario')</script>"
    evil_model = "<img src=x onerror=alert(1)>"
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text(json.dumps({"scenarios": {evil_scenario: {"prompts": ["<script>alert('prompt')</script>"],
                                                                   "max_tokens": 8}}}))
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "1", "-r", "1", "-t", "2s", "--emulator", "always",
         "--emulator-ttft-ms", "10", "--emulator-itl-ms", "1", "--scenarios-file", str(scenarios),
         "--scenario", evil_scenario, "--model", evil_model, "--run-name", "xss", "--report-dir", str(tmp_path),
         "--only-summary"],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = (tmp_path / "xss" / "report.html").read_text()
    assert "alert(&#39;scenario&#39;)" in html or "alert(\\u0027scenario\\u0027)" in html, "scenario name missing"
    for raw in (evil_scenario, evil_model, "<script>alert('prompt')"):
        assert raw not in html, f"unescaped in report.html: {raw}"


def test_web_ui_binds_to_loopback_by_default() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [LOCUST, "-f", "locustfiles/chat.py", "--web-port", str(port)],
        cwd=REPO, env=locust_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Starting web interface" in line:
                break
        assert f"http://127.0.0.1:{port}" in line, line
        # The log line comes just before the server binds: poll briefly.
        deadline = time.monotonic() + 10
        listening: list[Any] = []
        while not listening and time.monotonic() < deadline:
            time.sleep(0.2)
            listening = [
                c.laddr for c in psutil.Process(proc.pid).net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr.port == port
            ]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
    finally:
        proc.terminate()
        proc.wait(timeout=30)
