"""Streaming aggregation: exact below the sample cap, HDR-bounded above it, and memory that stops growing."""

from __future__ import annotations

import gzip
import json
import math
import random
import subprocess

import numpy as np
import pytest

from llmload.aggregate import Distribution, RunAccumulator, Timeline, build_results
from llmload.metrics import RequestRecord
from llmload.reliability import reliability_metrics
from llmload.results import LatencyMetrics
from tests.conftest import LOCUST, REPO, locust_env

T0 = 1_700_000_000.0


def _values(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.lognormal(mean=np.log(200.0), sigma=0.4, size=n)


def _record(i: int, rng: random.Random, *, ok: bool = True, scenario: str = "s") -> RequestRecord:
    ttft = rng.uniform(150.0, 250.0)
    itl = [rng.uniform(8.0, 12.0) for _ in range(15)]
    return RequestRecord(
        provider="openai", model="m", scenario=scenario, endpoint="chat", started_at=T0 + i * 0.05, ok=ok,
        e2e_ms=ttft + sum(itl), ttft_ms=ttft if ok else None, itl_ms=itl if ok else [], input_tokens=10,
        output_tokens=16 if ok else 0, error_kind=None if ok else "server_error",
    )


def test_below_the_cap_a_distribution_is_exactly_numpy() -> None:
    values = _values(5_000)
    dist = Distribution(exact_cap=10_000)
    dist.extend(values.tolist())
    assert dist.exact
    assert dist.summary() == LatencyMetrics.from_samples(values)


def test_past_the_cap_percentiles_stay_within_hdr_precision_and_moments_stay_exact() -> None:
    values = _values(60_000)
    dist = Distribution(exact_cap=10_000)
    dist.extend(values.tolist())
    assert not dist.exact
    summary = dist.summary()
    assert summary is not None and summary.count == 60_000
    for q, name in ((50, "p50"), (95, "p95"), (99, "p99")):
        exact = float(np.percentile(values, q))
        assert getattr(summary, name) == pytest.approx(exact, rel=2e-3)
    assert summary.mean == pytest.approx(values.mean(), rel=1e-9)
    assert summary.stddev == pytest.approx(values.std(ddof=1), rel=1e-9)
    assert summary.min == values.min() and summary.max == values.max()
    low, high = summary.ci95["p95"]
    assert low <= summary.p95 <= high
    assert sum(summary.histogram["counts"]) == 60_000


def test_combining_histograms_equals_one_histogram_of_everything() -> None:
    values = _values(30_000, seed=7).tolist()
    whole = Distribution(exact_cap=1_000)
    whole.extend(values)
    parts = [Distribution(exact_cap=1_000) for _ in range(3)]
    for i, value in enumerate(values):
        parts[i % 3].add(value)
    merged = Distribution.combined(parts)
    for q in (50, 90, 99, 99.9):
        assert merged.percentile(q) == whole.percentile(q)
    assert merged.count == whole.count and merged.stddev == pytest.approx(whole.stddev, rel=1e-9)


def test_results_past_the_cap_match_exact_results_and_say_so() -> None:
    rng = random.Random(3)
    records = [_record(i, rng, ok=i % 20 != 0) for i in range(4_000)]
    (exact,) = build_results(records, run_id="r")
    (bounded,) = build_results(records, run_id="r", exact_samples=500)
    assert (bounded.requests_total, bounded.requests_failed, bounded.errors_by_kind, bounded.tokens) == (
        exact.requests_total, exact.requests_failed, exact.errors_by_kind, exact.tokens)
    assert bounded.itl is not None and exact.itl is not None and bounded.itl.count == exact.itl.count == 3_800 * 15
    for name in ("e2e", "ttft", "itl", "tpot"):
        a, b = getattr(exact, name), getattr(bounded, name)
        assert b.p50 == pytest.approx(a.p50, rel=2e-3) and b.p99 == pytest.approx(a.p99, rel=2e-3)
        assert b.mean == pytest.approx(a.mean, rel=1e-9)
    assert not exact.warnings
    assert any("HDR histogram" in w for w in bounded.warnings)
    assert bounded.timeline == exact.timeline


def test_memory_held_is_bounded_by_the_cap_not_the_record_count() -> None:
    rng = random.Random(5)
    aggregate = RunAccumulator(exact_samples=1_000)
    for i in range(20_000):
        aggregate.add(_record(i, rng))
    (group,) = aggregate.groups.values()
    for dist in (group.e2e, group.ttft, group.itl, group.tpot):
        assert not dist.exact and dist._samples is None
    assert group.itl.count == 20_000 * 15
    assert len(group.answers) == 0 and len(group.reliability.failures) == 0


def test_timeline_stays_within_its_point_budget_and_adds_up() -> None:
    timeline = Timeline(max_points=50)
    rng = random.Random(9)
    records = []
    for i in range(5_000):
        rec = _record(0, rng, ok=i % 10 != 0)
        rec.started_at = T0 + i * 0.7  # ~58 minutes
        records.append(rec)
    for rec in rng.sample(records, len(records)):  # arrival order differs from completion order
        timeline.add(rec)
    assert len(timeline.buckets) <= 2 * 50 + 1
    points = timeline.points(T0, 5_000 * 0.7)
    assert len(points) <= 51
    assert sum(p["ok"] for p in points) == 4_500
    assert sum(p["errors"].get("server_error", 0) for p in points) == 500
    step = math.gcd(*(p["t"] for p in points))
    assert step >= 5_000 * 0.7 / 50  # one width for every point, wide enough for the budget


def test_reliability_does_not_depend_on_arrival_order() -> None:
    rng = random.Random(11)
    records = [_record(i, rng, ok=not 100 <= i < 180 and i % 7 != 0) for i in range(400)]
    shuffled = rng.sample(records, len(records))
    in_order = reliability_metrics(records, outage_end=T0 + 9.0)
    assert reliability_metrics(shuffled, outage_end=T0 + 9.0) == in_order
    assert in_order["incidents"] == 1 and in_order["outage_recovery_s"] is not None


@pytest.mark.slow
def test_a_run_past_the_sample_cap_reports_histogram_percentiles_from_every_record(tmp_path) -> None:
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "4", "-r", "4", "-t", "4s", "--provider", "mock",
         "--emulator-ttft-ms", "20", "--emulator-itl-ms", "2", "--emulator-output-tokens", "16", "--scenario",
         "simple_query", "--exact-samples", "40", "--run-name", "capped", "--report-dir", str(tmp_path),
         "--only-summary", "--no-html"],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "capped" / "result.json").read_text())
    with gzip.open(tmp_path / "capped" / "records.jsonl.gz", "rt") as lines:
        records = [json.loads(line) for line in lines]
    assert data["meta"]["records"] == len(records) and not list(tmp_path.glob(".records-*"))
    (result,) = data["results"]
    window = [r for r in records if r["started_at"] >= data["meta"]["window_start"] and r["ok"]]
    assert result["requests_ok"] == len(window) > 40
    assert any("HDR histogram" in w for w in result["warnings"])
    gaps = [g for r in window for g in r["itl_ms"]]
    assert result["itl"]["count"] == len(gaps)
    assert result["itl"]["mean"] == pytest.approx(float(np.mean(gaps)), rel=1e-9)
    # An HDR percentile is an order statistic near the rank, within the histogram's 0.1% bucket width.
    for name, values in (("e2e", [r["e2e_ms"] for r in window]), ("itl", gaps)):
        for q in (50, 95):
            low = float(np.percentile(values, q, method="lower")) * (1 - 2e-3)
            high = float(np.percentile(values, q, method="higher")) * (1 + 2e-3)
            assert low <= result[name][f"p{q}"] <= high
