"""OpenAI protocol: ``/v1/chat/completions`` (SSE and JSON), ``/v1/embeddings``, ``/v1/models``.

Byte shapes follow ``shared/reference/provider-protocols.md`` §2: a role-only first chunk, one content chunk per
token, a ``finish_reason`` chunk, a ``choices: []`` usage chunk when ``stream_options.include_usage`` is set, then
``data: [DONE]``.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from aiohttp import web

from llmload.emulator.core import (
    PRE_STREAM_FAULTS,
    Generation,
    Protocol,
    StreamEncoder,
    estimate_input_tokens,
)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _usage(gen: Generation) -> dict[str, Any]:
    return {
        "prompt_tokens": gen.input_tokens,
        "completion_tokens": gen.output_tokens,
        "total_tokens": gen.input_tokens + gen.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": gen.reasoning_count,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class ChatStreamEncoder(StreamEncoder):
    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage

    def _chunk(self, gen: Generation, delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {
            "id": f"chatcmpl-{gen.request_id}",
            "object": "chat.completion.chunk",
            "created": gen.created,
            "model": gen.model,
            "system_fingerprint": "fp_llmload",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            body["usage"] = None
        return f"data: {_dumps(body)}\n\n".encode()

    def head(self, gen: Generation) -> list[bytes]:
        if gen.tool_name:
            call = {
                "index": 0,
                "id": f"call_{gen.request_id}",
                "type": "function",
                "function": {"name": gen.tool_name, "arguments": ""},
            }
            return [self._chunk(gen, {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None})]
        return [self._chunk(gen, {"role": "assistant", "content": "", "refusal": None})]

    def token(self, gen: Generation, index: int, token: str) -> bytes:
        if gen.tool_name:
            return self._chunk(gen, {"tool_calls": [{"index": 0, "function": {"arguments": token}}]})
        if gen.is_reasoning(index):
            # As vLLM, DeepSeek and other OpenAI-compatible reasoning servers stream it.
            return self._chunk(gen, {"reasoning_content": token})
        return self._chunk(gen, {"content": token})

    def tail(self, gen: Generation) -> list[bytes]:
        frames = [self._chunk(gen, {}, "tool_calls" if gen.tool_name else gen.finish_reason)]
        if self.include_usage:
            usage_chunk = {
                "id": f"chatcmpl-{gen.request_id}",
                "object": "chat.completion.chunk",
                "created": gen.created,
                "model": gen.model,
                "system_fingerprint": "fp_llmload",
                "choices": [],
                "usage": _usage(gen),
            }
            frames.append(f"data: {_dumps(usage_chunk)}\n\n".encode())
        frames.append(b"data: [DONE]\n\n")
        return frames

    def terminal_count(self) -> int:
        # finish chunk, usage chunk and [DONE]: a truncated stream loses its whole ending.
        return 3 if self.include_usage else 2

    def malformed(self, gen: Generation) -> bytes:
        return b'data: {"id":"chatcmpl-broken","choices":[{"index":0,"delta":{"content":"\n\n'

    def error_event(self, gen: Generation) -> bytes:
        # OpenAI-compatible proxies (LiteLLM in front of Anthropic, say) pass an upstream overload on as its type.
        err_type, message = (("overloaded_error", "Overloaded") if gen.fault == "midstream_overloaded"
                             else ("server_error", "The server had an error while processing your request."))
        err = {"error": {"message": message, "type": err_type, "param": None, "code": None}}
        return f"data: {_dumps(err)}\n\n".encode()


ERROR_BODIES: dict[str, tuple[int, str, str | None, str]] = {
    "server_error": (500, "server_error", None, "The server had an error while processing your request."),
    "rate_limited": (429, "requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    "overloaded": (503, "server_error", None, "The engine is currently overloaded, please try again later."),
}


class OpenAIProtocol(Protocol):
    name = "openai"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat),
            web.post("/v1/embeddings", self.embeddings),
            web.get("/v1/models", self.models),
        ]

    def error_response(self, gen: Generation) -> web.Response:
        status, err_type, code, message = ERROR_BODIES[gen.fault or "server_error"]
        headers = {"x-request-id": gen.request_id}
        if status == 429:
            retry = self.emulator.config.retry_after_s
            headers |= {
                "retry-after": f"{retry:g}",
                "retry-after-ms": f"{retry * 1000:.0f}",
                "x-ratelimit-limit-requests": "10000",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{retry:g}s",
            }
        gen.truth.status = status
        body = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
        return web.json_response(body, status=status, headers=headers)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not messages:
            return _bad_request("'messages' must be a non-empty array")
        tools = body.get("tools") or []
        tool_name = tools[0]["function"]["name"] if tools and body.get("tool_choice") != "none" else None
        stream = bool(body.get("stream"))
        gen = self.emulator.plan(
            protocol=self.name,
            endpoint="chat",
            model=str(body.get("model", "")),
            prompt=_last_user_text(messages),
            input_tokens=estimate_input_tokens(messages),
            max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
            stream=stream,
            tool_name=tool_name,
        )
        if gen.fault in PRE_STREAM_FAULTS:
            return self.error_response(gen)
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self.emulator.stream(request, gen, ChatStreamEncoder(include_usage))
        await self.emulator.complete(gen)
        if gen.tool_name:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "annotations": [],
                "tool_calls": [
                    {
                        "id": f"call_{gen.request_id}",
                        "type": "function",
                        "function": {"name": gen.tool_name, "arguments": gen.text},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": gen.text, "refusal": None, "annotations": []}
            if gen.reasoning_count:
                message["reasoning_content"] = gen.reasoning_text
            finish = gen.finish_reason
        return web.json_response(
            {
                "id": f"chatcmpl-{gen.request_id}",
                "object": "chat.completion",
                "created": gen.created,
                "model": gen.model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": _usage(gen),
                "service_tier": "default",
                "system_fingerprint": "fp_llmload",
            },
            headers={"x-request-id": gen.request_id},
        )

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return _bad_request("'input' must be a string or a non-empty array")
        gen = self.emulator.plan(
            protocol=self.name,
            endpoint="embeddings",
            model=str(body.get("model", "")),
            prompt="",
            input_tokens=sum(estimate_input_tokens(str(i)) for i in inputs),
            max_tokens=1,
            stream=False,
        )
        if gen.fault in PRE_STREAM_FAULTS:
            return self.error_response(gen)
        gen.gaps_s = []
        await self.emulator.complete(gen)
        dim = int(body.get("dimensions") or self.emulator.config.embedding_dim)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = embedding_vector(str(text), dim)
            encoded: Any = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": gen.model,
                "usage": {"prompt_tokens": gen.input_tokens, "total_tokens": gen.input_tokens},
            },
            headers={"x-request-id": gen.request_id},
        )

    async def models(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "emulated-model", "object": "model", "created": 0, "owned_by": "llmload"}],
            }
        )


def embedding_vector(text: str, dim: int) -> list[float]:
    """A deterministic unit vector for ``text``: equal texts embed equally, different texts differ."""
    import hashlib
    import math

    values: list[float] = []
    counter = 0
    while len(values) < dim:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = values[:dim]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _bad_request(message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return web.json_response(body, status=400)
