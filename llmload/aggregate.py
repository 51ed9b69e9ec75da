"""Streaming aggregation: request records in, BenchmarkResults out, in memory that stops growing with the run.

Records are folded into per-group accumulators as they arrive and are not kept (the exact records go to
``records.jsonl.gz`` as they arrive, see ``llmload.recorder``). What each part holds:

Latency distributions (:class:`Distribution`)
    Exact samples up to ``exact_samples`` per distribution (default :data:`EXACT_SAMPLES_DEFAULT`): below that,
    percentiles and intervals are exactly those of the samples, as numpy computes them. Past it, the samples are
    folded into an HDR histogram (``hdrh``: 1 µs to 1 h, 3 significant digits) and later values go there;
    percentiles then carry at most 0.1% relative error and the result says so in ``warnings``. Count, mean, min,
    max and standard deviation are always exact (running sums).
Timeline
    Requests, errors and output tokens per completion-time bucket, whole-second buckets aligned to the Unix clock;
    when a run spans more than ``2 * TIMELINE_MAX_POINTS`` buckets, adjacent buckets merge and the width doubles.
    Per-bucket TTFT/e2e medians come from up to :data:`BUCKET_SAMPLES` samples (a uniform reservoir beyond).
Reliability
    ``llmload.reliability.ReliabilityTracker``: one small entry per active second, plus the completion time of
    each failure.
Counts, token sums, errors by kind, quality checks
    Plain counters. Consistency keeps the first ``MAX_SCORED_ANSWERS`` answers, the ones it scores.
"""

from __future__ import annotations

import math
import random
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from llmload.consistency import MAX_SCORED_ANSWERS, consistency_score
from llmload.metrics import RequestRecord
from llmload.quality import wilson_interval
from llmload.reliability import ReliabilityTracker
from llmload.results import BenchmarkResult, LatencyMetrics, TokenUsage
from llmload.stats import log_histogram, percentile

EXACT_SAMPLES_DEFAULT = 100_000
"""Samples kept exactly per distribution before it switches to an HDR histogram (800 kB each)."""
HDR_LOWEST_US = 1
HDR_HIGHEST_US = 3_600_000_000
HDR_SIGNIFICANT_DIGITS = 3
TIMELINE_MAX_POINTS = 300
BUCKET_SAMPLES = 128
PENDING_BATCH = 8_192
_HDR_SUB_BUCKET_BITS = 11
"""log2 of the sub-bucket count HDR uses for 3 significant digits (2048): values up to 2^11 µs are exact, and
each doubling above halves the resolution."""
_Z95 = 1.959963984540054

GroupKey = tuple[str, str, str, str, int | None]
"""provider, model, scenario, endpoint, level."""


class Distribution:
    """One latency distribution in milliseconds: exact samples up to a cap, then an HDR histogram."""

    __slots__ = ("exact_cap", "_samples", "_pending", "_hdr", "count", "_mean", "_m2", "min", "max")

    def __init__(self, exact_cap: int = EXACT_SAMPLES_DEFAULT) -> None:
        self.exact_cap = exact_cap
        self._samples: array[float] | None = array("d")
        self._pending: array[float] = array("d")
        """Histogram mode: values not yet folded into the histogram (folded in batches, vectorized)."""
        self._hdr: HdrHistogram | None = None
        self.count = 0
        self._mean = 0.0
        self._m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    @property
    def exact(self) -> bool:
        return self._samples is not None

    def add(self, value_ms: float) -> None:
        self._merge_stats(1, value_ms, 0.0, value_ms, value_ms)
        self._store([value_ms])

    def extend(self, values_ms: Iterable[float]) -> None:
        values = values_ms if isinstance(values_ms, (list, array)) else list(values_ms)
        if not values:
            return
        n = len(values)
        mean = sum(values) / n
        self._merge_stats(n, mean, sum((v - mean) ** 2 for v in values), min(values), max(values))
        self._store(values)

    def _merge_stats(self, n: int, mean: float, m2: float, low: float, high: float) -> None:
        """Chan et al.'s parallel update of count, mean and sum of squared deviations, plus min and max."""
        total = self.count + n
        delta = mean - self._mean
        self._m2 += m2 + delta * delta * self.count * n / total
        self._mean += delta * n / total
        self.count = total
        self.min = min(self.min, low)
        self.max = max(self.max, high)

    def _store(self, values: list[float] | array[float]) -> None:
        if self._samples is not None:
            self._samples.extend(values)
            if len(self._samples) > self.exact_cap:
                self._switch_to_histogram()
            return
        self._pending.extend(values)
        if len(self._pending) >= PENDING_BATCH:
            self._fold()

    def _switch_to_histogram(self) -> None:
        self._hdr = HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_DIGITS)
        assert self._samples is not None
        self._pending, self._samples = self._samples, None
        self._fold()

    def _fold(self) -> None:
        """Record the pending values, each counted at its HDR bucket's lowest value (what recording one by one
        would do), grouped so the histogram sees one call per distinct bucket."""
        if not self._pending:
            return
        assert self._hdr is not None
        micros = np.clip(np.rint(np.frombuffer(self._pending, dtype=float) * 1000.0), HDR_LOWEST_US, HDR_HIGHEST_US)
        micros = micros.astype(np.int64)
        shift = np.maximum(0, np.frexp(micros)[1] - _HDR_SUB_BUCKET_BITS)
        values, counts = np.unique((micros >> shift) << shift, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            self._hdr.record_value(value, count)
        self._pending = array("d")

    @property
    def stddev(self) -> float:
        return math.sqrt(self._m2 / (self.count - 1)) if self.count > 1 else 0.0

    def percentile(self, q: float) -> float:
        """The q-th percentile: numpy's linear interpolation while exact, HDR's value (≤0.1% off) after."""
        if self._samples is not None:
            return percentile(np.frombuffer(self._samples, dtype=float), q)
        self._fold()
        assert self._hdr is not None
        return min(self.max, max(self.min, self._hdr.get_value_at_percentile(q) / 1000.0))

    def summary(self, *, with_ci: bool = True) -> LatencyMetrics | None:
        if self.count == 0:
            return None
        if self._samples is not None:
            return LatencyMetrics.from_samples(np.frombuffer(self._samples, dtype=float), with_ci=with_ci)
        ci = {}
        if with_ci:
            ci = {stat: self._rank_interval(float(stat[1:])) for stat in ("p50", "p95", "p99")}
            half = _Z95 * self.stddev / math.sqrt(self.count)
            ci["mean"] = (self._mean - half, self._mean + half)
        mean = min(self.max, max(self.min, self._mean))
        return LatencyMetrics(
            count=self.count,
            p50=self.percentile(50),
            p95=self.percentile(95),
            p99=self.percentile(99),
            mean=mean,
            min=self.min,
            max=self.max,
            stddev=self.stddev,
            ci95=ci,
            histogram=self._histogram(),
        )

    def _rank_interval(self, q_pct: float) -> tuple[float, float]:
        """The distribution-free order-statistic interval ``llmload.stats.bootstrap_ci`` uses for large samples."""
        n, q = self.count, q_pct / 100.0
        half = _Z95 * math.sqrt(n * q * (1 - q))
        lo_rank = max(0, math.floor(n * q - half))
        hi_rank = min(n - 1, math.ceil(n * q + half))
        return (self.percentile(100.0 * (lo_rank + 1) / n), self.percentile(100.0 * (hi_rank + 1) / n))

    def _histogram(self) -> dict[str, list[float]]:
        self._fold()
        assert self._hdr is not None
        values, counts = [], []
        for item in self._hdr.get_recorded_iterator():
            values.append(item.value_iterated_to / 1000.0)
            counts.append(item.count_at_value_iterated_to)
        return log_histogram(np.asarray(values), weights=np.asarray(counts, dtype=float))

    @classmethod
    def combined(cls, parts: Iterable[Distribution]) -> Distribution:
        """One distribution holding every part's values (exact while every part is and the sum fits the cap)."""
        parts = [p for p in parts if p.count]
        out = cls(max((p.exact_cap for p in parts), default=EXACT_SAMPLES_DEFAULT))
        for part in parts:
            if part._samples is not None:
                out.extend(part._samples)
                continue
            part._fold()
            assert part._hdr is not None
            if out._hdr is None:
                out._switch_to_histogram()
            out._fold()
            assert out._hdr is not None
            out._hdr.add(part._hdr)
            out._merge_stats(part.count, part._mean, part._m2, part.min, part.max)
        return out


class Reservoir:
    """A uniform sample of at most ``size`` values (all of them while they fit)."""

    __slots__ = ("size", "seen", "values")

    def __init__(self, size: int = BUCKET_SAMPLES) -> None:
        self.size = size
        self.seen = 0
        self.values: array[float] = array("d")

    def add(self, value: float, rng: random.Random) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
            return
        slot = rng.randrange(self.seen)
        if slot < self.size:
            self.values[slot] = value

    def merge(self, other: Reservoir, rng: random.Random) -> None:
        seen = self.seen + other.seen
        if len(self.values) + len(other.values) <= self.size:
            self.values.extend(other.values)
        else:
            # Each slot draws from a side with probability proportional to what that side has seen.
            mine, theirs = list(self.values), list(other.values)
            rng.shuffle(mine)
            rng.shuffle(theirs)
            merged = array("d")
            while len(merged) < self.size and (mine or theirs):
                take_mine = bool(mine) and (not theirs or rng.random() < self.seen / seen)
                merged.append(mine.pop() if take_mine else theirs.pop())
            self.values = merged
        self.seen = seen

    def median(self) -> float | None:
        return float(np.median(np.frombuffer(self.values, dtype=float))) if self.values else None


class _Bucket:
    __slots__ = ("ok", "errors", "output_tokens", "ttft", "e2e")

    def __init__(self) -> None:
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.output_tokens = 0
        self.ttft = Reservoir()
        self.e2e = Reservoir()

    def merge(self, other: _Bucket, rng: random.Random) -> None:
        self.ok += other.ok
        self.errors.update(other.errors)
        self.output_tokens += other.output_tokens
        self.ttft.merge(other.ttft, rng)
        self.e2e.merge(other.e2e, rng)


class Timeline:
    """Per completion-time bucket: successes, errors by kind, output tokens, median TTFT and e2e."""

    def __init__(self, max_points: int = TIMELINE_MAX_POINTS) -> None:
        self.max_points = max_points
        self.width_s = 1
        self.buckets: dict[int, _Bucket] = {}
        self._rng = random.Random(0)

    def add(self, record: RequestRecord) -> None:
        index = int((record.started_at + record.e2e_ms / 1000.0) // self.width_s)
        bucket = self.buckets.get(index)
        if bucket is None:
            bucket = self.buckets[index] = _Bucket()
            if max(self.buckets) - min(self.buckets) >= 2 * self.max_points:
                self._coarsen()
                return self.add(record)
        if record.ok:
            bucket.ok += 1
            bucket.output_tokens += record.output_tokens
            bucket.e2e.add(record.e2e_ms, self._rng)
            if record.ttft_ms is not None:
                bucket.ttft.add(record.ttft_ms, self._rng)
        else:
            bucket.errors[record.error_kind or "other"] += 1
        return None

    def _coarsen(self) -> None:
        self.width_s *= 2
        merged: dict[int, _Bucket] = {}
        for index in sorted(self.buckets):
            target = merged.get(index // 2)
            if target is None:
                merged[index // 2] = self.buckets[index]
            else:
                target.merge(self.buckets[index], self._rng)
        self.buckets = merged

    def points(self, start: float, duration_s: float) -> list[dict[str, Any]]:
        """At most ``max_points`` points; ``t`` is seconds from the group's first start, rounded down to a bucket."""
        factor = max(1, math.ceil(max(1.0, math.ceil(duration_s / self.max_points)) / self.width_s))
        width = self.width_s * factor
        origin = math.floor(start / width)
        grouped: dict[int, _Bucket] = {}
        for index in sorted(self.buckets):
            key = (index * self.width_s) // width - origin
            target = grouped.get(key)
            if target is None:
                target = grouped[key] = _Bucket()
            target.merge(self.buckets[index], self._rng)
        return [
            {
                "t": key * width,
                "ok": b.ok,
                "errors": dict(b.errors),
                "ttft_p50": b.ttft.median(),
                "e2e_p50": b.e2e.median(),
                "output_tokens": b.output_tokens,
            }
            for key, b in sorted(grouped.items())
        ]


class GroupAccumulator:
    """Everything one BenchmarkResult needs, folded in one record at a time."""

    def __init__(self, *, exact_samples: int = EXACT_SAMPLES_DEFAULT, outage_end: float | None = None) -> None:
        self.total = 0
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.start = math.inf
        self.end = -math.inf
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_input_tokens = 0
        self.reasoning_tokens = 0
        self.tokens_estimated = False
        self.per_request_tps_sum = 0.0
        self.per_request_tps_count = 0
        self.quality_checked = 0
        self.quality_passed = 0
        self.answers: list[str] = []
        self.e2e = Distribution(exact_samples)
        self.ttft = Distribution(exact_samples)
        self.itl = Distribution(exact_samples)
        self.tpot = Distribution(exact_samples)
        self.schedule_lag = Distribution(exact_samples)
        self.e2e_from_schedule = Distribution(exact_samples)
        self.timeline = Timeline()
        self.reliability = ReliabilityTracker(outage_end=outage_end)

    def add(self, r: RequestRecord) -> None:
        self.total += 1
        self.start = min(self.start, r.started_at)
        self.end = max(self.end, r.started_at + r.e2e_ms / 1000.0)
        self.timeline.add(r)
        self.reliability.add(r)
        if r.schedule_lag_ms is not None:
            self.schedule_lag.add(r.schedule_lag_ms)
        if r.quality_ok is not None:
            self.quality_checked += 1
            self.quality_passed += bool(r.quality_ok)
        if not r.ok:
            self.errors[r.error_kind or "other"] += 1
            return
        self.ok += 1
        self.input_tokens += r.input_tokens
        self.output_tokens += r.output_tokens
        self.cached_input_tokens += r.cached_input_tokens
        self.reasoning_tokens += r.reasoning_tokens
        self.tokens_estimated = self.tokens_estimated or r.output_tokens_estimated
        if r.e2e_ms > 0 and r.output_tokens > 0:
            self.per_request_tps_sum += r.output_tokens / (r.e2e_ms / 1000.0)
            self.per_request_tps_count += 1
        if r.response_sample is not None and len(self.answers) < MAX_SCORED_ANSWERS:
            self.answers.append(r.response_sample)
        self.e2e.add(r.e2e_ms)
        if r.ttft_ms is not None:
            self.ttft.add(r.ttft_ms)
        self.itl.extend(r.itl_ms)
        if (tpot := r.tpot_ms) is not None:
            self.tpot.add(tpot)
        if r.e2e_from_schedule_ms is not None:
            self.e2e_from_schedule.add(r.e2e_from_schedule_ms)

    def result(
        self,
        key: GroupKey,
        *,
        run_id: str,
        load: dict[str, Any],
        price_for: Any = None,
        partial: bool = False,
    ) -> BenchmarkResult:
        provider, model, scenario, endpoint, level = key
        duration = max(self.end - self.start, 1e-6)
        usage = TokenUsage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.input_tokens + self.output_tokens,
            cached_input_tokens=self.cached_input_tokens,
            reasoning_tokens=self.reasoning_tokens,
            estimated=self.tokens_estimated,
        )
        pricing = price_for(provider, model) if price_for is not None else None
        if pricing is not None:
            usage = TokenUsage(**{**asdict(usage), "cost_usd": pricing.cost(usage)})
        warnings = []
        if usage.estimated:
            warnings.append("some output token counts are estimates: the provider reported no usage")
        histogram_based = [
            name for name in ("e2e", "ttft", "itl", "tpot") if not getattr(self, name).exact
        ]
        if histogram_based:
            warnings.append(
                f"{', '.join(histogram_based)} percentiles come from an HDR histogram (≤0.1% error): more than "
                f"{self.e2e.exact_cap} samples (--exact-samples)"
            )
        quality: dict[str, Any] = {}
        if self.quality_checked:
            quality = {
                "checked": self.quality_checked,
                "passed": self.quality_passed,
                "accuracy": self.quality_passed / self.quality_checked,
                "accuracy_ci95": wilson_interval(self.quality_passed, self.quality_checked),
            }
        if len(self.answers) >= 2:
            quality["consistency"] = consistency_score(self.answers)
            quality["consistency_samples"] = len(self.answers)
        return BenchmarkResult(
            run_id=run_id,
            provider=provider,
            model=model,
            scenario=scenario,
            endpoint=endpoint,
            started_at=self.start,
            duration_s=duration,
            requests_total=self.total,
            requests_ok=self.ok,
            requests_failed=self.total - self.ok,
            error_rate=(self.total - self.ok) / self.total,
            errors_by_kind=dict(self.errors),
            requests_per_s=self.ok / duration,
            output_tokens_per_s=self.output_tokens / duration,
            e2e=self.e2e.summary(),
            ttft=self.ttft.summary(),
            itl=self.itl.summary(),
            tpot=self.tpot.summary(),
            tokens=usage,
            level=level,
            load=load,
            per_request_output_tokens_per_s=(
                self.per_request_tps_sum / self.per_request_tps_count if self.per_request_tps_count else None
            ),
            schedule_lag=self.schedule_lag.summary(with_ci=False),
            e2e_from_schedule=self.e2e_from_schedule.summary(with_ci=False),
            quality=quality,
            timeline=self.timeline.points(self.start, duration),
            warnings=warnings,
            partial=partial,
            reliability=self.reliability.summary(),
        )


class RunAccumulator:
    """All groups of one run, split into records inside the measured window and records outside it (ramp-up).

    ``is_measured(record)`` decides at arrival; results use the measured groups, or, when no record was measured
    (a run stopped during ramp-up), the others.
    """

    def __init__(
        self,
        *,
        is_measured: Callable[[RequestRecord], bool] | None = None,
        exact_samples: int = EXACT_SAMPLES_DEFAULT,
        outage_end: float | None = None,
    ) -> None:
        self.is_measured = is_measured
        self.exact_samples = exact_samples
        self.outage_end = outage_end
        self.measured: dict[GroupKey, GroupAccumulator] = {}
        self.unmeasured: dict[GroupKey, GroupAccumulator] = {}

    def add(self, record: RequestRecord) -> None:
        measured = self.is_measured is None or self.is_measured(record)
        groups = self.measured if measured else self.unmeasured
        key = (record.provider, record.model, record.scenario, record.endpoint, record.level)
        group = groups.get(key)
        if group is None:
            group = groups[key] = GroupAccumulator(exact_samples=self.exact_samples, outage_end=self.outage_end)
        group.add(record)

    @property
    def groups(self) -> dict[GroupKey, GroupAccumulator]:
        return self.measured or self.unmeasured

    def results(
        self,
        *,
        run_id: str,
        load: dict[str, Any] | None = None,
        levels: dict[int, dict[str, Any]] | None = None,
        price_for: Any = None,
        partial: bool = False,
    ) -> list[BenchmarkResult]:
        out = []
        for key, group in sorted(self.groups.items(), key=lambda kv: str(kv[0])):
            level = key[4]
            level_load = (levels or {}).get(level, {}) if level is not None else {}
            out.append(
                group.result(key, run_id=run_id, load={**(load or {}), **level_load}, price_for=price_for,
                             partial=partial)
            )
        return out

    def level_groups(self, level: int) -> list[GroupAccumulator]:
        """The measured groups of one load level (every provider/model/scenario in it)."""
        return [g for key, g in self.measured.items() if key[4] == level]


def build_results(
    records: Iterable[RequestRecord],
    *,
    run_id: str,
    window_start: float | None = None,
    load: dict[str, Any] | None = None,
    levels: dict[int, dict[str, Any]] | None = None,
    price_for: Any = None,
    partial: bool = False,
    exact_samples: int = EXACT_SAMPLES_DEFAULT,
) -> list[BenchmarkResult]:
    """BenchmarkResults from a list of records, one per provider/model/scenario (and level, if records have one).

    ``window_start`` (Unix seconds) excludes ramp-up: records that started earlier are dropped when at least one
    record falls inside the window. ``price_for(provider, model)`` returns a pricing object with
    ``cost(TokenUsage) -> float`` or None.
    """
    accumulator = RunAccumulator(
        is_measured=None if window_start is None else (lambda r: r.started_at >= window_start),
        exact_samples=exact_samples,
    )
    for record in records:
        accumulator.add(record)
    return accumulator.results(run_id=run_id, load=load, levels=levels, price_for=price_for, partial=partial)
