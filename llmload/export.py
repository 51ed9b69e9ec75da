"""Flat exports of BenchmarkResults: a pandas DataFrame and CSV, one row per result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from llmload.results import BenchmarkResult, RunResult

LATENCIES = ("ttft", "itl", "tpot", "e2e")
STATS = ("p50", "p95", "p99", "mean", "min", "max", "stddev")
RELIABILITY = ("uptime_pct", "incidents", "mtbf_s", "mttr_s", "outage_recovery_s")


def flatten(result: BenchmarkResult) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": result.run_id,
        "provider": result.provider,
        "model": result.model,
        "scenario": result.scenario,
        "endpoint": result.endpoint,
        "level": result.level,
        "started_at": result.started_at,
        "duration_s": result.duration_s,
        "requests_total": result.requests_total,
        "requests_ok": result.requests_ok,
        "requests_failed": result.requests_failed,
        "error_rate": result.error_rate,
        "requests_per_s": result.requests_per_s,
        "output_tokens_per_s": result.output_tokens_per_s,
        "input_tokens": result.tokens.input_tokens,
        "output_tokens": result.tokens.output_tokens,
        "reasoning_tokens": result.tokens.reasoning_tokens,
        "total_tokens": result.tokens.total_tokens,
        "cost_usd": result.tokens.cost_usd,
        "cost_per_request_usd": result.cost_per_request_usd,
        "cost_per_1k_requests_usd": result.cost_per_1k_requests_usd,
        "accuracy": result.quality.get("accuracy"),
        "consistency": result.quality.get("consistency"),
        "quality_per_dollar": result.quality_per_dollar,
        "tokens_estimated": result.tokens.estimated,
        "partial": result.partial,
    }
    for name in LATENCIES:
        metric = getattr(result, name)
        for stat in STATS:
            row[f"{name}_{stat}_ms"] = getattr(metric, stat) if metric is not None else None
    for kind, count in result.errors_by_kind.items():
        row[f"errors_{kind}"] = count
    for name in RELIABILITY:
        row[name] = result.reliability.get(name)
    return row


def load_results(*paths: str | Path) -> pd.DataFrame:
    rows = [flatten(r) for p in paths for r in RunResult.load(Path(p)).results]
    return pd.DataFrame(rows)


def write_csv(run: RunResult, path: Path) -> Path:
    pd.DataFrame([flatten(r) for r in run.results]).to_csv(path, index=False)
    return path
