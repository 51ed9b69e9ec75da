"""Ollama protocol: ``/api/chat`` and ``/api/generate`` (NDJSON or one JSON object), ``/api/embed``,
``/api/embeddings``, ``/api/tags``, ``/api/version`` and ``GET /``.

Byte shapes follow ``shared/reference/provider-protocols.md`` §5: one JSON line per token with ``done:false``,
then a ``done:true`` line carrying ``done_reason``, nanosecond durations, ``prompt_eval_count`` and
``eval_count``. Streaming is the default when the request has no ``stream`` field, as on the real server. A tool
call arrives whole in one line with ``arguments`` as an object, as Ollama sends it (it never streams arguments).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from llmload.emulator.core import (
    PRE_STREAM_FAULTS,
    Generation,
    Protocol,
    StreamEncoder,
    estimate_input_tokens,
)
from llmload.emulator.openai import _last_user_text, embedding_vector

VERSION = "0.6.3"

ERROR_BODIES: dict[str, tuple[int, str]] = {
    "server_error": (500, "llama runner process has terminated: exit status 2"),
    "rate_limited": (429, "too many requests, please try again"),
    "overloaded": (503, "server busy, please try again.  maximum pending requests exceeded"),
}

_NS = 1_000_000_000


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tool_calls(gen: Generation) -> list[dict[str, Any]]:
    return [{"function": {"name": gen.tool_name, "arguments": json.loads(gen.text)}}]


class NDJSONStreamEncoder(StreamEncoder):
    content_type = "application/x-ndjson"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.started = time.perf_counter()

    def _line(self, gen: Generation, content: str, done: bool, extra: dict[str, Any] | None = None,
              thinking: str = "") -> bytes:
        body: dict[str, Any] = {"model": gen.model, "created_at": _now()}
        if self.endpoint == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            if gen.tool_name and not done:
                message["tool_calls"] = _tool_calls(gen)
            body["message"] = message
        else:
            body["response"] = content
            if thinking:
                body["thinking"] = thinking
        body["done"] = done
        return (_dumps(body | (extra or {})) + "\n").encode()

    def token(self, gen: Generation, index: int, token: str) -> bytes:
        if gen.is_reasoning(index):
            return self._line(gen, "", done=False, thinking=token)
        return self._line(gen, "" if gen.tool_name else token, done=False)

    def tail(self, gen: Generation) -> list[bytes]:
        extra = final_metrics(gen, time.perf_counter() - self.started)
        if self.endpoint == "generate":
            extra["context"] = _context(gen)
        return [self._line(gen, "", done=True, extra=extra)]

    def malformed(self, gen: Generation) -> bytes:
        return b'{"model":"broken","message":{"role":"assistant","content":"\n'

    def error_event(self, gen: Generation) -> bytes:
        # Ollama's in-stream error lines are bare strings, with no type to tell an overload apart.
        return b'{"error":"an error was encountered while running the model: unexpected EOF"}\n'


def _context(gen: Generation) -> list[int]:
    """``/api/generate``'s token ids of the exchange, which a client may send back to continue it."""
    return list(range(1, gen.input_tokens + gen.output_tokens + 1))


def final_metrics(gen: Generation, elapsed_s: float) -> dict[str, Any]:
    """The ``done:true`` fields: reason, nanosecond durations and token counts."""
    total_ns = max(1, int(elapsed_s * _NS))
    prompt_ns = int(gen.ttft_s * _NS)
    return {
        "done_reason": "length" if gen.finish_reason == "length" else "stop",
        "total_duration": total_ns,
        "load_duration": 1_000_000,
        "prompt_eval_count": gen.input_tokens,
        "prompt_eval_duration": prompt_ns,
        "eval_count": gen.output_tokens,
        "eval_duration": max(1, total_ns - prompt_ns),
    }


class OllamaProtocol(Protocol):
    name = "ollama"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/chat", self.chat),
            web.post("/api/generate", self.generate),
            web.post("/api/embed", self.embed),
            web.post("/api/embeddings", self.embeddings),
            web.get("/api/tags", self.tags),
            web.get("/api/version", self.version),
            web.get("/", self.root),
        ]

    def error_response(self, gen: Generation) -> web.Response:
        status, message = ERROR_BODIES[gen.fault or "server_error"]
        headers = {}
        if status == 429:
            headers["retry-after"] = f"{self.emulator.config.retry_after_s:g}"
        gen.truth.status = status
        return web.json_response({"error": message}, status=status, headers=headers)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        if body is None:
            return _error(400, "invalid request body")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "messages must be a non-empty array")
        tools = body.get("tools") or []
        tool_name = str(tools[0]["function"]["name"]) if tools else None
        return await self._generate(request, body, "chat", _last_user_text(messages),
                                    estimate_input_tokens(messages), tool_name)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        if body is None:
            return _error(400, "invalid request body")
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return _error(400, "prompt must be a string")
        return await self._generate(request, body, "generate", prompt, estimate_input_tokens(prompt), None)

    async def _generate(
        self,
        request: web.Request,
        body: dict[str, Any],
        endpoint: str,
        prompt: str,
        input_tokens: int,
        tool_name: str | None,
    ) -> web.StreamResponse:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "model is required")
        stream = body.get("stream", True) is not False
        options = body.get("options") or {}
        num_predict = options.get("num_predict")
        gen = self.emulator.plan(
            protocol=self.name,
            endpoint=endpoint,
            model=model,
            prompt=prompt,
            input_tokens=input_tokens,
            max_tokens=num_predict if isinstance(num_predict, int) and num_predict > 0 else None,
            stream=stream,
            tool_name=tool_name,
        )
        if gen.tool_name:
            # Ollama parses the whole call before sending it: one content frame after the full generation time.
            gen.tokens = [gen.text]
            gen.ttft_s += sum(gen.gaps_s)
            gen.gaps_s = []
            gen.fault_at = 0
        if gen.fault in PRE_STREAM_FAULTS:
            return self.error_response(gen)
        started = time.perf_counter()
        if stream:
            return await self.emulator.stream(request, gen, NDJSONStreamEncoder(endpoint))
        await self.emulator.complete(gen)
        reply: dict[str, Any] = {"model": gen.model, "created_at": _now()}
        if endpoint == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": "" if gen.tool_name else gen.text}
            if gen.reasoning_count:
                message["thinking"] = gen.reasoning_text
            if gen.tool_name:
                message["tool_calls"] = _tool_calls(gen)
            reply["message"] = message
        else:
            reply["response"] = gen.text
            if gen.reasoning_count:
                reply["thinking"] = gen.reasoning_text
            reply["context"] = _context(gen)
        reply["done"] = True
        reply |= final_metrics(gen, time.perf_counter() - started)
        return web.json_response(reply)

    async def _embed_plan(self, body: dict[str, Any], inputs: list[str]) -> Generation:
        gen = self.emulator.plan(
            protocol=self.name,
            endpoint="embeddings",
            model=str(body.get("model", "")),
            prompt="",
            input_tokens=sum(estimate_input_tokens(i) for i in inputs),
            max_tokens=1,
            stream=False,
        )
        gen.gaps_s = []
        return gen

    async def embed(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        raw = body.get("input") if body is not None else None
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs:
            return _error(400, "input must be a string or a non-empty array")
        gen = await self._embed_plan(body or {}, [str(i) for i in inputs])
        if gen.fault in PRE_STREAM_FAULTS:
            return self.error_response(gen)
        started = time.perf_counter()
        await self.emulator.complete(gen)
        dim = int((body or {}).get("dimensions") or self.emulator.config.embedding_dim)
        total_ns = int((time.perf_counter() - started) * _NS)
        return web.json_response(
            {
                "model": gen.model,
                "embeddings": [embedding_vector(str(i), dim) for i in inputs],
                "total_duration": total_ns,
                "load_duration": 1_000_000,
                "prompt_eval_count": gen.input_tokens,
            }
        )

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """The legacy single-prompt endpoint: ``{"prompt": ...}`` -> ``{"embedding": [...]}``."""
        body = await _json(request)
        prompt = body.get("prompt") if body is not None else None
        if not isinstance(prompt, str):
            return _error(400, "prompt must be a string")
        gen = await self._embed_plan(body or {}, [prompt])
        if gen.fault in PRE_STREAM_FAULTS:
            return self.error_response(gen)
        await self.emulator.complete(gen)
        return web.json_response({"embedding": embedding_vector(prompt, self.emulator.config.embedding_dim)})

    async def tags(self, _: web.Request) -> web.Response:
        details = {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                   "parameter_size": "1B", "quantization_level": "Q4_0"}
        model = {"name": "emulated-model:latest", "model": "emulated-model:latest",
                 "modified_at": "2025-01-01T00:00:00Z", "size": 1234, "digest": "0" * 64, "details": details}
        return web.json_response({"models": [model]})

    async def version(self, _: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def root(self, _: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")


async def _json(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
