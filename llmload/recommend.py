"""Data-driven provider/model recommendations from measured BenchmarkResults.

Nothing here names a provider: every ranking comes from the runs given. For a use case (a set of metric weights the
user may replace), each provider:model candidate gets a score in [0, 1]: per metric, the candidates are scaled so
the best measured value is 1 and the worst 0, and the weighted mean is the score. The report says why, citing the
numbers, and says when the leader's edge is not statistically significant (the 95% intervals of the leader and the
runner-up overlap on every metric that has one). A Pareto front of cost, latency and quality lists the candidates
no other candidate beats on all three.

A candidate with several results (scenarios, load levels) is judged by its worst latency p95 (the heaviest load
measured), its peak throughput, and its pooled cost, accuracy and error rate.
"""

from __future__ import annotations

import argparse
import html
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from llmload.cli import command
from llmload.config import read_yaml
from llmload.errors import ConfigError
from llmload.quality import wilson_interval
from llmload.results import BenchmarkResult, LatencyMetrics, RunResult
from llmload.stats import intervals_overlap


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    label: str
    unit: str
    higher_is_better: bool


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("ttft", "TTFT p95", "ms", False),
        Metric("itl", "ITL p95", "ms", False),
        Metric("e2e", "e2e latency p95", "ms", False),
        Metric("throughput", "output throughput", "tok/s", True),
        Metric("requests_per_s", "request throughput", "req/s", True),
        Metric("cost", "cost per 1k requests", "USD", False),
        Metric("accuracy", "accuracy", "%", True),
        Metric("consistency", "consistency", "", True),
        Metric("error_rate", "error rate", "%", False),
    )
}

USE_CASES: dict[str, dict[str, float]] = {
    "realtime_chat": {"ttft": 0.45, "itl": 0.30, "error_rate": 0.15, "cost": 0.10},
    "batch": {"throughput": 0.45, "cost": 0.40, "error_rate": 0.15},
    "high_quality_analysis": {"accuracy": 0.70, "consistency": 0.10, "error_rate": 0.10, "e2e": 0.10},
    "embeddings": {"e2e": 0.35, "requests_per_s": 0.30, "cost": 0.25, "error_rate": 0.10},
}
"""Default weights per use case; ``--weights`` replaces them."""

PARETO_AXES = ("cost", "e2e", "accuracy")


@dataclass(slots=True)
class Candidate:
    """One provider:model, its measured values and (where known) their 95% intervals."""

    name: str
    values: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    requests: int = 0


@dataclass(slots=True)
class Ranking:
    use_case: str
    weights: dict[str, float]
    ranked: list[tuple[Candidate, float]]
    reasons: list[str]
    significant: bool | None
    pareto: list[str]
    unused: list[str]
    """Weighted metrics that no candidate measured (left out of the score)."""


def parse_weights(text: str) -> dict[str, float]:
    """``ttft=0.5,cost=0.2`` or a YAML file mapping metric -> weight; one-line ConfigError on anything else."""
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        data = read_yaml(text)
        if not isinstance(data, dict):
            raise ConfigError(f"{text}: expected a mapping of metric -> weight")
        raw = {str(k): v for k, v in data.items()}
    else:
        raw = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"--weights entry {part!r} must be METRIC=WEIGHT, e.g. ttft=0.5")
            raw[name.strip()] = value.strip()
    weights = {}
    for name, value in raw.items():
        if name not in METRICS:
            raise ConfigError(f"--weights: unknown metric {name!r}; known: {', '.join(METRICS)}")
        try:
            weight = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"--weights: {name} must be a number, got {value!r}") from None
        if weight < 0:
            raise ConfigError(f"--weights: {name} must be >= 0, got {weight}")
        weights[name] = weight
    if not any(weights.values()):
        raise ConfigError("--weights must give at least one metric a weight > 0")
    return weights


def _worst_p95(results: list[BenchmarkResult], attr: str) -> tuple[float, tuple[float, float] | None] | None:
    metrics: list[LatencyMetrics] = [m for r in results if (m := getattr(r, attr)) is not None]
    if not metrics:
        return None
    worst = max(metrics, key=lambda m: m.p95)
    ci = worst.ci95.get("p95")
    return worst.p95, (tuple(ci) if ci else None)  # type: ignore[return-value]


def candidates(results: Iterable[BenchmarkResult], scenario: str = "") -> list[Candidate]:
    """One Candidate per provider:model from ``results`` (only ``scenario``'s, when given)."""
    groups: dict[str, list[BenchmarkResult]] = defaultdict(list)
    for r in results:
        if not scenario or r.scenario == scenario:
            groups[f"{r.provider}:{r.model}"].append(r)
    out = []
    for name, rs in sorted(groups.items()):
        c = Candidate(name=name, requests=sum(r.requests_total for r in rs))
        for metric, attr in (("ttft", "ttft"), ("itl", "itl"), ("e2e", "e2e")):
            worst = _worst_p95(rs, attr)
            if worst is not None:
                c.values[metric] = worst[0]
                if worst[1] is not None:
                    c.intervals[metric] = worst[1]
        c.values["throughput"] = max(r.output_tokens_per_s for r in rs)
        c.values["requests_per_s"] = max(r.requests_per_s for r in rs)
        total = sum(r.requests_total for r in rs)
        failed = sum(r.requests_failed for r in rs)
        if total:
            c.values["error_rate"] = failed / total
            c.intervals["error_rate"] = wilson_interval(failed, total)
        priced = [r for r in rs if r.tokens.cost_usd is not None and r.requests_ok]
        if priced:
            spent = sum(r.tokens.cost_usd or 0.0 for r in priced)
            c.values["cost"] = 1000.0 * spent / sum(r.requests_ok for r in priced)
        checked = sum(r.quality.get("checked", 0) for r in rs)
        if checked:
            passed = sum(r.quality.get("passed", 0) for r in rs)
            c.values["accuracy"] = passed / checked
            c.intervals["accuracy"] = wilson_interval(passed, checked)
        scores = [r.quality["consistency"] for r in rs if r.quality.get("consistency") is not None]
        if scores:
            c.values["consistency"] = sum(scores) / len(scores)
        out.append(c)
    return out


def _fmt(metric: str, value: float) -> str:
    m = METRICS[metric]
    if m.unit == "ms":
        return f"{value:.0f} ms"
    if m.unit == "%":
        return f"{100 * value:.1f}%"
    if m.unit == "USD":
        return f"${value:.4f}"
    if m.unit:
        return f"{value:.1f} {m.unit}"
    return f"{value:.2f}"


def _better(metric: str, a: float, b: float) -> bool:
    return a > b if METRICS[metric].higher_is_better else a < b


def pareto_front(cands: Sequence[Candidate], axes: Sequence[str] = PARETO_AXES) -> list[str]:
    """Names of the candidates no other candidate matches or beats on every axis (and beats on one).

    Only axes every candidate measured are used, so a missing number never decides."""
    used = [a for a in axes if all(a in c.values for c in cands)]
    if not used:
        return [c.name for c in cands]

    def dominates(x: Candidate, y: Candidate) -> bool:
        not_worse = all(not _better(a, y.values[a], x.values[a]) for a in used)
        return not_worse and any(_better(a, x.values[a], y.values[a]) for a in used)

    return [c.name for c in cands if not any(dominates(o, c) for o in cands if o is not c)]


def rank(cands: Sequence[Candidate], use_case: str = "realtime_chat",
         weights: dict[str, float] | None = None) -> Ranking:
    """Rank candidates for ``use_case`` (or by ``weights``), with reasons and a significance verdict."""
    if use_case not in USE_CASES and weights is None:
        raise ConfigError(f"unknown use case {use_case!r}; known: {', '.join(USE_CASES)}")
    chosen = dict(weights if weights is not None else USE_CASES[use_case])
    used = {m: w for m, w in chosen.items() if w > 0 and any(m in c.values for c in cands)}
    unused = sorted(m for m, w in chosen.items() if w > 0 and m not in used)
    total_weight = sum(used.values())
    scores = {c.name: 0.0 for c in cands}
    for metric, weight in used.items():
        present = [c.values[metric] for c in cands if metric in c.values]
        lo, hi = min(present), max(present)
        for c in cands:
            if metric not in c.values:
                continue  # an unmeasured metric earns nothing: no credit for missing data
            if hi == lo:
                goodness = 1.0  # a tie: everyone is the best measured
            else:
                scaled = (c.values[metric] - lo) / (hi - lo)
                goodness = scaled if METRICS[metric].higher_is_better else 1.0 - scaled
            scores[c.name] += weight * goodness
    ranked = sorted(((c, scores[c.name] / total_weight if total_weight else 0.0) for c in cands),
                    key=lambda pair: (-pair[1], pair[0].name))
    reasons, significant = _explain(ranked, used)
    return Ranking(use_case, chosen, ranked, reasons, significant, pareto_front(cands), unused)


def _explain(ranked: list[tuple[Candidate, float]], used: dict[str, float]) -> tuple[list[str], bool | None]:
    if not ranked:
        return ["no results to rank"], None
    leader = ranked[0][0]
    if len(ranked) == 1:
        return [f"{leader.name} is the only candidate measured; nothing to compare it with"], None
    runner = ranked[1][0]
    reasons = []
    separated, overlapping, no_interval = [], [], []
    for metric in sorted(used, key=lambda m: -used[m]):
        if metric not in leader.values or metric not in runner.values:
            continue
        a, b = leader.values[metric], runner.values[metric]
        leader_better = _better(metric, a, b)
        verb = "better" if leader_better else ("the same" if a == b else "worse")
        line = f"{leader.name} has {METRICS[metric].label} {_fmt(metric, a)} vs {_fmt(metric, b)} for {runner.name}"
        if metric in leader.intervals and metric in runner.intervals:
            apart = not intervals_overlap(leader.intervals[metric], runner.intervals[metric])
            line += " (95% intervals do not overlap)" if apart else " (95% intervals overlap)"
            if leader_better:
                (separated if apart else overlapping).append(METRICS[metric].label)
        elif leader_better:
            no_interval.append(METRICS[metric].label)
        reasons.append(f"{line}: {verb} (weight {used[metric]:g})")
    # Only the metrics the leader wins on can make its lead significant; a tie in error rate says nothing.
    significant: bool | None = True if separated else (False if overlapping else None)
    unjudged = f"; {', '.join(no_interval)} have no interval to judge by" if no_interval else ""
    if significant is False:
        reasons.append(
            f"the difference between {leader.name} and {runner.name} is not statistically significant: their 95% "
            f"intervals overlap on {', '.join(overlapping)}{unjudged}; measure longer or treat them as equal"
        )
    elif significant is None and no_interval:
        reasons.append(f"significance not assessed: {', '.join(no_interval)} have no 95% interval")
    return reasons, significant


def load_runs(paths: Iterable[str | Path]) -> list[RunResult]:
    return [RunResult.load(Path(p)) for p in paths]


def _all_results(runs: Iterable[RunResult]) -> list[BenchmarkResult]:
    return [r for run in runs for r in run.results]


def format_ranking(r: Ranking) -> str:
    lines = [f"Use case: {r.use_case}  (weights: {', '.join(f'{k}={v:g}' for k, v in r.weights.items())})"]
    for place, (cand, score) in enumerate(r.ranked, start=1):
        shown = ", ".join(f"{METRICS[m].label} {_fmt(m, cand.values[m])}" for m in r.weights if m in cand.values)
        lines.append(f"  {place}. {cand.name:<40} score {score:.2f}  {shown}")
    lines += [f"  - {reason}" for reason in r.reasons]
    if r.unused:
        lines.append(f"  - not measured by any run, left out of the score: {', '.join(r.unused)}")
    lines.append(f"  Pareto front (cost, e2e p95, accuracy): {', '.join(r.pareto) or '-'}")
    return "\n".join(lines)


def recommendations(runs: Sequence[RunResult], use_cases: Sequence[str] | None = None,
                    weights: dict[str, float] | None = None, scenario: str = "") -> list[Ranking]:
    results = _all_results(runs)
    if weights is not None:
        return [rank(candidates(results, scenario), (use_cases or ["custom"])[0], weights)]
    return [rank(candidates(_for_use_case(results, u), scenario), u) for u in (use_cases or list(USE_CASES))]


def _for_use_case(results: list[BenchmarkResult], use_case: str) -> list[BenchmarkResult]:
    """Embedding results judge the embeddings use case only, and chat/tool results the others."""
    wants_embeddings = use_case == "embeddings"
    return [r for r in results if (r.endpoint == "embeddings") == wants_embeddings]


def recommendation_section(runs: Sequence[RunResult]) -> str:
    """HTML (every value escaped) with the ranking for each use case: the body of the report's Recommendations
    section (the report adds the section and its heading)."""
    parts = ['<div class="recommendations">']
    for r in recommendations(runs):
        if not r.ranked:
            continue
        parts.append(f"<h3>{html.escape(r.use_case)}</h3><ol>")
        for cand, score in r.ranked:
            parts.append(f"<li>{html.escape(cand.name)} — score {score:.2f}</li>")
        parts.append("</ol><ul>")
        parts += [f"<li>{html.escape(reason)}</li>" for reason in r.reasons]
        parts.append(f"<li>Pareto front (cost, e2e p95, accuracy): {html.escape(', '.join(r.pareto))}</li></ul>")
    parts.append("</div>")
    return "".join(parts)


def report_sections(runs: Sequence[RunResult]) -> list[tuple[str, Markup]]:
    """The report's Recommendations section, for ``write_report(extra_sections=...)``; none when no use case has
    two candidates to compare (a ranking of one says nothing)."""
    if not any(len(r.ranked) > 1 for r in recommendations(runs)):
        return []
    return [("Recommendations", Markup(recommendation_section(runs)))]


def add_subcommand(subparsers: Any) -> None:
    p = subparsers.add_parser("recommend", help="Rank providers/models from measured runs for a use case")
    p.add_argument("runs", nargs="+", help="Run folders or result.json files")
    p.add_argument("--use-case", default="", help=f"One of {', '.join(USE_CASES)} (default: all)")
    p.add_argument("--weights", default="", help="METRIC=W,... or a YAML file; replaces the use case's weights. "
                                                 f"Metrics: {', '.join(METRICS)}")
    p.add_argument("--scenario", default="", help="Only judge results of this scenario")
    p.add_argument("--json", action="store_true", help="Print JSON instead of text")


def _as_json(r: Ranking) -> dict[str, Any]:
    return {
        "use_case": r.use_case,
        "weights": r.weights,
        "ranking": [{"candidate": c.name, "score": s, "values": c.values} for c, s in r.ranked],
        "reasons": r.reasons,
        "significant": r.significant,
        "pareto_front": r.pareto,
        "unmeasured": r.unused,
    }


@command("recommend")
def _recommend(args: argparse.Namespace) -> int:
    if args.use_case and args.use_case not in USE_CASES and not args.weights:
        raise ConfigError(f"--use-case must be one of {', '.join(USE_CASES)}, got {args.use_case!r}")
    weights = parse_weights(args.weights) if args.weights else None
    rankings = recommendations(load_runs(args.runs), [args.use_case] if args.use_case else None, weights,
                               args.scenario)
    # A chat-only run has nothing for the embeddings use case, and the reverse: show the use cases it can answer.
    rankings = [r for r in rankings if r.ranked]
    if not rankings:
        raise ConfigError("no results to rank" + (f" for scenario {args.scenario!r}" if args.scenario else "")
                          + (f" for use case {args.use_case!r}" if args.use_case else ""))
    if args.json:
        print(json.dumps([_as_json(r) for r in rankings], indent=2))
    else:
        print("\n\n".join(format_ranking(r) for r in rankings))
    return 0
