"""The data model's validation rules and serialization."""

from __future__ import annotations

import math

import pytest

from llmload.aggregate import build_results
from llmload.errors import ValidationError
from llmload.metrics import RequestRecord
from llmload.results import BenchmarkResult, BenchmarkScenario, LatencyMetrics, RunResult, TokenUsage


def latency(**overrides: float) -> LatencyMetrics:
    values = {"count": 10, "p50": 10.0, "p95": 20.0, "p99": 30.0, "mean": 12.0, "min": 1.0, "max": 40.0, "stddev": 5.0}
    values.update(overrides)
    return LatencyMetrics(**values)  # type: ignore[arg-type]


def test_latency_rules_accept_valid_values() -> None:
    assert latency().p95 == 20.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"p50": 25.0}, "P50 <= P95 <= P99"),
        ({"p99": 15.0}, "P50 <= P95 <= P99"),
        ({"mean": 50.0}, "Min <= Mean <= Max"),
        ({"min": 15.0}, "Min <= Mean <= Max"),
        ({"stddev": -1.0}, "stddev"),
        ({"p50": math.nan}, "p50"),
        ({"count": 0}, "count"),
    ],
)
def test_latency_rules_reject_invalid_values(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("<", "<").replace("(", r"\(")):
        latency(**overrides)


def test_latency_from_samples_is_exact_and_has_intervals() -> None:
    samples = [float(v) for v in range(1, 101)]
    metric = LatencyMetrics.from_samples(samples)
    assert metric is not None
    assert metric.p50 == pytest.approx(50.5)
    assert metric.p99 == pytest.approx(99.01)
    assert metric.min == 1.0 and metric.max == 100.0
    low, high = metric.ci95["p50"]
    assert low <= metric.p50 <= high and high - low < 30
    assert sum(metric.histogram["counts"]) == 100
    assert LatencyMetrics.from_samples([]) is None


def test_bootstrap_is_seeded() -> None:
    samples = [float(v % 17) + 1 for v in range(500)]
    assert LatencyMetrics.from_samples(samples) == LatencyMetrics.from_samples(samples)


def test_token_usage_total_must_add_up() -> None:
    assert TokenUsage(10, 5, 15).efficiency_ratio == 0.5
    with pytest.raises(ValidationError, match="total_tokens"):
        TokenUsage(10, 5, 16)
    with pytest.raises(ValidationError, match="input_tokens"):
        TokenUsage(-1, 5, 4)


def test_result_rules() -> None:
    base = dict(
        run_id="r", provider="p", model="m", scenario="s", endpoint="chat", started_at=0.0, duration_s=1.0,
        requests_total=10, requests_ok=9, requests_failed=1, error_rate=0.1, errors_by_kind={"rate_limited": 1},
        requests_per_s=9.0, output_tokens_per_s=90.0, e2e=latency(),
    )
    BenchmarkResult(**base)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="error_rate"):
        BenchmarkResult(**{**base, "error_rate": 1.5})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="requests_total"):
        BenchmarkResult(**{**base, "requests_ok": 3})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="errors_by_kind"):
        BenchmarkResult(**{**base, "errors_by_kind": {}})  # type: ignore[arg-type]


def test_scenario_rules() -> None:
    with pytest.raises(ValidationError, match="endpoint"):
        BenchmarkScenario(name="x", endpoint="fax")
    with pytest.raises(ValidationError, match="max_tokens"):
        BenchmarkScenario(name="x", max_tokens=0)
    with pytest.raises(ValidationError, match="tools"):
        BenchmarkScenario(name="x", endpoint="tools")


def record(ok: bool = True, started_at: float = 100.0, **kw: object) -> RequestRecord:
    values: dict[str, object] = dict(
        provider="openai", model="m", scenario="s", endpoint="chat", started_at=started_at, ok=ok, e2e_ms=100.0,
        ttft_ms=20.0 if ok else None, itl_ms=[5.0, 7.0] if ok else [], input_tokens=10, output_tokens=3 if ok else 0,
        error_kind=None if ok else "rate_limited",
    )
    values.update(kw)
    return RequestRecord(**values)  # type: ignore[arg-type]


def test_build_results_groups_counts_and_excludes_ramp_up(tmp_path) -> None:
    records = [record(started_at=99.0, e2e_ms=5000.0)]  # ramp-up: excluded
    records += [record(started_at=100.0 + i * 0.1) for i in range(9)] + [record(ok=False, started_at=101.0)]
    records += [record(scenario="other", started_at=100.5)]
    results = build_results(records, run_id="run", window_start=100.0)
    by_scenario = {r.scenario: r for r in results}
    main = by_scenario["s"]
    assert main.requests_total == 10 and main.requests_failed == 1
    assert main.errors_by_kind == {"rate_limited": 1}
    assert main.e2e is not None and main.e2e.max == 100.0
    assert main.itl is not None and main.itl.count == 18
    assert main.tpot is not None and main.tpot.p50 == pytest.approx((100 - 20) / 2)
    assert main.tokens.output_tokens == 27 and main.tokens.total_tokens == 27 + 90
    assert by_scenario["other"].requests_total == 1

    run = RunResult(run_id="run", meta={"k": "v"}, results=results)
    run.save(tmp_path / "result.json")
    loaded = RunResult.load(tmp_path)
    assert [r.to_dict() for r in loaded.results] == [r.to_dict() for r in results]


def test_load_reports_bad_files(tmp_path) -> None:
    with pytest.raises(ValidationError, match="no such result file"):
        RunResult.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValidationError, match="not valid JSON"):
        RunResult.load(tmp_path / "bad.json")


def test_constant_samples_make_a_valid_histogram() -> None:
    metric = LatencyMetrics.from_samples([40.0, 40.0 + 1e-12, 40.0 + 2e-11])
    assert metric is not None and sum(metric.histogram["counts"]) == 3
