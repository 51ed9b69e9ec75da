"""Recommendations from synthetic BenchmarkResults, and quality under load end to end against the emulator."""

from __future__ import annotations

import json
import math
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from llmload.cli import main
from llmload.errors import ConfigError
from llmload.pricing import load_pricing
from llmload.recommend import candidates, pareto_front, parse_weights, rank, recommendation_section
from llmload.results import BenchmarkResult, LatencyMetrics, RunResult, TokenUsage
from tests.conftest import LOCUST, REPO, locust_env


def _result(provider: str, model: str, ttft_center: float, *, spread: float = 10.0, n: int = 200,
            cost: float | None = None, passed: int | None = None, checked: int = 100,
            tokens_per_s: float = 100.0, failed: int = 0) -> BenchmarkResult:
    rng = np.random.default_rng(zlib.crc32(f"{provider}:{model}".encode()))
    ttft = rng.normal(ttft_center, spread, n).clip(1.0)
    quality = {"checked": checked, "passed": passed, "accuracy": passed / checked} if passed is not None else {}
    return BenchmarkResult(
        run_id="r", provider=provider, model=model, scenario="s", endpoint="chat", started_at=0.0, duration_s=10.0,
        requests_total=n + failed, requests_ok=n, requests_failed=failed, error_rate=failed / (n + failed),
        errors_by_kind={"server_error": failed} if failed else {}, requests_per_s=n / 10.0,
        output_tokens_per_s=tokens_per_s, e2e=LatencyMetrics.from_samples(ttft * 3),
        ttft=LatencyMetrics.from_samples(ttft), itl=LatencyMetrics.from_samples(rng.normal(20, 2, n).clip(1.0)),
        tokens=TokenUsage(1000, 1000, 2000, cost_usd=cost), quality=quality,
    )


def test_realtime_chat_prefers_the_clearly_faster_model_and_cites_numbers() -> None:
    fast = _result("openai", "fast-model", 200, cost=0.02)
    slow = _result("bedrock", "slow-model", 500, cost=0.01)
    ranking = rank(candidates([slow, fast]), "realtime_chat")
    assert [c.name for c, _ in ranking.ranked] == ["openai:fast-model", "bedrock:slow-model"]
    assert ranking.significant is True
    ttft_reason = next(r for r in ranking.reasons if "TTFT p95" in r)
    assert ttft_reason.startswith("openai:fast-model has TTFT p95 2")
    assert "vs 5" in ttft_reason and "do not overlap" in ttft_reason
    assert not any("not statistically significant" in r for r in ranking.reasons)


def test_overlapping_intervals_are_reported_as_not_significant() -> None:
    a = _result("openai", "a", 300, spread=60, n=40)
    b = _result("openai", "b", 305, spread=60, n=40)
    ranking = rank(candidates([a, b]), "realtime_chat")
    assert ranking.significant is False
    assert any("not statistically significant" in r for r in ranking.reasons)


def test_batch_weights_throughput_and_cost() -> None:
    cheap_fast = _result("p", "cheap", 900, cost=0.01, tokens_per_s=900)
    pricey_slow = _result("p", "pricey", 100, cost=0.10, tokens_per_s=300)
    batch = rank(candidates([cheap_fast, pricey_slow]), "batch")
    assert batch.ranked[0][0].name == "p:cheap"
    # Throughput and cost carry no interval: the verdict says so instead of claiming (in)significance.
    assert batch.significant is None
    assert any(r.startswith("significance not assessed: output throughput, cost") for r in batch.reasons)
    # The same data under realtime_chat weights picks the low-TTFT model: nothing is hard-coded.
    assert rank(candidates([cheap_fast, pricey_slow]), "realtime_chat").ranked[0][0].name == "p:pricey"


def test_user_weights_replace_the_use_case() -> None:
    accurate = _result("p", "accurate", 800, passed=95)
    sloppy = _result("p", "sloppy", 100, passed=40)
    cands = candidates([accurate, sloppy])
    assert rank(cands, "realtime_chat").ranked[0][0].name == "p:sloppy"
    assert rank(cands, "realtime_chat", parse_weights("accuracy=1")).ranked[0][0].name == "p:accurate"
    assert rank(cands, "high_quality_analysis").ranked[0][0].name == "p:accurate"


def test_unmeasured_metrics_are_left_out_and_said() -> None:
    ranking = rank(candidates([_result("p", "a", 100), _result("p", "b", 200)]), "batch")
    assert "cost" in ranking.unused


def test_parse_weights(tmp_path: Path) -> None:
    assert parse_weights("ttft=0.5, cost=0.2") == {"ttft": 0.5, "cost": 0.2}
    file = tmp_path / "w.yaml"
    file.write_text("accuracy: 2\ne2e: 1\n")
    assert parse_weights(str(file)) == {"accuracy": 2.0, "e2e": 1.0}
    for bad, message in [("speed=1", "unknown metric 'speed'"), ("ttft", "must be METRIC=WEIGHT"),
                         ("ttft=-1", "must be >= 0"), ("ttft=0", "at least one metric")]:
        with pytest.raises(ConfigError, match=message):
            parse_weights(bad)


def test_pareto_front() -> None:
    cheap_slow = _result("p", "cheap_slow", 900, cost=0.01, passed=80)
    pricey_fast = _result("p", "pricey_fast", 100, cost=0.10, passed=80)
    dominated = _result("p", "dominated", 950, cost=0.20, passed=70)
    front = pareto_front(candidates([cheap_slow, pricey_fast, dominated]))
    assert sorted(front) == ["p:cheap_slow", "p:pricey_fast"]


def test_recommendation_section_escapes() -> None:
    run = RunResult("r", {}, [_result("p", "<script>", 100), _result("p", "b", 300)])
    section = recommendation_section([run])
    assert "<script>" not in section and "&lt;script&gt;" in section and "realtime_chat" in section


@pytest.mark.slow
def test_quality_under_load_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Emulator quality 0.7 on the built-in questions under 8 users: measured accuracy within a binomial tolerance
    of 0.7, cost from the shipped prices, consistency recorded, and `llmload recommend` reads the run."""
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "8", "-r", "8", "-t", "10s",
         "--scenario", "builtin_qa,consistency", "--emulator", "always", "--emulator-quality", "0.7",
         "--emulator-ttft-ms", "20", "--emulator-itl-ms", "2", "--emulator-output-tokens", "16",
         "--emulator-seed", "7", "--start-jitter", "0.1",
         "--run-name", "quality", "--report-dir", str(tmp_path), "--only-summary", "--no-html"],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = RunResult.load(tmp_path / "quality")
    by_scenario = {r.scenario: r for r in run.results}
    qa = by_scenario["builtin_qa"]
    checked = qa.quality["checked"]
    assert checked >= 100 and checked == qa.requests_ok
    tolerance = 4 * math.sqrt(0.7 * 0.3 / checked)
    print(f"accuracy {qa.quality['accuracy']:.3f} over {checked} (tolerance ±{tolerance:.3f})")
    assert abs(qa.quality["accuracy"] - 0.7) <= tolerance
    low, high = qa.quality["accuracy_ci95"]
    assert low <= qa.quality["accuracy"] <= high

    price = load_pricing().price_for("openai", "gpt-4o-mini")
    assert price is not None and qa.tokens.cost_usd == pytest.approx(price.cost(qa.tokens))
    assert qa.cost_per_1k_requests_usd == pytest.approx(1000 * qa.tokens.cost_usd / qa.requests_ok)
    assert qa.quality_per_dollar == pytest.approx(qa.quality["passed"] / qa.tokens.cost_usd)

    # The consistency prompt is not a known question: the emulator answers with random filler words, so repeated
    # answers share few tokens. Known truth: far from identical, but word overlap is not zero either.
    consistency = by_scenario["consistency"].quality
    assert consistency["consistency_samples"] >= 10 and 0.0 < consistency["consistency"] < 0.9
    assert "accuracy" not in consistency

    saved = json.loads((tmp_path / "quality" / "result.json").read_text())["results"]
    assert all("cost_per_1k_requests_usd" in r and "quality_per_dollar" in r for r in saved)
    csv_header = (tmp_path / "quality" / "result.csv").read_text().splitlines()[0]
    assert "cost_per_1k_requests_usd" in csv_header and "accuracy" in csv_header

    capsys.readouterr()
    assert main(["recommend", str(tmp_path / "quality"), "--use-case", "high_quality_analysis"]) == 0
    out = capsys.readouterr().out
    assert "openai:gpt-4o-mini" in out and "accuracy" in out
    assert main(["recommend", str(tmp_path / "quality"), "--use-case", "embeddings"]) == 2


def test_report_command_adds_recommendations_for_two_candidates(tmp_path: Path) -> None:
    RunResult("a", {}, [_result("openai", "fast", 100, cost=0.02)]).save(tmp_path / "a" / "result.json")
    RunResult("b", {}, [_result("openai", "slow", 400, cost=0.01)]).save(tmp_path / "b" / "result.json")
    RunResult("c", {}, [_result("openai", "solo", 100)]).save(tmp_path / "c" / "result.json")
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "two.html")]) == 0
    page = (tmp_path / "two.html").read_text()
    assert "<h2>Recommendations</h2>" in page and "openai:fast has TTFT p95" in page
    # One candidate: a ranking of one says nothing, so no section.
    assert main(["report", str(tmp_path / "c"), "-o", str(tmp_path / "one.html")]) == 0
    assert "<h2>Recommendations</h2>" not in (tmp_path / "one.html").read_text()
