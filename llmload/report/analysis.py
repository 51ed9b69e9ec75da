"""What a report concludes from results: labels, CI-aware verdicts, the saturation knee, normalized scores.

Kept apart from rendering so each rule can be tested on synthetic numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmload.results import BenchmarkResult, LatencyMetrics, RunResult
from llmload.stats import intervals_overlap

KNEE_MIN_GAIN = 0.10
"""A load step that adds less than this fraction of throughput..."""
KNEE_MIN_LATENCY_RISE = 0.25
"""...while raising p95 e2e latency by more than this fraction is past saturation."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One result as the report shows it: a unique human label and where it came from."""

    label: str
    run_id: str
    result: BenchmarkResult


def entries(runs: Sequence[RunResult]) -> list[Entry]:
    """Label every result ``provider:model`` plus scenario/level/run only where they are needed to tell apart."""
    flat = [(run.run_id, r) for run in runs for r in run.results]
    many_runs = len({run_id for run_id, _ in flat}) > 1
    many_scenarios = len({r.scenario for _, r in flat}) > 1
    out = []
    for run_id, r in flat:
        parts = [f"{r.provider}:{r.model}"]
        if many_scenarios:
            parts.append(r.scenario)
        if r.level is not None:
            parts.append(f"L{r.level}")
        if many_runs:
            parts.append(f"[{run_id}]")
        out.append(Entry(label=" ".join(parts), run_id=run_id, result=r))
    return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """One comparison sentence: who is best on a metric, and whether the lead is statistically significant."""

    group: str
    metric: str
    best: str
    best_value: float
    runner_up: str | None
    runner_up_value: float | None
    significant: bool
    best_system: str = ""
    """``provider:model`` of the winner, for tallying wins across levels and scenarios."""

    @property
    def text(self) -> str:
        if self.runner_up is None:
            return f"{self.best}: {self.metric} {self.best_value:,.1f} ms (nothing to compare against)"
        if not self.significant:
            return (
                f"{self.best} and {self.runner_up}: {self.metric} {self.best_value:,.1f} vs "
                f"{self.runner_up_value:,.1f} ms; the difference is not significant (95% CIs overlap)"
            )
        return (
            f"{self.best} has the lowest {self.metric}: {self.best_value:,.1f} ms vs {self.runner_up_value:,.1f} ms "
            f"for {self.runner_up} (95% CIs do not overlap)"
        )


VERDICT_METRICS: tuple[tuple[str, str, str], ...] = (("ttft", "p50", "TTFT p50"), ("e2e", "p50", "e2e p50"),
                                                     ("e2e", "p95", "e2e p95"))


def verdicts(items: Sequence[Entry]) -> list[Verdict]:
    """Compare results that ran the same scenario at the same load level, metric by metric.

    The winner is the lowest point estimate; it is called significant only when its 95% CI does not overlap the
    runner-up's (``llmload.stats.intervals_overlap``), so noise never crowns a winner.
    """
    groups: dict[tuple[str, int | None], list[Entry]] = defaultdict(list)
    for e in items:
        groups[(e.result.scenario, e.result.level)].append(e)
    out = []
    for (scenario, level), members in groups.items():
        group = scenario if level is None else f"{scenario} at load level {level}"
        for attr, stat, title in VERDICT_METRICS:
            ranked = sorted(
                ((m, metric) for m in members if (metric := getattr(m.result, attr)) is not None),
                key=lambda pair: getattr(pair[1], stat),
            )
            if not ranked:
                continue
            best, best_m = ranked[0]
            system = f"{best.result.provider}:{best.result.model}"
            if len(ranked) == 1:
                out.append(Verdict(group, title, best.label, getattr(best_m, stat), None, None, False, system))
                continue
            second, second_m = ranked[1]
            out.append(
                Verdict(
                    group=group,
                    metric=title,
                    best=best.label,
                    best_value=getattr(best_m, stat),
                    runner_up=second.label,
                    runner_up_value=getattr(second_m, stat),
                    significant=not intervals_overlap(best_m.ci95.get(stat), second_m.ci95.get(stat)),
                    best_system=system,
                )
            )
    return out


def headline(found: Sequence[Verdict]) -> str:
    """One sentence over all comparisons: who wins significantly how often, and how many are statistical ties."""
    compared = [v for v in found if v.runner_up is not None]
    if not compared:
        return "Only one result per scenario and load level: nothing to compare, the numbers below stand alone."
    wins: dict[str, int] = defaultdict(int)
    for v in compared:
        if v.significant:
            wins[v.best_system] += 1
    ties = sum(1 for v in compared if not v.significant)
    if not wins:
        return (f"No significant differences: in all {len(compared)} latency comparisons the 95% confidence "
                "intervals overlap, so no result can be called faster.")
    ranked = sorted(wins.items(), key=lambda kv: (-kv[1], kv[0]))
    leader, count = ranked[0]
    others = ", ".join(f"{name} {n}" for name, n in ranked[1:])
    text = f"{leader} is significantly faster in {count} of {len(compared)} latency comparisons"
    if others:
        text += f" (other significant wins: {others})"
    if ties:
        text += f"; {ties} {'is a' if ties == 1 else 'are'} statistical tie{'' if ties == 1 else 's'} (95% CIs overlap)"
    return text + "."


def verdict_grid(found: Sequence[Verdict]) -> tuple[list[str], list[tuple[str, list[Verdict | None]]]]:
    """Verdicts as a table: one row per scenario/level group, one column per compared metric."""
    metrics = [title for _, _, title in VERDICT_METRICS]
    groups: dict[str, dict[str, Verdict]] = {}
    for v in found:
        groups.setdefault(v.group, {})[v.metric] = v
    return metrics, [(group, [cells.get(m) for m in metrics]) for group, cells in groups.items()]


def find_knee(
    throughput: Sequence[float], latency: Sequence[float], *, min_gain: float = KNEE_MIN_GAIN,
    min_latency_rise: float = KNEE_MIN_LATENCY_RISE,
) -> int | None:
    """Index of the saturation knee of a throughput-vs-latency curve ordered by increasing load, or None.

    The knee is the last point before the first step that buys less than ``min_gain`` relative throughput for more
    than ``min_latency_rise`` relative p95 latency: the highest load still worth offering. No such step means the
    system did not saturate in the measured range.
    """
    for i in range(len(throughput) - 1):
        t0, t1, l0, l1 = throughput[i], throughput[i + 1], latency[i], latency[i + 1]
        if t0 <= 0 or l0 <= 0:
            continue
        if (t1 - t0) / t0 < min_gain and (l1 - l0) / l0 > min_latency_rise:
            return i
    return None


@dataclass(frozen=True, slots=True)
class Axis:
    """A normalized scoring axis: the raw value of a result, and whether higher is better."""

    name: str
    value: Callable[[BenchmarkResult], float | None]
    higher_is_better: bool


def _metric(attr: str, stat: str) -> Callable[[BenchmarkResult], float | None]:
    def get(r: BenchmarkResult) -> float | None:
        m: LatencyMetrics | None = getattr(r, attr)
        return None if m is None else getattr(m, stat)

    return get


def cost_per_1k_output(r: BenchmarkResult) -> float | None:
    if r.tokens.cost_usd is None or r.tokens.output_tokens == 0:
        return None
    return 1000 * r.tokens.cost_usd / r.tokens.output_tokens


def _quality(r: BenchmarkResult) -> float | None:
    accuracy = r.quality.get("accuracy")
    return None if accuracy is None else float(accuracy)


RADAR_AXES = (
    Axis("latency", _metric("e2e", "p50"), False),
    Axis("throughput", lambda r: r.output_tokens_per_s if r.requests_ok else None, True),
    Axis("quality", _quality, True),
    Axis("reliability", lambda r: 1.0 - r.error_rate if r.requests_total else None, True),
    Axis("cost", cost_per_1k_output, False),
)

HEATMAP_AXES = (
    Axis("TTFT p50", _metric("ttft", "p50"), False),
    Axis("TTFT p95", _metric("ttft", "p95"), False),
    Axis("ITL p50", _metric("itl", "p50"), False),
    Axis("e2e p50", _metric("e2e", "p50"), False),
    Axis("e2e p95", _metric("e2e", "p95"), False),
    Axis("e2e p99", _metric("e2e", "p99"), False),
    Axis("req/s", lambda r: r.requests_per_s, True),
    Axis("output tok/s", lambda r: r.output_tokens_per_s, True),
    Axis("error rate", lambda r: r.error_rate, False),
    Axis("$ / 1k out tok", cost_per_1k_output, False),
)


def normalize(values: Sequence[float | None], higher_is_better: bool) -> list[float | None]:
    """Scores in [0, 1] where 1 is the best compared value; None stays None (shown as n/a).

    Ratio to the best (``v / best`` or ``best / v``) keeps proportions: twice as slow scores 0.5. A lower-is-better
    value of 0 (no errors, free) is the best possible and scores 1.
    """
    known = [v for v in values if v is not None]
    if not known:
        return [None for _ in values]
    out: list[float | None] = []
    if higher_is_better:
        best = max(known)
        for v in values:
            out.append(None if v is None else (1.0 if best <= 0 else max(v, 0.0) / best))
        return out
    best, worst = min(known), max(known)
    for v in values:
        if v is None:
            out.append(None)
        elif v <= 0:
            out.append(1.0)
        elif best <= 0:
            # A ratio to zero is meaningless; fall back to the linear distance from the worst value.
            out.append(1.0 - v / worst)
        else:
            out.append(best / v)
    return out


def score_matrix(items: Sequence[Entry], axes: Sequence[Axis]) -> tuple[list[list[float | None]],
                                                                         list[list[float | None]]]:
    """Raw values and normalized scores, one row per entry and one column per axis."""
    raw = [[axis.value(e.result) for axis in axes] for e in items]
    columns = [normalize([row[j] for row in raw], axis.higher_is_better) for j, axis in enumerate(axes)]
    scores = [[columns[j][i] for j in range(len(axes))] for i in range(len(items))]
    return raw, scores
