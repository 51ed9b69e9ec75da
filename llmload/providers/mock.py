"""An in-process provider: no server, no sockets, the same events and error kinds as a real adapter.

It plans every response with the emulator's own :meth:`llmload.emulator.core.Emulator.plan` (same tokens, timing
draws and fault choice for a given :class:`MockConfiguration`) and paces it with real gevent sleeps, so a Locust
run with ``--provider mock`` exercises the whole harness (users, metrics, recorder, reports) at no network cost.
``concurrency_limit`` is a gevent semaphore: requests beyond it queue inside the provider and their TTFT grows,
as against a saturated server. The configuration comes from ``settings.extra["mock_config"]`` (a
``MockConfiguration`` or its dict), defaulting to ``MockConfiguration()``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import gevent
from gevent.lock import BoundedSemaphore

from llmload.emulator.config import MockConfiguration
from llmload.emulator.core import Emulator, Generation, estimate_input_tokens
from llmload.emulator.openai import _last_user_text
from llmload.errors import ErrorKind, RequestError
from llmload.metrics import clock, mark_sent
from llmload.providers.base import Provider
from llmload.types import ChatRequest, ContentDelta, EmbeddingRequest, StreamEnd, StreamEvent, UsageReport

FAULT_ERRORS: dict[str, tuple[ErrorKind, int | None, str]] = {
    "server_error": (ErrorKind.SERVER_ERROR, 500, "mock server error"),
    "rate_limited": (ErrorKind.RATE_LIMITED, 429, "mock rate limit"),
    "overloaded": (ErrorKind.OVERLOADED, 503, "mock overload"),
    "disconnect": (ErrorKind.CONNECTION, None, "mock connection reset mid-stream"),
    "malformed": (ErrorKind.MALFORMED_STREAM, None, "mock malformed frame"),
    "midstream_error": (ErrorKind.SERVER_ERROR, None, "mock error event in stream"),
    "midstream_overloaded": (ErrorKind.OVERLOADED, None, "mock overload event in stream"),
    "truncate": (ErrorKind.TRUNCATED_STREAM, None, "mock stream ended without its terminal event"),
}
"""How each emulator fault surfaces from a real adapter: the kind, the HTTP status (if any) and a message."""

_PRE_STREAM = frozenset({"server_error", "rate_limited", "overloaded"})
_MID_STREAM = frozenset({"disconnect", "malformed", "midstream_error", "midstream_overloaded"})


def mock_config(settings: Any) -> MockConfiguration:
    raw = settings.extra.get("mock_config")
    if raw is None:
        return MockConfiguration()
    return raw if isinstance(raw, MockConfiguration) else MockConfiguration.from_dict(dict(raw))


class MockProvider(Provider):
    name = "mock"
    default_model = "mock-model"
    default_embedding_model = "mock-embedding"
    emulator_protocol = None

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        from llmload.quality import answer_for

        self.config = mock_config(settings)
        self.emulator = Emulator(self.config, answer_for=answer_for)
        # Nothing reads ground truth in-process (there is no /_llmload/truth); keeping it would only cost memory.
        self.emulator.truth = deque(maxlen=0)
        self.slots = BoundedSemaphore(self.config.concurrency_limit) if self.config.concurrency_limit else None

    @classmethod
    def has_credentials(cls) -> bool:
        return True

    def _fail(self, fault: str) -> RequestError:
        kind, status, message = FAULT_ERRORS[fault]
        retry_after = self.config.retry_after_s if fault == "rate_limited" else None
        return RequestError(kind, message, status_code=status, retry_after_s=retry_after)

    def chat(self, request: ChatRequest) -> Iterator[StreamEvent]:
        gen = self.emulator.plan(
            protocol=self.name,
            endpoint="chat",
            model=request.model,
            prompt=_last_user_text(request.messages),
            input_tokens=estimate_input_tokens(request.messages),
            max_tokens=request.max_tokens,
            stream=request.stream,
            tool_name=str(request.tools[0]["name"]) if request.tools else None,
        )
        # Planning is llmload's own CPU work (the first answer lookup loads the quality data): the simulated
        # request is "sent" after it, so TTFT is the configured latency plus any queueing, as against a server.
        mark_sent()
        if self.slots is not None:
            self.slots.acquire()
        try:
            yield from self._generate(gen, request.stream)
        finally:
            if self.slots is not None:
                self.slots.release()

    def _generate(self, gen: Generation, stream: bool) -> Iterator[StreamEvent]:
        if gen.fault in _PRE_STREAM:
            raise self._fail(gen.fault)
        if gen.fault == "slow_headers":
            gevent.sleep(self.config.stall_ms / 1000.0)
        kind = "tool_args" if gen.tool_name else "text"
        if not stream:
            gevent.sleep(gen.ttft_s + sum(gen.gaps_s))
            if gen.reasoning_count:
                yield ContentDelta(gen.reasoning_text, "reasoning")
            yield ContentDelta(gen.text, kind)
        else:
            due = clock() + gen.ttft_s
            for index, token in enumerate(gen.tokens):
                if index:
                    due += gen.gaps_s[index - 1]
                if index == gen.fault_at and gen.fault == "stall":
                    due += self.config.stall_ms / 1000.0
                if index == gen.fault_at and gen.fault in _MID_STREAM:
                    raise self._fail(gen.fault)
                gevent.sleep(max(0.0, due - clock()))
                yield ContentDelta(token, "reasoning" if gen.is_reasoning(index) else kind)
            if gen.fault == "truncate":
                raise self._fail(gen.fault)
        yield UsageReport(input_tokens=gen.input_tokens, output_tokens=gen.output_tokens,
                          reasoning_tokens=gen.reasoning_count)
        calls = [{"name": gen.tool_name, "arguments": gen.text}] if gen.tool_name else []
        yield StreamEnd("tool_calls" if gen.tool_name else gen.finish_reason, tool_calls=calls)

    def embed(self, request: EmbeddingRequest) -> Iterator[StreamEvent]:
        gen = self.emulator.plan(
            protocol=self.name,
            endpoint="embeddings",
            model=request.model,
            prompt="",
            input_tokens=sum(estimate_input_tokens(i) for i in request.inputs),
            max_tokens=1,
            stream=False,
        )
        mark_sent()
        if gen.fault in _PRE_STREAM:
            raise self._fail(gen.fault)
        gevent.sleep(gen.ttft_s)
        yield UsageReport(input_tokens=gen.input_tokens, output_tokens=0)
        yield StreamEnd("stop", embeddings=len(request.inputs))

