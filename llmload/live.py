"""Live figures and SLO checks, free of Locust and gevent so they can be tested (and reused) in any process.

The :class:`Monitor` keeps, per provider/model, the last ``window_s`` seconds of completed requests and derives TTFT
p95, ITL p50, error rate and output tokens/s from them; ``check`` compares them with the thresholds parsed from
``config/thresholds.yaml``. ``llmload.monitor`` wires it into a Locust run.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import yaml
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llmload.errors import ConfigError
from llmload.metrics import RequestRecord
from llmload.secrets import redact

logger = logging.getLogger("llmload.monitor")

DEFAULT_THRESHOLDS_FILE = "config/thresholds.yaml"
MIN_WINDOW_REQUESTS = 5
"""A window with fewer completed requests is not judged: one slow request would be its whole p95."""

LIVE_METRICS: dict[str, bool] = {
    "ttft_p95_ms": False,
    "itl_p50_ms": False,
    "error_rate": False,
    "output_tokens_per_s": True,
}
"""Live figures and whether higher is better."""


# --- thresholds -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Threshold:
    """One SLO: absolute ``max``/``min``, or a change relative to the stored baseline."""

    metric: str
    max: float | None = None
    min: float | None = None
    max_increase_pct: float | None = None
    max_decrease_pct: float | None = None

    def breach(self, value: float, baseline: float | None) -> str | None:
        """A one-line description of how ``value`` breaks this SLO, or None."""
        if self.max is not None and value > self.max:
            return f"{self.metric} {value:.4g} > max {self.max:g}"
        if self.min is not None and value < self.min:
            return f"{self.metric} {value:.4g} < min {self.min:g}"
        if baseline is not None and baseline > 0:
            change = (value - baseline) / baseline * 100.0
            if self.max_increase_pct is not None and change > self.max_increase_pct:
                return f"{self.metric} {value:.4g} is {change:+.1f}% vs baseline {baseline:.4g} " \
                       f"(max increase {self.max_increase_pct:g}%)"
            if self.max_decrease_pct is not None and -change > self.max_decrease_pct:
                return f"{self.metric} {value:.4g} is {change:+.1f}% vs baseline {baseline:.4g} " \
                       f"(max decrease {self.max_decrease_pct:g}%)"
        return None

    @property
    def relative(self) -> bool:
        return self.max_increase_pct is not None or self.max_decrease_pct is not None


_THRESHOLD_KEYS = ("max", "min", "max_increase_pct", "max_decrease_pct")


def parse_thresholds(data: Any, source: str = "thresholds") -> dict[str, Threshold]:
    """Validate a thresholds mapping (``{metric: {max|min|max_increase_pct|max_decrease_pct: number}}``)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a mapping of metric -> limits, e.g. ttft_p95_ms: {{max: 800}}")
    out = {}
    for metric, limits in data.items():
        if metric not in LIVE_METRICS:
            raise ConfigError(f"{source}: unknown metric '{metric}'; use one of {', '.join(LIVE_METRICS)}")
        if not isinstance(limits, dict) or not limits:
            raise ConfigError(f"{source}: {metric} must be a mapping like {{max: 800}} or {{max_increase_pct: 20}}")
        for key, value in limits.items():
            if key not in _THRESHOLD_KEYS:
                raise ConfigError(f"{source}: {metric}.{key} is not a limit; use {', '.join(_THRESHOLD_KEYS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{source}: {metric}.{key} must be a number >= 0, got {value!r}")
        out[metric] = Threshold(metric, **{k: float(v) for k, v in limits.items()})
    return out


def load_thresholds(path: str | None) -> dict[str, Threshold]:
    """Thresholds from a YAML file; the default file is optional, an explicitly named one must exist."""
    file = Path(path or DEFAULT_THRESHOLDS_FILE)
    if not file.exists():
        if path:
            raise ConfigError(f"--thresholds {path}: no such file")
        return {}
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{file}: not valid YAML{where}") from None
    return parse_thresholds(data, str(file))


def parse_fail_on(value: str) -> set[str]:
    """``ttft_p95,error_rate`` -> canonical metric names; the ``_ms`` suffix is optional."""
    names = set()
    for raw in filter(None, (p.strip() for p in value.split(","))):
        name = raw if raw in LIVE_METRICS else f"{raw}_ms"
        if name not in LIVE_METRICS:
            choices = ", ".join(m.removesuffix("_ms") for m in LIVE_METRICS)
            raise ConfigError(f"--fail-on: unknown metric '{raw}'; use {choices}")
        names.add(name)
    return names


# --- rolling window -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Sample:
    done_at: float
    ok: bool
    ttft_ms: float | None
    itl_ms: list[float]
    output_tokens: int


@dataclass(slots=True)
class WindowStats:
    provider: str
    model: str
    requests: int
    ttft_p95_ms: float | None
    itl_p50_ms: float | None
    error_rate: float
    output_tokens_per_s: float

    def value(self, metric: str) -> float | None:
        return getattr(self, metric)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "requests": self.requests,
            **{m: self.value(m) for m in LIVE_METRICS},
        }


@dataclass(slots=True)
class Alert:
    at: float
    provider: str
    model: str
    metric: str
    message: str
    value: float
    fail: bool

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "provider": self.provider, "model": self.model, "metric": self.metric,
                "message": self.message, "value": self.value, "fail": self.fail}


@dataclass
class Monitor:
    """Rolling-window live figures per provider/model, with SLO checks."""

    window_s: float = 10.0
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    fail_on: set[str] = field(default_factory=set)
    webhook: str = ""
    baseline: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    """Per provider/model, the stored baseline's figures for relative thresholds."""
    alerts: list[Alert] = field(default_factory=list)
    _samples: dict[tuple[str, str], deque[_Sample]] = field(default_factory=dict)
    _breached: set[tuple[str, str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, record: RequestRecord) -> None:
        sample = _Sample(record.started_at + record.e2e_ms / 1000.0, record.ok, record.ttft_ms, list(record.itl_ms),
                         record.output_tokens if record.ok else 0)
        with self._lock:
            self._samples.setdefault((record.provider, record.model), deque()).append(sample)

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
        self._breached.clear()
        self.alerts.clear()

    def snapshot(self, now: float | None = None) -> list[WindowStats]:
        now = time.time() if now is None else now
        horizon = now - self.window_s
        out = []
        with self._lock:
            for (provider, model), samples in sorted(self._samples.items()):
                while samples and samples[0].done_at < horizon:
                    samples.popleft()
                # Workers' batches can arrive out of completion order; the popleft above only trims the front.
                items = [s for s in samples if s.done_at >= horizon]
                if not items:
                    continue
                ttfts = [s.ttft_ms for s in items if s.ok and s.ttft_ms is not None]
                itls = [g for s in items if s.ok for g in s.itl_ms]
                # Tokens/s over the part of the window the run has actually covered, so the first seconds of a
                # run are not divided by the full window.
                span = min(self.window_s, max(1e-3, now - min(s.done_at for s in items)))
                span = max(span, 1.0)
                out.append(
                    WindowStats(
                        provider=provider,
                        model=model,
                        requests=len(items),
                        ttft_p95_ms=float(np.percentile(ttfts, 95)) if ttfts else None,
                        itl_p50_ms=float(np.percentile(itls, 50)) if itls else None,
                        error_rate=sum(1 for s in items if not s.ok) / len(items),
                        output_tokens_per_s=sum(s.output_tokens for s in items) / span,
                    )
                )
        return out

    def check(self, now: float | None = None) -> list[Alert]:
        """Compare the window with the thresholds; return the new breaches (each alerts once until it clears)."""
        new = []
        for stats in self.snapshot(now):
            if stats.requests < MIN_WINDOW_REQUESTS:
                continue
            for metric, threshold in self.thresholds.items():
                value = stats.value(metric)
                state_key = (stats.provider, stats.model, metric)
                if value is None:
                    continue
                baseline = self.baseline.get((stats.provider, stats.model), {}).get(metric)
                message = threshold.breach(value, baseline)
                if message is None:
                    self._breached.discard(state_key)
                    continue
                if state_key in self._breached:
                    continue
                self._breached.add(state_key)
                alert = Alert(time.time(), stats.provider, stats.model, metric,
                              f"{stats.provider}:{stats.model}: {message}", value, metric in self.fail_on)
                self.alerts.append(alert)
                new.append(alert)
        return new

    def payload(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "updated_at": time.time(),
            "stats": [s.to_dict() for s in self.snapshot()],
            "alerts": [a.to_dict() for a in self.alerts[-50:]],
        }


def post_webhook(url: str, alert: Alert, timeout_s: float = 5.0) -> None:
    """POST the alert as JSON; failures are logged, never raised: alerting must not break the run."""
    body = json.dumps({"source": "llmload", **alert.to_dict()}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except OSError as exc:
        # Webhook URLs often carry their secret in the path (Slack, Teams): name only the host.
        logger.warning("llmload: alert webhook to %s failed: %s", urlsplit(url).netloc, redact(str(exc)))


def validate_webhook(url: str) -> str:
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"--alert-webhook must be an http:// or https:// URL, got scheme '{urlsplit(url).scheme}'")
    return url


# --- Prometheus -----------------------------------------------------------------------------------------------


class MonitorCollector(Collector):
    """Exposes the monitor's current window as gauges, computed at scrape time."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self.monitor.snapshot()
        families = {
            "ttft_p95_ms": GaugeMetricFamily("llmload_ttft_p95_ms", "TTFT p95 over the rolling window (ms)",
                                             labels=["provider", "model"]),
            "itl_p50_ms": GaugeMetricFamily("llmload_itl_p50_ms", "ITL p50 over the rolling window (ms)",
                                            labels=["provider", "model"]),
            "error_rate": GaugeMetricFamily("llmload_error_rate", "Failed / all requests over the rolling window",
                                            labels=["provider", "model"]),
            "output_tokens_per_s": GaugeMetricFamily("llmload_output_tokens_per_s",
                                                     "Output tokens per second over the rolling window",
                                                     labels=["provider", "model"]),
        }
        requests = GaugeMetricFamily("llmload_window_requests", "Completed requests in the rolling window",
                                     labels=["provider", "model"])
        for s in stats:
            for metric, family in families.items():
                value = s.value(metric)
                if value is not None:
                    family.add_metric([s.provider, s.model], value)
            requests.add_metric([s.provider, s.model], s.requests)
        alerts = GaugeMetricFamily("llmload_alerts", "SLO breaches alerted in this run")
        alerts.add_metric([], len(self.monitor.alerts))
        yield from families.values()
        yield requests
        yield alerts


