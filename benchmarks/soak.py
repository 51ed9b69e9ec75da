"""Soak test: a long headless run at steady load; memory must stay flat and no request record may be lost.

llmload keeps no per-request records in memory (``llmload.aggregate``): below the exact-sample cap (100k per
distribution) it holds three floats per request (e2e, TTFT, TPOT samples, 24 bytes) plus a few bytes per second of
run. The check is on RSS growth *per request* in the run's second half, with a budget of 0.5 KiB: a leak of
records, sessions, clients, greenlets or response buffers shows up above that (keeping every record, as llmload
did before, measured 5-8 KiB per request here).

Not part of CI (it runs for minutes). Usage::

    .venv/bin/python benchmarks/soak.py                  # 10 minutes, 16 users
    .venv/bin/python benchmarks/soak.py --duration 90    # a short check

It starts an OpenAI-protocol emulator, runs ``locust --headless`` against it through ``--host``, samples the
locust process's resident memory every few seconds, then compares the run's record count with the emulator's
ground truth (every request the emulator received): every received request must have a record, and the only
records beyond those may be requests cut off by the stop (``interrupted``) before they reached the emulator. The
run's ``records.jsonl.gz`` must hold exactly ``meta.records`` lines.
Exit code 0 when both checks pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from llmload.emulator import EmulatorProcess, MockConfiguration  # noqa: E402 - after the sys.path line above

MIB = 1024 * 1024


def rss_slope_mib_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS over the second half of the run (the first half includes warm-up growth)."""
    half = samples[len(samples) // 2 :]
    if len(half) < 2:
        return 0.0
    n = len(half)
    mean_t = sum(t for t, _ in half) / n
    mean_m = sum(m for _, m in half) / n
    var = sum((t - mean_t) ** 2 for t, _ in half)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in half)
    return cov / var * 60.0 if var else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=600, help="Run length in seconds (default 600)")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--sample-every", type=float, default=5.0, help="Seconds between memory samples")
    parser.add_argument("--max-growth-kib-per-request", type=float, default=0.5,
                        help="Largest acceptable RSS growth per request in the run's second half")
    args = parser.parse_args()

    config = MockConfiguration(ttft_ms=50, itl_ms=2, output_tokens=32)
    with EmulatorProcess("openai", config) as emu, tempfile.TemporaryDirectory() as tmp:
        emu.reset()
        cmd = [
            str(Path(sys.executable).parent / "locust"), "-f", "locustfiles/chat.py", "--headless",
            "-u", str(args.users), "-r", str(args.users), "-t", f"{args.duration}s", "--host", f"{emu.url}/v1",
            "--run-name", "soak", "--report-dir", tmp, "--only-summary", "--no-html",
        ]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        locust = psutil.Process(proc.pid)
        started = time.monotonic()
        samples: list[tuple[float, float]] = []
        while proc.poll() is None:
            time.sleep(args.sample_every)
            try:
                rss = locust.memory_info().rss / MIB
            except psutil.NoSuchProcess:
                break
            if rss and proc.poll() is None:  # an exited (zombie) process reports 0
                samples.append((time.monotonic() - started, rss))
        _, stderr = proc.communicate()
        if proc.returncode not in (0, 1):
            print(stderr[-3000:], file=sys.stderr)
            return 1
        run = json.loads((Path(tmp) / "soak" / "result.json").read_text())
        with gzip.open(Path(tmp) / "soak" / "records.jsonl.gz", "rt") as log:
            logged = sum(1 for _ in log)
        truth = emu.truth()

    recorded = run["meta"]["records"]
    received = len(truth)
    (result,) = run["results"]
    slope = rss_slope_mib_per_min(samples)
    rss = [m for _, m in samples]
    print(f"duration {args.duration} s, users {args.users}")
    interrupted = run["meta"].get("interrupted_requests", 0)
    lost = max(0, received - recorded)
    print(f"requests: recorded {recorded} ({interrupted} interrupted by the stop), in records.jsonl.gz {logged}, "
          f"emulator received {received}, lost {lost}")
    print(f"measured window: {result['requests_total']} requests, {result['requests_per_s']:.1f} req/s, "
          f"errors {result['errors_by_kind']}")
    print(f"locust RSS MiB: first {rss[0]:.1f}, min {min(rss):.1f}, max {max(rss):.1f}, last {rss[-1]:.1f}; "
          f"second-half slope {slope:+.2f} MiB/min over {len(samples)} samples")
    rate_per_min = recorded / args.duration * 60.0
    per_request_kib = slope * 1024.0 / rate_per_min if rate_per_min else 0.0
    print(f"RSS growth per request (second half): {per_request_kib:.2f} KiB")
    ok = (recorded - interrupted <= received <= recorded and logged == recorded
          and per_request_kib <= args.max_growth_kib_per_request)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
