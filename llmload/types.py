"""Typed requests and the normalized stream events every provider adapter yields.

Adapters translate their SDK's objects into these few types; ``llmload.metrics.measure`` consumes them. Nothing
provider-specific crosses this line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ContentKind = Literal["text", "tool_args", "reasoning"]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat call, provider-neutral. ``messages`` use the OpenAI shape ``{"role", "content"}``."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int = 128
    stream: bool = True
    temperature: float | None = None
    system: str | None = None
    tools: list[dict[str, Any]] | None = None
    """Tools in a neutral shape: ``{"name", "description", "parameters": <JSON schema>}``."""


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """One embeddings call, provider-neutral."""

    model: str
    inputs: list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


@dataclass(frozen=True, slots=True)
class ContentDelta:
    """A chunk that carries generated content: text, tool-call arguments or reasoning.

    Role-only and empty chunks are never turned into a ContentDelta, so TTFT cannot start on them.
    """

    text: str
    kind: ContentKind = "text"


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Token usage as the provider reported it. ``None`` means the provider did not say."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The protocol's terminal event arrived (``[DONE]``, ``message_stop``, ``done:true``, ``metadata``...)."""

    finish_reason: str | None = None
    embeddings: int = 0
    """For embeddings calls: how many vectors came back."""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    """Completed tool calls as ``{"name", "arguments"}`` (arguments a JSON string), for quality checks."""


StreamEvent = ContentDelta | UsageReport | StreamEnd
