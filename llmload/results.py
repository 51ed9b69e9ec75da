"""The data model: BenchmarkScenario, LatencyMetrics, TokenUsage, BenchmarkResult and the run file.

Every constructor validates its rules and raises ``llmload.errors.ValidationError`` with a message that names the
field. ``llmload.aggregate`` turns a run's request records into one BenchmarkResult per
provider/model/scenario (and load level, when the run had levels).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmload.errors import ValidationError
from llmload.stats import bootstrap_ci, log_histogram, percentile

SCHEMA_VERSION = 1
_EPS = 1e-9


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValidationError(message)


@dataclass(frozen=True, slots=True)
class LatencyMetrics:
    """Summary of one latency distribution, in milliseconds, with 95% confidence intervals."""

    count: int
    p50: float
    p95: float
    p99: float
    mean: float
    min: float
    max: float
    stddev: float
    ci95: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Bootstrap intervals keyed by statistic: ``p50``, ``p95``, ``p99``, ``mean``."""
    histogram: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(self.count > 0, "LatencyMetrics.count must be > 0")
        for name in ("p50", "p95", "p99", "mean", "min", "max", "stddev"):
            value = getattr(self, name)
            _require(
                math.isfinite(value) and value >= 0, f"LatencyMetrics.{name} must be a finite value >= 0, got {value}"
            )
        _require(
            self.p50 <= self.p95 + _EPS and self.p95 <= self.p99 + _EPS,
            f"LatencyMetrics percentiles must satisfy P50 <= P95 <= P99, got {self.p50}, {self.p95}, {self.p99}",
        )
        _require(
            self.min <= self.mean + _EPS and self.mean <= self.max + _EPS,
            f"LatencyMetrics must satisfy Min <= Mean <= Max, got {self.min}, {self.mean}, {self.max}",
        )
        _require(
            self.min <= self.p50 + _EPS and self.p99 <= self.max + _EPS,
            "LatencyMetrics percentiles must lie within [Min, Max]",
        )

    @classmethod
    def from_samples(cls, samples: Iterable[float], *, with_ci: bool = True) -> LatencyMetrics | None:
        arr = np.fromiter(samples, dtype=float)
        if arr.size == 0:
            return None
        ci: dict[str, tuple[float, float]] = {}
        if with_ci:
            for stat in ("p50", "p95", "p99", "mean"):
                ci[stat] = bootstrap_ci(arr, stat)
        return cls(
            count=int(arr.size),
            p50=percentile(arr, 50),
            p95=percentile(arr, 95),
            p99=percentile(arr, 99),
            mean=float(arr.mean()),
            min=float(arr.min()),
            max=float(arr.max()),
            stddev=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            ci95=ci,
            histogram=log_histogram(arr),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyMetrics:
        data = dict(data)
        data["ci95"] = {k: (float(v[0]), float(v[1])) for k, v in data.get("ci95", {}).items()}
        return cls(**data)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of a result, with cost. ``efficiency_ratio`` is output tokens per input token."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    estimated: bool = False
    """True when any request's output count came from the tokenizer estimate instead of provider usage."""

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "total_tokens", "cached_input_tokens", "reasoning_tokens"):
            _require(getattr(self, name) >= 0, f"TokenUsage.{name} must be >= 0")
        _require(
            self.total_tokens == self.input_tokens + self.output_tokens,
            f"TokenUsage.total_tokens ({self.total_tokens}) must equal input_tokens + output_tokens "
            f"({self.input_tokens} + {self.output_tokens})",
        )
        _require(self.cost_usd is None or self.cost_usd >= 0, "TokenUsage.cost_usd must be >= 0")

    @property
    def efficiency_ratio(self) -> float | None:
        return self.output_tokens / self.input_tokens if self.input_tokens else None


@dataclass(frozen=True, slots=True)
class BenchmarkScenario:
    """A named workload: what to send, and what a good answer looks like."""

    name: str
    endpoint: str = "chat"
    """``chat``, ``tools`` or ``embeddings``."""
    description: str = ""
    prompts: tuple[str, ...] = ("Say hello.",)
    system: str | None = None
    max_tokens: int = 128
    temperature: float | None = None
    stream: bool = True
    tools: tuple[dict[str, Any], ...] = ()
    checks: tuple[dict[str, Any], ...] = ()
    """Quality checks applied to each response (see ``llmload.quality``)."""
    weight: int = 1
    dimensions: int | None = None
    """Embeddings: the vector size to ask for (OpenAI ``dimensions``, Titan v2, Cohere, Ollama)."""
    encoding_format: Literal["float", "base64"] = "float"
    """Embeddings: ``float`` or ``base64`` (OpenAI protocol; base64 moves 4 bytes a dimension instead of JSON
    text, so it changes what is measured)."""

    def __post_init__(self) -> None:
        _require(bool(self.name), "BenchmarkScenario.name must not be empty")
        _require(
            self.endpoint in ("chat", "tools", "embeddings"),
            f"scenario '{self.name}': endpoint must be chat, tools or embeddings, got '{self.endpoint}'",
        )
        _require(len(self.prompts) > 0, f"scenario '{self.name}': prompts must not be empty")
        _require(self.max_tokens > 0, f"scenario '{self.name}': max_tokens must be > 0, got {self.max_tokens}")
        _require(self.weight > 0, f"scenario '{self.name}': weight must be > 0, got {self.weight}")
        _require(
            self.temperature is None or 0 <= self.temperature <= 2,
            f"scenario '{self.name}': temperature must be within [0, 2], got {self.temperature}",
        )
        _require(
            self.endpoint != "tools" or len(self.tools) > 0,
            f"scenario '{self.name}': endpoint 'tools' needs at least one entry in tools",
        )
        _require(
            self.dimensions is None or self.dimensions > 0,
            f"scenario '{self.name}': dimensions must be > 0, got {self.dimensions}",
        )
        _require(
            self.encoding_format in ("float", "base64"),
            f"scenario '{self.name}': encoding_format must be float or base64, got '{self.encoding_format}'",
        )


@dataclass(slots=True)
class BenchmarkResult:
    """Measured performance of one provider/model/scenario (at one load level) over a measured window."""

    run_id: str
    provider: str
    model: str
    scenario: str
    endpoint: str
    started_at: float
    duration_s: float
    requests_total: int
    requests_ok: int
    requests_failed: int
    error_rate: float
    errors_by_kind: dict[str, int]
    requests_per_s: float
    output_tokens_per_s: float
    e2e: LatencyMetrics | None
    ttft: LatencyMetrics | None = None
    itl: LatencyMetrics | None = None
    tpot: LatencyMetrics | None = None
    tokens: TokenUsage = field(default_factory=lambda: TokenUsage(0, 0, 0))
    level: int | None = None
    load: dict[str, Any] = field(default_factory=dict)
    """The load that produced this result: users, rate, shape name."""
    per_request_output_tokens_per_s: float | None = None
    schedule_lag: LatencyMetrics | None = None
    e2e_from_schedule: LatencyMetrics | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    partial: bool = False
    reliability: dict[str, Any] = field(default_factory=dict)
    """Uptime, MTBF, MTTR and incidents (see ``llmload.reliability``)."""

    def __post_init__(self) -> None:
        _require(
            0.0 <= self.error_rate <= 1.0, f"BenchmarkResult.error_rate must be within [0, 1], got {self.error_rate}"
        )
        _require(
            self.requests_total == self.requests_ok + self.requests_failed,
            "BenchmarkResult.requests_total must equal requests_ok + requests_failed",
        )
        _require(self.duration_s >= 0, "BenchmarkResult.duration_s must be >= 0")
        _require(self.requests_per_s >= 0, "BenchmarkResult.requests_per_s must be >= 0")
        _require(self.output_tokens_per_s >= 0, "BenchmarkResult.output_tokens_per_s must be >= 0")
        _require(
            sum(self.errors_by_kind.values()) == self.requests_failed,
            "BenchmarkResult.errors_by_kind must add up to requests_failed",
        )

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.model, self.scenario)

    @property
    def cost_per_request_usd(self) -> float | None:
        """Mean USD per successful request; None without prices or successes."""
        if self.tokens.cost_usd is None or not self.requests_ok:
            return None
        return self.tokens.cost_usd / self.requests_ok

    @property
    def cost_per_1k_requests_usd(self) -> float | None:
        per_request = self.cost_per_request_usd
        return None if per_request is None else per_request * 1000.0

    @property
    def quality_per_dollar(self) -> float | None:
        """Answers that passed their quality checks per USD spent; None without checks, prices or spend."""
        passed = self.quality.get("passed")
        if passed is None or not self.tokens.cost_usd:
            return None
        return passed / self.tokens.cost_usd

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tokens"]["efficiency_ratio"] = self.tokens.efficiency_ratio
        data["cost_per_request_usd"] = self.cost_per_request_usd
        data["cost_per_1k_requests_usd"] = self.cost_per_1k_requests_usd
        data["quality_per_dollar"] = self.quality_per_dollar
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkResult:
        data = {k: v for k, v in data.items() if k in _RESULT_FIELDS}
        for name in ("e2e", "ttft", "itl", "tpot", "schedule_lag", "e2e_from_schedule"):
            if data.get(name) is not None:
                data[name] = LatencyMetrics.from_dict(data[name])
        tokens = {k: v for k, v in data.get("tokens", {}).items() if k in _TOKEN_FIELDS}
        data["tokens"] = TokenUsage(**tokens) if tokens else TokenUsage(0, 0, 0)
        return cls(**data)


_RESULT_FIELDS = frozenset(f.name for f in fields(BenchmarkResult))
_TOKEN_FIELDS = frozenset(f.name for f in fields(TokenUsage))

@dataclass(slots=True)
class RunResult:
    """What a run writes to ``result.json``: run metadata plus its BenchmarkResults."""

    run_id: str
    meta: dict[str, Any]
    results: list[BenchmarkResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "meta": self.meta,
            "results": [r.to_dict() for r in self.results],
        }

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> RunResult:
        if path.is_dir():
            path = path / "result.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValidationError(f"{path}: no such result file") from None
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls(
            run_id=data["run_id"],
            meta=data.get("meta", {}),
            results=[BenchmarkResult.from_dict(r) for r in data.get("results", [])],
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")
