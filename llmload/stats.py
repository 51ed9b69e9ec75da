"""Statistics shared by results, reports and regression checks: percentiles, bootstrap intervals, histograms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAP_SEED = 20261123
BOOTSTRAP_RESAMPLES = 400
BOOTSTRAP_MAX_N = 20_000
"""Above this many samples, percentile intervals use the distribution-free order-statistic bound instead of
resampling (same coverage, far cheaper)."""


def percentile(values: np.ndarray, q: float) -> float:
    """Linear-interpolated percentile (numpy's default), the one definition used everywhere in llmload."""
    return float(np.percentile(values, q))


def bootstrap_ci(
    values: np.ndarray, statistic: str, *, confidence: float = 0.95, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """A seeded percentile-bootstrap interval for ``statistic`` ("mean" or "pNN").

    Deterministic for the same samples. For large samples of a percentile, an order-statistic interval
    (normal approximation to the binomial) replaces resampling.
    """
    n = len(values)
    if n == 0:
        return (float("nan"), float("nan"))
    if n == 1:
        v = float(values[0])
        return (v, v)
    alpha = (1.0 - confidence) / 2.0
    if statistic != "mean" and n > BOOTSTRAP_MAX_N:
        q = float(statistic[1:]) / 100.0
        z = 1.959963984540054
        half = z * np.sqrt(n * q * (1 - q))
        ordered = np.sort(values)
        lo = int(max(0, np.floor(n * q - half)))
        hi = int(min(n - 1, np.ceil(n * q + half)))
        return (float(ordered[lo]), float(ordered[hi]))
    rng = np.random.default_rng(seed)
    sample = values if n <= BOOTSTRAP_MAX_N else rng.choice(values, BOOTSTRAP_MAX_N, replace=False)
    idx = rng.integers(0, len(sample), size=(BOOTSTRAP_RESAMPLES, len(sample)))
    resampled = sample[idx]
    if statistic == "mean":
        stats = resampled.mean(axis=1)
    else:
        stats = np.percentile(resampled, float(statistic[1:]), axis=1)
    return (float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha)))


HISTOGRAM_BINS = 60


def log_histogram(
    values: Sequence[float] | np.ndarray, bins: int = HISTOGRAM_BINS, weights: np.ndarray | None = None
) -> dict[str, list[float]]:
    """Log-spaced histogram of positive durations: ``{"edges": [...], "counts": [...]}``. Small and plottable.

    ``weights`` counts each value that many times (an HDR histogram's recorded values and their counts)."""
    arr = np.asarray(values, dtype=float)
    positive = arr > 0
    arr = arr[positive]
    if weights is not None:
        weights = np.asarray(weights, dtype=float)[positive]
    if arr.size == 0:
        return {"edges": [], "counts": []}
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo * (1 + 1e-6):
        # (Near-)constant samples: geomspace over a zero-width range gives non-increasing edges.
        hi = lo * 1.01 + 1e-9
    edges = np.geomspace(lo, hi, bins + 1)
    counts, _ = np.histogram(arr, bins=edges, weights=weights)
    return {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]}


def intervals_overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Whether two ``(low, high)`` intervals overlap; unknown intervals count as overlapping (no claim)."""
    if not a or not b:
        return True
    return not (a[1] < b[0] or b[1] < a[0])
