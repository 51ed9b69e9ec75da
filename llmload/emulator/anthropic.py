"""Anthropic protocol: ``POST /v1/messages`` (SSE and JSON).

Byte shapes follow ``shared/reference/provider-protocols.md`` §4: every SSE event carries an ``event:`` line (the
SDK drops events without one), the stream opens with ``message_start`` (input usage), ``content_block_start`` and a
``ping``, sends one ``content_block_delta`` per token (``text_delta``, or ``input_json_delta`` for a tool call),
and closes with ``content_block_stop``, ``message_delta`` (cumulative ``output_tokens``) and ``message_stop``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from llmload.emulator.core import (
    PRE_STREAM_FAULTS,
    Generation,
    Protocol,
    StreamEncoder,
    estimate_input_tokens,
)
from llmload.emulator.openai import _last_user_text

ERROR_BODIES: dict[str, tuple[int, str, str]] = {
    "server_error": (500, "api_error", "Internal server error"),
    "rate_limited": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
}

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {_dumps(data)}\n\n".encode()


def _stop_reason(gen: Generation) -> str:
    return "tool_use" if gen.tool_name else _STOP_REASONS.get(gen.finish_reason, "end_turn")


def _usage(gen: Generation, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": gen.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _answer_block(gen: Generation) -> dict[str, Any]:
    if gen.tool_name:
        return {"type": "tool_use", "id": f"toolu_{gen.request_id}", "name": gen.tool_name, "input": {}}
    return {"type": "text", "text": ""}


def thinking_blocks(gen: Generation) -> list[dict[str, Any]]:
    """A non-streamed message's thinking block, ahead of its answer block (none without reasoning)."""
    if not gen.reasoning_count:
        return []
    return [{"type": "thinking", "thinking": gen.reasoning_text, "signature": gen.reasoning_signature}]


def message_head_events(gen: Generation, id_prefix: str = "msg_") -> list[dict[str, Any]]:
    """``message_start`` and the first ``content_block_start`` (a thinking block when the answer has reasoning):
    the Messages stream's opening event objects.

    Shared with Bedrock's InvokeModelWithResponseStream, which carries these same objects inside its frames.
    """
    message = {
        "id": f"{id_prefix}{gen.request_id}",
        "type": "message",
        "role": "assistant",
        "model": gen.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        # The real API reports a small placeholder here; message_delta carries the cumulative count.
        "usage": _usage(gen, 1),
    }
    first = {"type": "thinking", "thinking": "", "signature": ""} if gen.reasoning_count else _answer_block(gen)
    return [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": first},
    ]


def message_delta_events(gen: Generation, index: int, token: str) -> list[dict[str, Any]]:
    """The events that carry token ``index``: a ``content_block_delta`` with a thinking, text or tool-argument
    delta. The first answer token after reasoning first closes the thinking block (its ``signature_delta`` and
    ``content_block_stop``) and opens the answer's block, as the API does."""
    if gen.is_reasoning(index):
        return [{"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": token}}]
    events: list[dict[str, Any]] = []
    answer_index = gen.answer_block
    if answer_index and index == gen.reasoning_count:
        events += [
            {"type": "content_block_delta", "index": 0,
             "delta": {"type": "signature_delta", "signature": gen.reasoning_signature}},
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": answer_index, "content_block": _answer_block(gen)},
        ]
    if gen.tool_name:
        delta = {"type": "input_json_delta", "partial_json": token}
    else:
        delta = {"type": "text_delta", "text": token}
    events.append({"type": "content_block_delta", "index": answer_index, "delta": delta})
    return events


def message_tail_events(gen: Generation) -> list[dict[str, Any]]:
    """``content_block_stop``, ``message_delta`` (cumulative usage) and the terminal ``message_stop``."""
    return [
        {"type": "content_block_stop", "index": gen.answer_block},
        {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(gen), "stop_sequence": None},
            "usage": {"output_tokens": gen.output_tokens},
        },
        {"type": "message_stop"},
    ]


class MessagesStreamEncoder(StreamEncoder):
    def head(self, gen: Generation) -> list[bytes]:
        frames = [_event(e["type"], e) for e in message_head_events(gen)]
        return [*frames, b'event: ping\ndata: {"type": "ping"}\n\n']

    def token(self, gen: Generation, index: int, token: str) -> bytes:
        return b"".join(_event(e["type"], e) for e in message_delta_events(gen, index, token))

    def tail(self, gen: Generation) -> list[bytes]:
        return [_event(e["type"], e) for e in message_tail_events(gen)]

    def malformed(self, gen: Generation) -> bytes:
        return b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"te\n\n'

    def error_event(self, gen: Generation) -> bytes:
        # The API sheds load mid-stream too: HTTP 200, then an `error` event of type overloaded_error.
        _, err_type, message = ERROR_BODIES["overloaded" if gen.fault == "midstream_overloaded" else "server_error"]
        return _event("error", error_body(err_type, message, f"req_{gen.request_id}"))


def error_body(err_type: str, message: str, request_id: str = "req_llmload") -> dict[str, Any]:
    return {"type": "error", "error": {"type": err_type, "message": message}, "request_id": request_id}


class AnthropicProtocol(Protocol):
    name = "anthropic"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self.messages)]

    def error_response(self, gen: Generation) -> web.Response:
        status, err_type, message = ERROR_BODIES[gen.fault or "server_error"]
        request_id = f"req_{gen.request_id}"
        headers = {"request-id": request_id}
        if status == 429:
            retry = self.emulator.config.retry_after_s
            headers |= {
                "retry-after": f"{retry:g}",
                "anthropic-ratelimit-requests-limit": "4000",
                "anthropic-ratelimit-requests-remaining": "0",
            }
        gen.truth.status = status
        return web.json_response(error_body(err_type, message, request_id), status=status, headers=headers)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        if "anthropic-version" not in request.headers:
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        auth = request.headers.get("authorization", "")
        if not request.headers.get("x-api-key") and not auth.lower().startswith("bearer "):
            return _error(401, "authentication_error", "x-api-key or Authorization: Bearer header is required")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "invalid_request_error", "request body is not valid JSON")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "invalid_request_error", "messages: must be a non-empty array")
        if not isinstance(body.get("max_tokens"), int):
            return _error(400, "invalid_request_error", "max_tokens: field required")
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {}
        tool_name = str(tools[0]["name"]) if tools and choice.get("type") != "none" else None
        stream = bool(body.get("stream"))
        system = body.get("system")
        gen = self.emulator.plan(
            protocol=self.name,
            endpoint="chat",
            model=str(body.get("model", "")),
            prompt=_last_user_text(messages),
            input_tokens=estimate_input_tokens(messages) + (estimate_input_tokens(system) if system else 0),
            max_tokens=body["max_tokens"],
            stream=stream,
            tool_name=tool_name,
        )
        if gen.fault in PRE_STREAM_FAULTS:
            return self.error_response(gen)
        if stream:
            return await self.emulator.stream(request, gen, MessagesStreamEncoder())
        await self.emulator.complete(gen)
        if gen.tool_name:
            content: dict[str, Any] = {"type": "tool_use", "id": f"toolu_{gen.request_id}", "name": gen.tool_name,
                                       "input": json.loads(gen.text)}
        else:
            content = {"type": "text", "text": gen.text, "citations": None}
        usage = _usage(gen, gen.output_tokens) | {"service_tier": "standard"}
        return web.json_response(
            {
                "id": f"msg_{gen.request_id}",
                "type": "message",
                "role": "assistant",
                "model": gen.model,
                "content": [*thinking_blocks(gen), content],
                "stop_reason": _stop_reason(gen),
                "stop_sequence": None,
                "usage": usage,
            },
            headers={"request-id": f"req_{gen.request_id}"},
        )


def _error(status: int, err_type: str, message: str) -> web.Response:
    return web.json_response(error_body(err_type, message), status=status)
