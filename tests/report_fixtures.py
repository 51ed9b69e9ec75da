"""Synthetic RunResults for report tests: realistic shapes built through the real data model."""

from __future__ import annotations

import numpy as np

from llmload.results import BenchmarkResult, LatencyMetrics, RunResult, TokenUsage


def synthetic_result(
    *,
    provider: str,
    model: str,
    scenario: str = "chat-short",
    ttft_ms: float = 120.0,
    e2e_ms: float = 900.0,
    n: int = 400,
    level: int | None = None,
    users: int | None = None,
    requests_per_s: float = 10.0,
    errors: dict[str, int] | None = None,
    cost_usd: float | None = None,
    accuracy: float | None = None,
    seed: int = 1,
) -> BenchmarkResult:
    rng = np.random.default_rng(seed)
    errors = errors or {}
    failed = sum(errors.values())
    ttft = rng.lognormal(np.log(ttft_ms), 0.25, n)
    e2e = ttft + rng.lognormal(np.log(max(e2e_ms - ttft_ms, 1.0)), 0.2, n)
    itl = rng.lognormal(np.log(12.0), 0.3, n * 4)
    out_tokens = n * 64
    timeline = [
        # Each kind's errors spread over the 20 buckets so the timeline adds up to errors_by_kind.
        {"t": t, "ok": n // 20, "errors": {k: v // 20 + (1 if t < v % 20 else 0) for k, v in errors.items()},
         "ttft_p50": ttft_ms, "e2e_p50": e2e_ms, "output_tokens": out_tokens // 20}
        for t in range(20)
    ]
    return BenchmarkResult(
        run_id="synthetic",
        provider=provider,
        model=model,
        scenario=scenario,
        endpoint="chat",
        started_at=1_790_000_000.0,
        duration_s=n / requests_per_s,
        requests_total=n + failed,
        requests_ok=n,
        requests_failed=failed,
        error_rate=failed / (n + failed),
        errors_by_kind=dict(errors),
        requests_per_s=requests_per_s,
        output_tokens_per_s=requests_per_s * 64,
        e2e=LatencyMetrics.from_samples(e2e),
        ttft=LatencyMetrics.from_samples(ttft),
        itl=LatencyMetrics.from_samples(itl),
        tokens=TokenUsage(n * 30, out_tokens, n * 30 + out_tokens, cost_usd=cost_usd),
        level=level,
        load={"users": users} if users is not None else {},
        quality={"checked": n, "passed": int(n * accuracy), "accuracy": accuracy} if accuracy is not None else {},
        timeline=timeline,
    )


def comparison_run() -> RunResult:
    """Two providers over three load levels (one saturating), plus a single-level third provider."""
    results = []
    for level, users, rps_a, p95_a, rps_b, p95_b in (
        (0, 4, 20.0, 700.0, 18.0, 800.0),
        (1, 8, 38.0, 760.0, 30.0, 900.0),
        (2, 16, 40.0, 1400.0, 44.0, 1000.0),
    ):
        results.append(synthetic_result(provider="openai", model="gpt-4o-mini", level=level, users=users,
                                        requests_per_s=rps_a, e2e_ms=p95_a * 0.8, ttft_ms=100 + 20 * level,
                                        errors={"rate_limited": 6 * level} if level else {}, cost_usd=0.42,
                                        accuracy=0.97, seed=level + 1))
        results.append(synthetic_result(provider="anthropic", model="claude-haiku", level=level, users=users,
                                        requests_per_s=rps_b, e2e_ms=p95_b * 0.8, ttft_ms=160 + 10 * level,
                                        errors={"timeout": 2} if level == 2 else {}, cost_usd=0.61,
                                        accuracy=0.95, seed=level + 11))
    meta = {"llmload_version": "0.1.0", "hostname": "bench-host", "load": {"users": 16, "shape": "StepLoad"},
            "emulator": {"ttft_ms": 100, "tokens_per_s": 80}, "command": "locust -f locustfiles/chat.py --headless"}
    return RunResult(run_id="compare-demo", meta=meta, results=results)
