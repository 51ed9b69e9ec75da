"""Interrupted runs write what they measured, marked partial; a lost worker does not stop the master.

Real ``locust`` subprocesses against the embedded emulator: SIGINT/SIGTERM mid-run (single process and a
distributed master), and a worker killed with SIGKILL mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import LOCUST, REPO, locust_env
from tests.raw_http import free_port

pytestmark = pytest.mark.slow

FAST_EMULATOR = ["--emulator", "always", "--emulator-ttft-ms", "20", "--emulator-itl-ms", "2",
                 "--emulator-output-tokens", "8"]


def _emulator_children(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "emulate" in " ".join(c.cmdline())]


def _wait_for_spawn(log: Path, proc: subprocess.Popen[str], then_s: float) -> None:
    """Wait (on a loaded machine, up to a minute) until every user spawned, then ``then_s`` more seconds."""
    deadline = time.monotonic() + 60
    while "All users spawned" not in log.read_text():
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "locust never spawned its users"
        time.sleep(0.2)
    time.sleep(then_s)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_run_writes_partial_results(tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "locust.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "4", "-r", "4", "-t", "120s", *FAST_EMULATOR,
             "--run-name", "interrupted", "--report-dir", str(tmp_path), "--only-summary"],
            cwd=REPO, env=locust_env(), stdout=subprocess.DEVNULL, stderr=log_file, text=True,
        )
    _wait_for_spawn(log, proc, 2.0)
    emulators = _emulator_children(proc.pid)
    assert emulators, "the plugin started no emulator subprocess"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    stderr = log.read_text()
    data = json.loads((tmp_path / "interrupted" / "result.json").read_text())
    assert data["meta"]["partial"] is True
    assert data["meta"]["interrupted_by"] == sig.name
    (result,) = data["results"]
    assert result["partial"] is True and result["requests_ok"] > 0
    assert (tmp_path / "interrupted" / "report.html").exists()
    assert "did not reach its planned end" in stderr
    gone, alive = psutil.wait_procs(emulators, timeout=10)
    assert not alive, "the emulator subprocess outlived locust"


def test_completed_run_is_not_partial(tmp_path: Path) -> None:
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "2", "-r", "2", "-t", "3s", *FAST_EMULATOR,
         "--run-name", "whole", "--report-dir", str(tmp_path), "--only-summary"],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "whole" / "result.json").read_text())
    assert data["meta"]["partial"] is False and data["meta"]["interrupted_by"] is None
    assert data["results"][0]["partial"] is False


def test_master_keeps_going_without_a_killed_worker(tmp_path: Path) -> None:
    port = free_port()
    env = locust_env()
    log = tmp_path / "master.log"
    with log.open("w") as log_file:
        master = subprocess.Popen(
            [LOCUST, "-f", "locustfiles/chat.py", "--headless", "--master", "--expect-workers", "2",
             "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "-u", "4", "-r", "4", "-t", "14s",
             *FAST_EMULATOR, "--run-name", "lostworker", "--report-dir", str(tmp_path), "--only-summary"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log_file, text=True,
        )
    workers = [
        subprocess.Popen(
            [LOCUST, "-f", "locustfiles/chat.py", "--worker", "--master-host", "127.0.0.1", "--master-port",
             str(port)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )
        for _ in range(2)
    ]
    try:
        _wait_for_spawn(log, master, 2.0)
        os.kill(workers[0].pid, signal.SIGKILL)
        master.wait(timeout=120)
        stderr = log.read_text()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
            worker.wait(timeout=30)
        if master.poll() is None:
            master.kill()
    data = json.loads((tmp_path / "lostworker" / "result.json").read_text())
    assert len(data["meta"]["lost_workers"]) == 1
    assert data["meta"]["partial"] is True
    assert "stopped sending heartbeats" in stderr
    (result,) = data["results"]
    assert result["requests_ok"] > 0
    # The surviving worker kept going: requests still completed in the run's last seconds.
    assert any(point["ok"] > 0 for point in result["timeline"] if point["t"] >= result["duration_s"] - 3)
