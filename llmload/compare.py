"""Regression detection between a baseline and a candidate run, and the ``history``/``trends``/``compare`` commands.

A metric is flagged only when the change is BOTH larger than the threshold (default 5%) AND statistically
significant:

* latency percentiles: the candidate's and baseline's 95% intervals (``LatencyMetrics.ci95``) do not overlap;
* error rate: a two-proportion z-test on the failed/total counts (two-sided p < 0.05);
* throughput (output tokens/s): a Poisson test on the completed-request counts over each run's window.

A baseline of ``last:N`` pools the N most recent stored runs per key: the value is their mean, the interval spans
all their intervals (so run-to-run noise widens it and makes a flag harder, never easier), and the counts add up.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmload.cli import command
from llmload.errors import ConfigError
from llmload.history import TREND_METRICS, HistoryStore, profiles
from llmload.results import BenchmarkResult, RunResult

DEFAULT_THRESHOLD_PCT = 5.0
Z_95 = 1.959963984540054

EXIT_OK = 0
EXIT_REGRESSION = 1

LATENCY_METRICS = (("ttft", "p95"), ("e2e", "p95"), ("itl", "p50"))


@dataclass(slots=True)
class Side:
    """One side of a comparison for one key: figures, intervals and counts (pooled when from several runs)."""

    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    requests_total: int
    requests_failed: int
    requests_ok: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class MetricVerdict:
    key: tuple[str, str, str]
    metric: str
    baseline: float
    candidate: float
    change_pct: float
    significant: bool
    regression: bool
    improvement: bool
    large: bool

    @property
    def verdict(self) -> str:
        if self.regression:
            return "REGRESSION"
        if self.improvement:
            return "improved"
        if self.large and not self.significant:
            return "change not significant"
        return "within threshold"


def _side(results: list[BenchmarkResult]) -> Side:
    values: dict[str, list[float]] = {}
    intervals: dict[str, tuple[float, float]] = {}
    for r in results:
        for attr, stat in LATENCY_METRICS:
            metric = getattr(r, attr)
            if metric is None:
                continue
            name = f"{attr}_{stat}_ms"
            values.setdefault(name, []).append(getattr(metric, stat))
            ci = metric.ci95.get(stat)
            if ci:
                lo, hi = intervals.get(name, (math.inf, -math.inf))
                intervals[name] = (min(lo, ci[0]), max(hi, ci[1]))
        values.setdefault("output_tokens_per_s", []).append(r.output_tokens_per_s)
    total = sum(r.requests_total for r in results)
    failed = sum(r.requests_failed for r in results)
    pooled = {k: sum(v) / len(v) for k, v in values.items()}
    pooled["error_rate"] = failed / total if total else 0.0
    return Side(
        values=pooled,
        intervals=intervals,
        requests_total=total,
        requests_failed=failed,
        requests_ok=sum(r.requests_ok for r in results),
        duration_s=sum(r.duration_s for r in results),
    )


def _two_proportion_significant(f1: int, n1: int, f2: int, n2: int) -> bool:
    if n1 == 0 or n2 == 0:
        return False
    pooled = (f1 + f2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return False
    return abs(f1 / n1 - f2 / n2) / se > Z_95


def _poisson_rate_significant(k1: int, t1: float, k2: int, t2: float) -> bool:
    """Two Poisson rates differ (conditional binomial test, normal approximation)."""
    if t1 <= 0 or t2 <= 0 or k1 + k2 == 0:
        return False
    expected = (k1 + k2) * t1 / (t1 + t2)
    variance = (k1 + k2) * (t1 / (t1 + t2)) * (t2 / (t1 + t2))
    return variance > 0 and abs(k1 - expected) / math.sqrt(variance) > Z_95


def compare_sides(key: tuple[str, str, str], base: Side, cand: Side, threshold_pct: float) -> list[MetricVerdict]:
    verdicts = []
    for metric in ("ttft_p95_ms", "e2e_p95_ms", "itl_p50_ms", "output_tokens_per_s", "error_rate"):
        if metric not in base.values or metric not in cand.values:
            continue
        b, c = base.values[metric], cand.values[metric]
        higher_is_better = metric == "output_tokens_per_s"
        if metric == "error_rate":
            # Relative change of a near-zero rate is meaningless; compare percentage points against the threshold.
            change_pct = (c - b) * 100.0
            significant = _two_proportion_significant(
                base.requests_failed, base.requests_total, cand.requests_failed, cand.requests_total
            )
        elif metric == "output_tokens_per_s":
            change_pct = (c - b) / b * 100.0 if b else 0.0
            significant = _poisson_rate_significant(base.requests_ok, base.duration_s, cand.requests_ok,
                                                    cand.duration_s)
        else:
            change_pct = (c - b) / b * 100.0 if b else 0.0
            bi, ci = base.intervals.get(metric), cand.intervals.get(metric)
            significant = bool(bi and ci) and (ci[0] > bi[1] or ci[1] < bi[0])
        worse = change_pct < 0 if higher_is_better else change_pct > 0
        large = abs(change_pct) > threshold_pct
        verdicts.append(
            MetricVerdict(
                key=key,
                metric=metric,
                baseline=b,
                candidate=c,
                change_pct=change_pct,
                significant=significant,
                regression=large and significant and worse,
                improvement=large and significant and not worse,
                large=large,
            )
        )
    return verdicts


def _results_by_key(runs: list[RunResult]) -> dict[tuple[str, str, str], list[BenchmarkResult]]:
    out: dict[tuple[str, str, str], list[BenchmarkResult]] = {}
    for run in runs:
        for r in run.results:
            if r.level is None:
                out.setdefault(r.key, []).append(r)
    return out


def resolve_runs(spec: str, history_db: str | None, *, exclude: str | None = None) -> list[RunResult]:
    """A run folder / result.json, a stored run id, or ``last:N`` (the N most recent stored runs)."""
    path = Path(spec)
    if path.exists():
        return [RunResult.load(path)]
    if spec.startswith("last:"):
        try:
            count = int(spec.split(":", 1)[1])
        except ValueError:
            count = 0
        if count < 1:
            raise ConfigError(f"baseline '{spec}': use last:N with N >= 1, e.g. last:5")
        with HistoryStore(history_db) as store:
            runs = [r for r in store.runs() if r.run_id != exclude][-count:]
        if not runs:
            raise ConfigError(f"baseline '{spec}': the history database has no runs")
        return [r.to_run_result() for r in runs]
    with HistoryStore(history_db) as store:
        stored = store.run(spec)
    if stored is None:
        raise ConfigError(f"'{spec}' is neither a run folder, a result.json, a stored run id nor last:N")
    return [stored.to_run_result()]


def compare_runs(baseline: list[RunResult], candidate: list[RunResult], threshold_pct: float) -> list[MetricVerdict]:
    base_by_key, cand_by_key = _results_by_key(baseline), _results_by_key(candidate)
    common = sorted(set(base_by_key) & set(cand_by_key))
    if not common:
        raise ConfigError("baseline and candidate share no provider/model/scenario; nothing to compare")
    verdicts = []
    for key in common:
        verdicts.extend(compare_sides(key, _side(base_by_key[key]), _side(cand_by_key[key]), threshold_pct))
    return verdicts


def add_subcommand(subparsers: Any) -> None:
    history = subparsers.add_parser("history", help="List stored runs from the history database")
    trends = subparsers.add_parser("trends", help="Per provider/model/scenario trends over stored runs")
    for p in (history, trends):
        p.add_argument("--history-db", default="", help="SQLite path or postgresql:// URL (default: $LLMLOAD_HISTORY "
                                                       "or reports/history.db)")
        p.add_argument("--provider", default="")
        p.add_argument("--model", default="")
        p.add_argument("--scenario", default="")
        p.add_argument("--limit", type=int, default=0, help="Only the N most recent runs")
    compare = subparsers.add_parser("compare", help="Flag regressions of CANDIDATE against BASELINE (exit 1)")
    compare.add_argument("baseline", help="Run folder, result.json, stored run id, or last:N from history")
    compare.add_argument("candidate", help="Run folder, result.json or stored run id")
    compare.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD_PCT,
                         help="Minimum change in percent (error rate: percentage points) to flag (default 5)")
    compare.add_argument("--history-db", default="")


@command("history")
def _history(args: argparse.Namespace) -> int:
    with HistoryStore(args.history_db or None) as store:
        runs = store.runs(provider=args.provider or None, model=args.model or None, scenario=args.scenario or None,
                          limit=args.limit or None)
    header = f"{'run id':<32} {'provider:model:scenario':<44} {'reqs':>6} {'err%':>6} {'TTFT p95':>9} " \
             f"{'e2e p95':>9} {'tok/s':>8}"
    print(header)
    print("-" * len(header))
    for run in runs:
        for r in run.results:
            name = f"{r.provider}:{r.model}:{r.scenario}" + (f"@L{r.level}" if r.level is not None else "")
            print(f"{run.run_id[:32]:<32} {name[:44]:<44} {r.requests_total:>6} {100 * r.error_rate:>5.1f}% "
                  f"{_ms(r.ttft.p95 if r.ttft else None):>9} {_ms(r.e2e.p95 if r.e2e else None):>9} "
                  f"{r.output_tokens_per_s:>8.1f}")
    print(f"{len(runs)} run(s)")
    return 0


@command("trends")
def _trends(args: argparse.Namespace) -> int:
    with HistoryStore(args.history_db or None) as store:
        runs = store.runs(provider=args.provider or None, model=args.model or None, scenario=args.scenario or None,
                          limit=args.limit or None)
    found = profiles(runs)
    for profile in found:
        print(f"{profile.provider}:{profile.model}:{profile.scenario}  ({profile.runs} runs, "
              f"{profile.first_run} .. {profile.last_run})")
        for metric in TREND_METRICS:
            t = profile.trends[metric]
            latest = profile.latest[metric]
            detail = f"confidence {t.confidence:.2f}" if t.r_squared is not None else f"{t.n_points} point(s)"
            print(f"  {metric:<22} {t.direction:<18} latest {_ms(latest):>9}  {detail}")
    if not found:
        print("no stored runs match")
    return 0


@command("compare")
def _compare(args: argparse.Namespace) -> int:
    if args.threshold < 0:
        raise ConfigError("--threshold must be >= 0 (percent)")
    if args.candidate.startswith("last:"):
        raise ConfigError("candidate must be one run (a folder, result.json or run id), not last:N")
    candidate = resolve_runs(args.candidate, args.history_db or None)
    baseline = resolve_runs(args.baseline, args.history_db or None, exclude=candidate[0].run_id)
    verdicts = compare_runs(baseline, candidate, args.threshold)
    print(f"{'provider:model:scenario':<44} {'metric':<20} {'baseline':>10} {'candidate':>10} {'change':>9}  verdict")
    for v in verdicts:
        unit = "pp" if v.metric == "error_rate" else "%"
        name = ":".join(v.key)
        print(f"{name[:44]:<44} {v.metric:<20} {_ms(v.baseline):>10} {_ms(v.candidate):>10} "
              f"{v.change_pct:>+7.1f}{unit:<2} {v.verdict}")
    regressions = [v for v in verdicts if v.regression]
    print(f"{len(regressions)} regression(s) at threshold {args.threshold:g}%")
    return EXIT_REGRESSION if regressions else EXIT_OK


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:.1f}"
