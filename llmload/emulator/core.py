"""The emulator's shared machinery: per-request plans, pacing, faults, ground truth, and the HTTP server.

Each protocol module (``openai``, ``anthropic``, ``bedrock``, ``ollama``) has the same shape: a ``Protocol``
subclass that parses requests, and ``StreamEncoder`` subclasses that turn a :class:`Generation` into that
protocol's bytes. Timing and faults live here, once, so every protocol paces and fails identically.

Timing is deadline-based: the first content frame is due ``ttft`` after the request arrived (after any queueing
behind ``concurrency_limit``), and token *i* is due at the first content time plus the sum of the first *i*
gaps. Sleeping to absolute deadlines keeps scheduling error from accumulating over a long stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import json
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from llmload.emulator.config import MockConfiguration

WORDS = (
    "the quick brown fox jumps over a lazy dog while load tests measure every token that streams from "
    "emulated models with known timing so harness accuracy can be checked against ground truth"
).split()

TRUTH_CAPACITY = 200_000


@dataclass(slots=True)
class Truth:
    """What the server actually did for one request: the reference a client measurement is checked against."""

    request_id: str
    protocol: str
    endpoint: str
    model: str
    received_at: float
    stream: bool
    planned_ttft_ms: float
    fault: str | None
    input_tokens: int
    tokens_sent: int = 0
    started_at: float | None = None
    """When the request left the concurrency queue and its TTFT clock started."""
    first_content_at: float | None = None
    last_content_at: float | None = None
    done_at: float | None = None
    status: int = 200
    client_port: int | None = None
    """The client's TCP source port: requests with the same port came over one kept-alive connection."""
    path: str | None = None
    """The URL path the request came in on (which of a protocol's APIs the client called)."""


@dataclass(slots=True)
class Generation:
    """The plan for one response, fixed when the request arrives."""

    request_id: str
    model: str
    tokens: list[str]
    input_tokens: int
    ttft_s: float
    gaps_s: list[float]
    fault: str | None
    fault_at: int
    truth: Truth
    tool_name: str | None = None
    finish_reason: str = "stop"
    """``length`` when ``max_tokens`` cut the answer short, else ``stop``."""
    reasoning_count: int = 0
    """How many of ``tokens``, from the first, are reasoning (thinking) rather than answer."""
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def text(self) -> str:
        """The answer: every token after the reasoning."""
        return "".join(self.tokens[self.reasoning_count :])

    @property
    def reasoning_text(self) -> str:
        return "".join(self.tokens[: self.reasoning_count])

    def is_reasoning(self, index: int) -> bool:
        return index < self.reasoning_count

    @property
    def answer_block(self) -> int:
        """The answer's content block index in block-structured protocols (Anthropic, Bedrock): 1 behind a
        reasoning block, else 0."""
        return 1 if self.reasoning_count else 0

    @property
    def reasoning_signature(self) -> str:
        """The signature that closes a reasoning block (opaque to clients; the real APIs sign the thinking)."""
        return f"sig_{self.request_id}"

    @property
    def output_tokens(self) -> int:
        return len(self.tokens)


class StreamEncoder:
    """Turns a Generation into one protocol's streamed frames. Subclasses override what their protocol needs."""

    content_type = "text/event-stream; charset=utf-8"

    def head(self, gen: Generation) -> list[bytes]:
        """Frames sent as soon as the response starts (before any content)."""
        return []

    def token(self, gen: Generation, index: int, token: str) -> bytes:
        raise NotImplementedError

    def tail(self, gen: Generation) -> list[bytes]:
        """Frames after the last token, ending with the protocol's terminal event."""
        raise NotImplementedError

    def terminal_count(self) -> int:
        """How many of ``tail``'s frames make up the terminal event (dropped by the ``truncate`` fault)."""
        return 1

    def malformed(self, gen: Generation) -> bytes:
        raise NotImplementedError

    def error_event(self, gen: Generation) -> bytes:
        """The protocol's in-stream error: a server error, or an overload when ``gen.fault`` is
        ``midstream_overloaded`` (a provider that accepted the request, then shed it mid-generation)."""
        raise NotImplementedError


def estimate_input_tokens(payload: Any) -> int:
    """The emulator's input token count: ~4 characters of prompt text per token, plus 3 per message."""
    if isinstance(payload, str):
        return max(1, round(len(payload) / 4))
    if isinstance(payload, list):
        return sum(estimate_input_tokens(p) for p in payload) + 3 * len(payload)
    if isinstance(payload, dict):
        return sum(estimate_input_tokens(v) for k, v in payload.items() if k in ("content", "text", "prompt"))
    return 0


AnswerHook = Callable[[str, random.Random, float], str | None]


class Emulator:
    """State shared by all protocols of one server: config, RNG, queue, ground truth."""

    def __init__(self, config: MockConfiguration, answer_for: AnswerHook | None = None) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.truth: deque[Truth] = deque(maxlen=TRUTH_CAPACITY)
        self.started = time.time()
        self._ids = itertools.count(1)
        self._queue = asyncio.Semaphore(config.concurrency_limit) if config.concurrency_limit else None
        self.answer_for = answer_for
        self.in_flight = 0

    def _jittered(self, value_ms: float) -> float:
        if not self.config.jitter:
            return value_ms / 1000.0
        return max(0.0, self.rng.gauss(value_ms, value_ms * self.config.jitter)) / 1000.0

    def _pick_fault(self) -> str | None:
        cfg = self.config
        if cfg.outage is not None and cfg.outage[0] <= time.time() - self.started < cfg.outage[1]:
            return "overloaded"
        if cfg.error_rate and self.rng.random() < cfg.error_rate:
            names = list(cfg.fault_weights)
            return self.rng.choices(names, weights=[cfg.fault_weights[n] for n in names])[0]
        return None

    def plan(
        self,
        *,
        protocol: str,
        endpoint: str,
        model: str,
        prompt: str,
        input_tokens: int,
        max_tokens: int | None,
        stream: bool,
        tool_name: str | None = None,
    ) -> Generation:
        cfg = self.config
        request_id = f"{next(self._ids):x}{uuid.uuid4().hex[:12]}"
        count = min(cfg.output_tokens, max_tokens) if max_tokens else cfg.output_tokens
        if tool_name:
            tokens = _tool_argument_fragments(self.rng)
        else:
            answer = self.answer_for(prompt, self.rng, cfg.quality) if self.answer_for else None
            tokens = _answer_tokens(answer, count) if answer is not None else _filler_tokens(self.rng, count)
        reasoning = [] if tool_name or endpoint == "embeddings" else _filler_tokens(self.rng, cfg.reasoning_tokens)
        fault = self._pick_fault()
        truth = Truth(
            request_id=request_id,
            protocol=protocol,
            endpoint=endpoint,
            model=model,
            received_at=time.time(),
            stream=stream,
            planned_ttft_ms=cfg.ttft_ms,
            fault=fault,
            input_tokens=input_tokens,
            client_port=_client_port.get(),
            path=_request_path.get(),
        )
        self.truth.append(truth)
        tokens = reasoning + tokens
        return Generation(
            request_id=request_id,
            model=model,
            tokens=tokens,
            reasoning_count=len(reasoning),
            input_tokens=input_tokens,
            ttft_s=self._jittered(cfg.ttft_ms),
            gaps_s=[self._jittered(cfg.itl_ms) for _ in range(len(tokens) - 1)],
            fault=fault,
            fault_at=max(1, len(tokens) // 2),
            truth=truth,
            tool_name=tool_name,
            finish_reason="length" if max_tokens and max_tokens < cfg.output_tokens and not tool_name else "stop",
        )

    @contextlib.asynccontextmanager
    async def slot(self, gen: Generation) -> Any:
        """Hold a concurrency slot (queueing if the server is full) and start the TTFT clock when granted."""
        if self._queue is not None:
            await self._queue.acquire()
        self.in_flight += 1
        gen.truth.started_at = time.time()
        try:
            yield
        finally:
            self.in_flight -= 1
            if self._queue is not None:
                self._queue.release()

    async def stream(self, request: web.Request, gen: Generation, encoder: StreamEncoder) -> web.StreamResponse:
        """Serve ``gen`` as a chunked stream, one frame per chunk, applying its mid-stream fault if any."""
        try:
            return await self._stream(request, gen, encoder)
        except ConnectionResetError:
            # The client went away mid-stream (a load test stopping, a client timeout): not a server fault.
            gen.truth.status = 499
            raise asyncio.CancelledError from None

    async def _stream(self, request: web.Request, gen: Generation, encoder: StreamEncoder) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": encoder.content_type, **_request_id_headers(gen)})
        response.enable_chunked_encoding()
        async with self.slot(gen):
            origin = time.perf_counter()
            if gen.fault == "slow_headers":
                await asyncio.sleep(self.config.stall_ms / 1000.0)
                origin = time.perf_counter()
            await response.prepare(request)
            for frame in encoder.head(gen):
                await response.write(frame)
            due = origin + gen.ttft_s
            for index, token in enumerate(gen.tokens):
                if index:
                    due += gen.gaps_s[index - 1]
                if index == gen.fault_at and gen.fault in _MIDSTREAM_FAULTS:
                    if await self._midstream_fault(request, response, gen, encoder):
                        return response
                await sleep_until(due)
                frame = encoder.token(gen, index, token)
                # Stamp before the write: a fast client can read the frame before write() returns to us.
                now = time.time()
                if gen.truth.first_content_at is None:
                    gen.truth.first_content_at = now
                gen.truth.last_content_at = now
                await response.write(frame)
                gen.truth.tokens_sent = index + 1
            tail = encoder.tail(gen)
            if gen.fault == "truncate":
                tail = tail[: len(tail) - encoder.terminal_count()]
            for frame in tail:
                await response.write(frame)
            await response.write_eof()
            gen.truth.done_at = time.time()
        return response

    async def _midstream_fault(
        self, request: web.Request, response: web.StreamResponse, gen: Generation, encoder: StreamEncoder
    ) -> bool:
        """Apply a mid-stream fault. Returns True when the stream is over."""
        if gen.fault == "stall":
            await asyncio.sleep(self.config.stall_ms / 1000.0)
            return False
        gen.truth.status = 0
        if gen.fault == "disconnect":
            if request.transport is not None:
                request.transport.abort()
            gen.truth.done_at = time.time()
            raise asyncio.CancelledError
        frame = encoder.malformed(gen) if gen.fault == "malformed" else encoder.error_event(gen)
        await response.write(frame)
        await response.write_eof()
        gen.truth.done_at = time.time()
        return True

    async def complete(self, gen: Generation) -> None:
        """Wait as long as a whole non-streamed generation takes (TTFT plus every gap)."""
        async with self.slot(gen):
            if gen.fault == "slow_headers":
                await asyncio.sleep(self.config.stall_ms / 1000.0)
            await sleep_until(time.perf_counter() + gen.ttft_s + sum(gen.gaps_s))
            now = time.time()
            gen.truth.first_content_at = gen.truth.last_content_at = gen.truth.done_at = now
            gen.truth.tokens_sent = gen.output_tokens


async def sleep_until(due: float) -> None:
    """Sleep until ``time.perf_counter()`` reaches ``due``, never less: uvloop's timers have millisecond granularity
    and fire up to ~0.4 ms early (measured here), which would send a token before its time and let a client
    measure a TTFT below the configured one."""
    while (delay := due - time.perf_counter()) > 0:
        await asyncio.sleep(delay)


_MIDSTREAM_FAULTS = frozenset({"disconnect", "stall", "malformed", "midstream_error", "midstream_overloaded"})
PRE_STREAM_FAULTS = frozenset({"server_error", "rate_limited", "overloaded"})


def _request_id_headers(gen: Generation) -> dict[str, str]:
    return {"x-request-id": gen.request_id, "request-id": gen.request_id, "x-amzn-requestid": gen.request_id}


def _filler_tokens(rng: random.Random, count: int) -> list[str]:
    return [(" " if i else "") + rng.choice(WORDS) for i in range(count)]


def _answer_tokens(answer: str, count: int) -> list[str]:
    words = answer.split(" ")
    tokens = [(" " if i else "") + w for i, w in enumerate(words)]
    return tokens[: max(count, len(tokens))]


def _tool_argument_fragments(rng: random.Random) -> list[str]:
    city = rng.choice(["Paris", "Tokyo", "Lima", "Oslo", "Cairo"])
    args = json.dumps({"city": city, "unit": "celsius"})
    return [args[i : i + 6] for i in range(0, len(args), 6)]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Protocol:
    """One provider's HTTP API. Subclasses set ``name`` and return their routes."""

    name = ""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError


_client_port: contextvars.ContextVar[int | None] = contextvars.ContextVar("client_port", default=None)
_request_path: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_path", default=None)


@web.middleware
async def _note_client(request: web.Request, handler: Handler) -> web.StreamResponse:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    _client_port.set(peer[1] if isinstance(peer, tuple) and len(peer) >= 2 else None)
    _request_path.set(request.path)
    try:
        return await handler(request)
    except ConnectionResetError:
        # The client hung up while its request body was still being read (a load generator stopping): nobody is
        # left to answer. Cancelling ends the request as aiohttp ends a disconnect, without an error traceback.
        raise asyncio.CancelledError from None


def build_app(emulator: Emulator, protocols: list[type[Protocol]]) -> web.Application:
    """An aiohttp application serving the given protocols plus the emulator's own ``/_llmload`` endpoints."""
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_note_client])
    for protocol_cls in protocols:
        app.add_routes(protocol_cls(emulator).routes())

    async def truth(request: web.Request) -> web.Response:
        since = float(request.query.get("since", "0"))
        rows = [asdict(t) for t in emulator.truth if t.received_at >= since]
        return web.json_response({"truth": rows})

    async def config(_: web.Request) -> web.Response:
        return web.json_response({"config": emulator.config.to_dict(), "in_flight": emulator.in_flight})

    async def reset(_: web.Request) -> web.Response:
        emulator.truth.clear()
        return web.json_response({"ok": True})

    app.add_routes(
        [
            web.get("/_llmload/truth", truth),
            web.get("/_llmload/config", config),
            web.post("/_llmload/reset", reset),
            web.get("/health", _health),
        ]
    )
    return app


async def _health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
