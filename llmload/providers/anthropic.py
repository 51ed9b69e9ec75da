"""Anthropic Messages API adapter on the official anthropic SDK.

Terminal event: ``message_stop``. The SDK ends its iterator quietly when a stream stops without one, so the
adapter classes that as ``truncated_stream``. Usage comes from ``message_start`` (input and cache tokens) and
``message_delta`` (cumulative output tokens, which overwrites the start's placeholder).

Errors: HTTP errors are ``APIStatusError`` subclasses with the status; an in-stream ``event: error`` is an
``APIStatusError`` with ``status_code == 200`` that must be classed by its body's ``error.type``; a connection
drop mid-stream leaks a raw ``httpx2`` transport error (see ``shared/reference/provider-protocols.md`` §4).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic

from llmload.errors import ErrorKind, RequestError, kind_for_status, parse_retry_after
from llmload.metrics import mark_sent
from llmload.providers.base import Provider, classify_exception
from llmload.secrets import redact
from llmload.types import ChatRequest, ContentDelta, StreamEnd, StreamEvent, UsageReport

ERROR_TYPE_KINDS: dict[str, ErrorKind] = {
    "overloaded_error": ErrorKind.OVERLOADED,
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "api_error": ErrorKind.SERVER_ERROR,
    "timeout_error": ErrorKind.TIMEOUT,
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.AUTH,
    "invalid_request_error": ErrorKind.BAD_REQUEST,
    "not_found_error": ErrorKind.BAD_REQUEST,
    "request_too_large": ErrorKind.BAD_REQUEST,
}
"""The API's ``error.type`` values (``anthropic/_error_classes.py``) as ErrorKinds."""


class AnthropicProvider(Provider):
    name = "anthropic"
    default_model = "claude-haiku-4-5"
    """Small and not on the SDK's deprecation list (its DEPRECATED_MODELS warns on every call)."""
    api_key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"
    emulator_protocol = "anthropic"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.client = anthropic.Anthropic(
            base_url=settings.base_url,
            api_key=settings.api_key.reveal() if settings.api_key else "llmload-no-key",
            max_retries=0,
            timeout=anthropic.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            http_client=anthropic.DefaultHttpxClient(event_hooks={"request": [mark_sent]}),
        )
        # The SDK imports resource modules on first attribute access; do it now, outside any TTFT.
        self.messages = self.client.messages

    def chat(self, request: ChatRequest) -> Iterator[StreamEvent]:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(request),
            "max_tokens": request.max_tokens,
        }
        system = "\n".join(filter(None, [request.system, _system_text(request.messages)]))
        if system:
            kwargs["system"] = system
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.tools:
            kwargs["tools"] = [
                {"name": t["name"], "description": t.get("description", ""),
                 "input_schema": t.get("parameters", {"type": "object"})}
                for t in request.tools
            ]
        try:
            if request.stream:
                yield from self._stream(kwargs)
            else:
                yield from self._complete(kwargs)
        except RequestError:
            raise
        except Exception as exc:
            raise classify(exc) from None

    def _stream(self, kwargs: dict[str, Any]) -> Iterator[StreamEvent]:
        stream = self.messages.create(**kwargs, stream=True)
        input_tokens: int | None = None
        cached = 0
        output_tokens: int | None = None
        stop_reason: str | None = None
        stopped = False
        tools: dict[int, dict[str, str]] = {}
        with stream:
            for event in stream:
                kind = event.type
                if kind == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta" and delta.text:
                        yield ContentDelta(delta.text)
                    elif delta.type == "input_json_delta" and delta.partial_json:
                        tools.setdefault(event.index, {"name": "", "arguments": ""})["arguments"] += delta.partial_json
                        yield ContentDelta(delta.partial_json, "tool_args")
                    elif delta.type == "thinking_delta" and delta.thinking:
                        yield ContentDelta(delta.thinking, "reasoning")
                elif kind == "message_start":
                    usage = event.message.usage
                    input_tokens = usage.input_tokens
                    cached = usage.cache_read_input_tokens or 0
                    output_tokens = usage.output_tokens
                elif kind == "content_block_start" and event.content_block.type == "tool_use":
                    tools[event.index] = {"name": event.content_block.name, "arguments": ""}
                elif kind == "message_delta":
                    stop_reason = event.delta.stop_reason or stop_reason
                    output_tokens = event.usage.output_tokens
                    if event.usage.input_tokens is not None:
                        input_tokens = event.usage.input_tokens
                elif kind == "message_stop":
                    stopped = True
        if not stopped:
            raise RequestError(ErrorKind.TRUNCATED_STREAM, "stream ended without message_stop")
        yield UsageReport(input_tokens=input_tokens, output_tokens=output_tokens, cached_input_tokens=cached)
        yield StreamEnd(stop_reason, tool_calls=list(tools.values()))

    def _complete(self, kwargs: dict[str, Any]) -> Iterator[StreamEvent]:
        message = self.messages.create(**kwargs)
        calls: list[dict[str, Any]] = []
        for block in message.content:
            if block.type == "text" and block.text:
                yield ContentDelta(block.text)
            elif block.type == "thinking" and block.thinking:
                yield ContentDelta(block.thinking, "reasoning")
            elif block.type == "tool_use":
                arguments = json.dumps(block.input)
                calls.append({"name": block.name, "arguments": arguments})
                yield ContentDelta(arguments, "tool_args")
        usage = message.usage
        yield UsageReport(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cache_read_input_tokens or 0,
        )
        yield StreamEnd(message.stop_reason, tool_calls=calls)

    def close(self) -> None:
        self.client.close()


def classify(exc: Exception) -> RequestError:
    """Class an SDK exception; an in-stream error event (status 200) by its body's ``error.type``."""
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        err_type = str(error.get("type", ""))
        message = redact(str(error.get("message") or exc.message))[:200]
        retry_after = parse_retry_after(exc.response.headers)
        if exc.status_code < 400:
            kind = ERROR_TYPE_KINDS.get(err_type, ErrorKind.SERVER_ERROR)
            return RequestError(kind, f"error event in stream ({err_type or 'untyped'}): {message}",
                                retry_after_s=retry_after)
        kind = ERROR_TYPE_KINDS.get(err_type, kind_for_status(exc.status_code))
        return RequestError(kind, f"{err_type or exc.status_code}: {message}", status_code=exc.status_code,
                            retry_after_s=retry_after)
    return classify_exception(exc)


def _system_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The Messages API takes the system prompt as a separate field, never as a message."""
    return [m for m in request.messages if m.get("role") != "system"]
