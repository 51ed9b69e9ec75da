"""Metric definitions. This module is the one place where llmload measures a request.

Every adapter yields normalized events (``llmload.types``); :func:`measure` timestamps them as they arrive and
turns one request into one :class:`RequestRecord`. The definitions below are the contract:

Request start
    The moment the SDK hands the fully built HTTP request to its transport, marked by the adapter's transport hook
    calling :func:`mark_sent` (httpx ``request`` event hook, botocore ``before-send``). SDK-side request building
    is client preparation, not latency, and under load it would queue behind other users' CPU work. Connection
    setup (TCP, TLS) comes after the mark and counts. Adapters without a hook fall back to the first ``next()``
    on their event iterator, which is when the SDK call is made.
TTFT (``ttft_ms``)
    From the request start to the arrival of the first chunk carrying generated content: text, tool-call
    arguments or reasoning. Role-only or empty chunks never count. Only defined for streamed calls.
ITL (``itl_ms``)
    The gaps between consecutive content-bearing chunks of one stream, in arrival order.
TPOT (``tpot_ms``)
    ``(e2e − TTFT) / (output tokens − 1)``; undefined with fewer than two output tokens.
e2e latency (``e2e_ms``)
    From the request start to the stream's terminal event (``StreamEnd``). A stream that ends without its
    terminal event is an error of kind ``truncated_stream``, never a success.
Output tokens
    The provider's reported usage when present; otherwise an estimate from the received text, and
    ``output_tokens_estimated`` is set.
Queue-inclusive latency (open-loop)
    When a request had a scheduled send time, ``schedule_lag_ms`` is how late it was sent and
    ``e2e_from_schedule_ms`` is measured from the schedule, so a generator that falls behind cannot hide the
    target's queueing (no coordinated omission).

Throughput (requests/s, output tokens/s over the measured window) is computed from these records in
``llmload.results``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from llmload.errors import ErrorKind, RequestError
from llmload.types import ContentDelta, StreamEnd, StreamEvent, UsageReport

clock = time.perf_counter
"""Monotonic high-resolution clock used for every duration."""


_current = threading.local()
"""Per-greenlet (gevent patches ``threading.local``) slot for the request start of the request being measured."""


def mark_sent(*_: Any, **__: Any) -> None:
    """Transport hook: the SDK is handing its built request to the transport now. Safe to call anywhere."""
    if getattr(_current, "sent_at", 0.0) is None:
        _current.sent_at = clock()


def estimate_tokens(text: str) -> int:
    """Tokenizer-free estimate used only when the provider reports no usage: ~4 characters per token."""
    if not text:
        return 0
    return max(1, round(len(text) / 4))


@dataclass(slots=True)
class RequestRecord:
    """Everything measured about one request. Durations in milliseconds, ``started_at`` in Unix seconds."""

    provider: str
    model: str
    scenario: str
    endpoint: str
    started_at: float
    ok: bool
    e2e_ms: float
    ttft_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    output_tokens_estimated: bool = False
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    error_kind: str | None = None
    error_message: str | None = None
    status_code: int | None = None
    retry_after_s: float | None = None
    schedule_lag_ms: float | None = None
    e2e_from_schedule_ms: float | None = None
    finish_reason: str | None = None
    quality_ok: bool | None = None
    level: int | None = None
    text: str = ""
    """Generated answer text (reasoning excluded), kept only while quality checks need it; cleared before records
    are stored or sent."""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    """Completed tool calls, kept only for quality checks, like ``text``."""
    response_sample: str | None = None
    """The answer text, kept (and sent, and stored) only for scenarios with a ``consistency`` check."""

    @property
    def tpot_ms(self) -> float | None:
        if self.ttft_ms is None or self.output_tokens < 2:
            return None
        return (self.e2e_ms - self.ttft_ms) / (self.output_tokens - 1)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["text"], data["tool_calls"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**{k: v for k, v in data.items() if k in _RECORD_FIELDS})


_RECORD_FIELDS = frozenset(RequestRecord.__dataclass_fields__)


def measure(
    events: Iterator[StreamEvent],
    *,
    provider: str,
    model: str,
    scenario: str,
    endpoint: str,
    streamed: bool,
    scheduled_at: float | None = None,
    count_tokens: Callable[[str], int] = estimate_tokens,
) -> RequestRecord:
    """Drive one adapter call to completion and measure it. Never raises for request failures.

    ``events`` must be lazy: the SDK call happens on the first ``next()``, which is where the clock starts.
    ``scheduled_at`` is the ``clock()`` value the request was due at, for open-loop arrivals.
    """
    started_at = time.time()
    _current.sent_at = None
    start = clock()
    first_content: float | None = None
    last_content: float | None = None
    gaps: list[float] = []
    pieces: list[str] = []
    reasoning: list[str] = []
    usage: UsageReport | None = None
    end: StreamEnd | None = None
    error: RequestError | None = None
    try:
        for event in events:
            now = clock()
            if isinstance(event, ContentDelta):
                if not event.text:
                    continue
                if first_content is None:
                    first_content = now
                else:
                    gaps.append((now - last_content) * 1000.0)  # type: ignore[operator]
                last_content = now
                # Reasoning starts the TTFT clock and counts as output, but it is not the answer quality judges.
                (reasoning if event.kind == "reasoning" else pieces).append(event.text)
            elif isinstance(event, UsageReport):
                usage = event if usage is None else _merge_usage(usage, event)
            elif isinstance(event, StreamEnd):
                end = event
                break
        if end is None:
            error = RequestError(ErrorKind.TRUNCATED_STREAM, "stream ended without its terminal event")
    except RequestError as exc:
        error = exc
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    finished = clock()
    sent_at = _current.sent_at
    _current.sent_at = 0.0
    if sent_at is not None and sent_at <= (first_content if first_content is not None else finished):
        started_at += sent_at - start
        start = sent_at

    text = "".join(pieces)
    record = RequestRecord(
        provider=provider,
        model=model,
        scenario=scenario,
        endpoint=endpoint,
        started_at=started_at,
        ok=error is None,
        e2e_ms=(finished - start) * 1000.0,
        text=text,
    )
    if streamed and first_content is not None:
        record.ttft_ms = (first_content - start) * 1000.0
        record.itl_ms = gaps
    if usage is not None and usage.output_tokens is not None:
        record.output_tokens = usage.output_tokens
    elif text or reasoning:
        record.output_tokens = count_tokens("".join(reasoning) + text)
        record.output_tokens_estimated = True
    if usage is not None:
        record.input_tokens = usage.input_tokens or 0
        record.cached_input_tokens = usage.cached_input_tokens
        record.reasoning_tokens = usage.reasoning_tokens
    if end is not None:
        record.finish_reason = end.finish_reason
        record.tool_calls = end.tool_calls
    if error is not None:
        record.error_kind = error.kind.value
        record.error_message = error.message[:300]
        record.status_code = error.status_code
        record.retry_after_s = error.retry_after_s
    if scheduled_at is not None:
        record.schedule_lag_ms = max(0.0, (start - scheduled_at) * 1000.0)
        record.e2e_from_schedule_ms = (finished - scheduled_at) * 1000.0
    return record


def _merge_usage(old: UsageReport, new: UsageReport) -> UsageReport:
    """Later usage reports win field by field (Anthropic's message_delta overwrites message_start's snapshot)."""
    return UsageReport(
        input_tokens=new.input_tokens if new.input_tokens is not None else old.input_tokens,
        output_tokens=new.output_tokens if new.output_tokens is not None else old.output_tokens,
        cached_input_tokens=new.cached_input_tokens or old.cached_input_tokens,
        reasoning_tokens=new.reasoning_tokens or old.reasoning_tokens,
    )
