"""MockConfiguration: the knobs every emulator protocol (and the in-process mock provider) share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from llmload.errors import ConfigError

FAULTS = (
    "server_error",  # HTTP 500 before the stream starts
    "rate_limited",  # HTTP 429 with retry-after
    "overloaded",  # HTTP 503 (Anthropic: 529 overloaded_error; Bedrock: ModelNotReady/ServiceUnavailable)
    "disconnect",  # connection reset mid-stream
    "stall",  # stream stops sending bytes for stall_ms, then resumes
    "malformed",  # one garbled protocol frame mid-stream
    "truncate",  # stream ends cleanly but without its terminal event
    "midstream_error",  # the protocol's in-stream error event
    "midstream_overloaded",  # the protocol's in-stream overload error (Ollama's error lines carry no type)
    "slow_headers",  # response headers delayed by stall_ms
)


@dataclass(slots=True)
class MockConfiguration:
    """How an emulated model behaves. Times in milliseconds; every random choice comes from ``seed``."""

    ttft_ms: float = 200.0
    itl_ms: float = 20.0
    jitter: float = 0.0
    """Relative standard deviation applied to TTFT and each inter-token delay (0.1 = 10%)."""
    output_tokens: int = 64
    reasoning_tokens: int = 0
    """Tokens of reasoning streamed before each text answer, as a reasoning model streams its thinking (OpenAI-
    compatible ``reasoning_content``, Anthropic ``thinking_delta``, Bedrock ``reasoningContent``, Ollama
    ``thinking``). They come on top of ``output_tokens`` and count in the reported output usage."""
    error_rate: float = 0.0
    """Probability that a request fails; the failure kind is drawn from ``fault_weights``."""
    fault_weights: dict[str, float] = field(default_factory=lambda: {"server_error": 1.0})
    retry_after_s: float = 1.0
    stall_ms: float = 2000.0
    seed: int = 0
    concurrency_limit: int = 0
    """Requests beyond this many in flight wait in a queue (0 = unlimited), as a real server would."""
    quality: float = 1.0
    """Probability that an answer to a question with a known answer is correct."""
    embedding_dim: int = 256
    outage: tuple[float, float] | None = None
    """Seconds since server start during which every request fails with ``overloaded`` (an injected outage)."""

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "itl_ms", "jitter", "retry_after_s", "stall_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"emulator {name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.output_tokens < 1:
            raise ConfigError(f"emulator output-tokens must be >= 1, got {self.output_tokens}")
        if self.reasoning_tokens < 0:
            raise ConfigError(f"emulator reasoning-tokens must be >= 0, got {self.reasoning_tokens}")
        for name in ("error_rate", "quality"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                value = getattr(self, name)
                raise ConfigError(f"emulator {name.replace('_', '-')} must be within [0, 1], got {value}")
        unknown = set(self.fault_weights) - set(FAULTS)
        if unknown:
            raise ConfigError(f"unknown emulator fault {sorted(unknown)[0]!r}; known: {', '.join(FAULTS)}")
        weights = self.fault_weights.values()
        if any(w < 0 for w in weights) or (self.error_rate and not sum(weights)):
            raise ConfigError("emulator fault weights must be >= 0 and not all zero")

    @property
    def tokens_per_s(self) -> float:
        return 1000.0 / self.itl_ms if self.itl_ms else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MockConfiguration:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown emulator setting {sorted(unknown)[0]!r}")
        values = dict(data)
        if values.get("outage") is not None:
            values["outage"] = tuple(values["outage"])
        return cls(**values)


def parse_faults(spec: str) -> dict[str, float]:
    """Parse ``"rate_limited=0.5,disconnect=0.5"`` (or ``"disconnect"``) into fault weights."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, weight = part.partition("=")
        try:
            weights[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError(f"bad fault weight in {part!r}: expected NAME=NUMBER") from None
    return weights
