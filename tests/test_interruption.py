"""Interrupted runs write what they measured, marked partial; a lost worker does not stop the master.

Real ``locust`` subprocesses against emulators: SIGINT/SIGTERM mid-run (single process, and a distributed master
checked against the emulator's count of the requests it received), a signal to a master still waiting for its
workers, and a worker killed with SIGKILL mid-run.
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

from llmload.emulator import EmulatorProcess, MockConfiguration
from llmload.history import HistoryStore
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


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda sig: sig.name)
def test_signal_mid_run_writes_partial_results(tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "locust.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "4", "-r", "4", "-t", "120s", *FAST_EMULATOR,
             "--run-name", "interrupted", "--report-dir", str(tmp_path), "--history-db", str(tmp_path / "h.db"),
             "--only-summary"],
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
    with HistoryStore(str(tmp_path / "h.db")) as store:
        (stored,) = store.runs(run_id="interrupted")
    assert stored.meta["partial"] is True and stored.results[0].requests_ok == result["requests_ok"]
    assert "did not reach its planned end" in stderr
    gone, alive = psutil.wait_procs(emulators, timeout=10)
    assert not alive, "the emulator subprocess outlived locust"


def _start_master(port: int, log: Path, *options: str) -> subprocess.Popen[str]:
    """A headless master on 127.0.0.1:``port`` that expects two workers; its stderr goes to ``log``."""
    with log.open("w") as log_file:
        return subprocess.Popen(
            [LOCUST, "-f", "locustfiles/chat.py", "--headless", "--master", "--expect-workers", "2",
             "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--only-summary", *options],
            cwd=REPO, env=locust_env(), stdout=subprocess.DEVNULL, stderr=log_file, text=True,
        )


def _start_workers(port: int, count: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [LOCUST, "-f", "locustfiles/chat.py", "--worker", "--master-host", "127.0.0.1", "--master-port",
             str(port)],
            cwd=REPO, env=locust_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )
        for _ in range(count)
    ]


def _end(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda sig: sig.name)
def test_signal_to_distributed_master_loses_no_record(tmp_path: Path, sig: signal.Signals) -> None:
    """The workers' records of the last report interval (Locust reports every 3 s) reach the results: every
    request the emulator received has a record, the run is stored in history marked partial, the workers quit."""
    port = free_port()
    log = tmp_path / "master.log"
    history = tmp_path / "history.db"
    config = MockConfiguration(ttft_ms=20, itl_ms=2, output_tokens=8)
    with EmulatorProcess("openai", config) as emu:
        master = _start_master(port, log, "-u", "4", "-r", "4", "-t", "120s", "-H", f"{emu.url}/v1", "--emulator",
                               "never", "--run-name", "dist-interrupted", "--report-dir", str(tmp_path),
                               "--history-db", str(history))
        workers = _start_workers(port, 2)
        try:
            # Mid report interval: up to 3 s of records are still on the workers' side when the signal comes.
            _wait_for_spawn(log, master, 4.5)
            master.send_signal(sig)
            assert master.wait(timeout=60) in (0, 1), log.read_text()[-2000:]
            for worker in workers:
                worker.wait(timeout=30)
        finally:
            _end([master, *workers])
        received = len(emu.truth())
    data = json.loads((tmp_path / "dist-interrupted" / "result.json").read_text())
    meta = data["meta"]
    assert meta["partial"] is True and meta["interrupted_by"] == sig.name
    (result,) = data["results"]
    assert result["requests_ok"] > 0
    # A request can be cut off before the emulator saw it (counted interrupted), never the other way round.
    assert meta["records"] - meta["interrupted_requests"] <= received <= meta["records"], (meta, received)
    with HistoryStore(str(history)) as store:
        (stored,) = store.runs(run_id="dist-interrupted")
    assert stored.meta["partial"] is True
    assert stored.results[0].requests_total == result["requests_total"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda sig: sig.name)
def test_signal_while_master_waits_for_workers(tmp_path: Path, sig: signal.Signals) -> None:
    """Locust handles no signal while a headless master waits for --expect-workers: llmload ends it with one
    line, tells the connected worker to quit, stops the embedded emulator and exits 128 + the signal number."""
    port = free_port()
    log = tmp_path / "master.log"
    master = _start_master(port, log, "-u", "2", "-r", "2", "-t", "30s", *FAST_EMULATOR, "--run-name",
                           "never-started", "--report-dir", str(tmp_path))
    workers = _start_workers(port, 1)
    try:
        deadline = time.monotonic() + 60
        while "1 of 2 connected" not in log.read_text():
            assert master.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the worker never connected"
            time.sleep(0.2)
        emulators = _emulator_children(master.pid)
        assert emulators, "the plugin started no emulator subprocess"
        master.send_signal(sig)
        assert master.wait(timeout=30) == 128 + sig
        assert workers[0].wait(timeout=30) == 0
    finally:
        _end([master, *workers])
    stderr = log.read_text()
    assert f"{sig.name} while waiting for workers (1 of 2 connected)" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "never-started").exists()
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
    log = tmp_path / "master.log"
    master = _start_master(port, log, "-u", "4", "-r", "4", "-t", "14s", *FAST_EMULATOR, "--run-name", "lostworker",
                           "--report-dir", str(tmp_path))
    workers = _start_workers(port, 2)
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
