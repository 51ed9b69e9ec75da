"""Distributed runs on Locust's own master/workers: a headless master with two worker processes on 127.0.0.1.

The master must hold every worker's exact records (shipped in worker reports and a final flush), finalize once, and
compute percentiles over the merged samples exactly as one process would. The emulator's ground truth (every
request it answered) is the independent count.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmload.emulator import EmulatorProcess, MockConfiguration
from tests.conftest import LOCUST, REPO, locust_env

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_distributed(tmp_path: Path, name: str, *load: str) -> tuple[str, dict[str, Any], list[dict], list[dict]]:
    """Master + 2 workers against a fresh emulator; returns master output, result.json, records, ground truth."""
    config = MockConfiguration(ttft_ms=40, itl_ms=4, output_tokens=10, jitter=0.3, seed=7)
    with EmulatorProcess("openai", config) as emu:
        common = ["-f", "locustfiles/chat.py", "--host", f"{emu.url}/v1"]
        port = str(_free_port())
        master = subprocess.Popen(
            [LOCUST, *common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
             "--headless", "--expect-workers", "2", *load, "--stop-timeout", "3",
             "--run-name", name, "--report-dir", str(tmp_path), "--only-summary", "--no-html"],
            cwd=REPO, env=locust_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        workers: list[subprocess.Popen] = []
        try:
            workers = [
                subprocess.Popen([LOCUST, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", port],
                                 cwd=REPO, env=locust_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for _ in range(2)
            ]
            output, _ = master.communicate(timeout=90)
            # Workers must exit on their own: the master tells them to quit after the run.
            for worker in workers:
                assert worker.wait(timeout=30) == 0
        finally:
            for proc in [master, *workers]:
                if proc.poll() is None:
                    proc.kill()
        truth = emu.truth()
    assert master.returncode == 0, output[-3000:]
    assert output.count(f"llmload results ({name})") == 1, "the run must be finalized exactly once"
    data = json.loads((tmp_path / name / "result.json").read_text())
    with gzip.open(tmp_path / name / "records.jsonl.gz", "rt", encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines]
    return output, data, records, truth


def test_master_with_two_workers_merges_every_record(tmp_path) -> None:
    _, data, records, truth = run_distributed(tmp_path, "dist", "-u", "6", "-r", "6", "-t", "5s")
    assert data["meta"]["load"]["workers"] == 2
    assert data["meta"]["records"] == len(records)
    # The records log grew during the run under a hidden name and was moved into the run folder.
    assert not list(tmp_path.glob(".records-*"))
    # --stop-timeout 3 lets every in-flight request finish: nothing is cut off, and every request the emulator
    # answered reached the master (none lost between the workers' last report and the stop).
    assert data["meta"]["interrupted_requests"] == 0
    assert len(records) == len(truth) >= 50
    (result,) = data["results"]
    window = [r for r in records if r["started_at"] >= data["meta"]["window_start"]]
    assert result["requests_total"] == len(window)
    ok = [r["e2e_ms"] for r in window if r["ok"]]
    assert result["e2e"]["p50"] == pytest.approx(float(np.percentile(ok, 50)), rel=1e-9)
    assert result["e2e"]["p95"] == pytest.approx(float(np.percentile(ok, 95)), rel=1e-9)


def test_open_loop_rate_is_split_across_workers(tmp_path) -> None:
    _, data, records, truth = run_distributed(
        tmp_path, "dist-open", "-u", "10", "-r", "10", "-t", "6s", "--arrival-rate", "20",
        "--arrival-process", "constant", "--start-jitter", "0",
    )
    assert len(records) == len(truth)
    span = max(t["received_at"] for t in truth) - min(t["received_at"] for t in truth)
    # 20/s in total, not 20/s per worker (which would show as ~40/s).
    assert 14.0 <= (len(truth) - 1) / span <= 26.0
    (result,) = data["results"]
    assert result["schedule_lag"] is not None and result["e2e_from_schedule"]["p50"] >= result["e2e"]["p50"]
