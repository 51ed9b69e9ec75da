"""OpenAI adapter (and every OpenAI-compatible server: vLLM, TGI, llama.cpp, LiteLLM) on the official SDK.

Terminal event: the SDK consumes ``data: [DONE]`` itself and hides it, so the adapter treats a chunk with a
``finish_reason`` as the protocol's end-of-answer marker and ends the request when the SDK's iterator finishes
(at ``[DONE]``, or at EOF for servers such as ``transformers serve`` that send none). A stream with no
``finish_reason`` chunk is truncated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
from openai._constants import DEFAULT_CONNECTION_LIMITS

from llmload.errors import ErrorKind, RequestError, kind_for_stream_error
from llmload.metrics import mark_sent
from llmload.providers.base import Provider, check_embeddings, classify_exception
from llmload.providers.transport import ReusingTransport
from llmload.secrets import redact
from llmload.types import ChatRequest, ContentDelta, EmbeddingRequest, StreamEnd, StreamEvent, UsageReport


class OpenAIProvider(Provider):
    name = "openai"
    default_model = "gpt-4o-mini"
    default_embedding_model = "text-embedding-3-small"
    api_key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    emulator_protocol = "openai"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.client = openai.OpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.reveal() if settings.api_key else "llmload-no-key",
            max_retries=0,
            timeout=openai.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            http_client=openai.DefaultHttpxClient(
                event_hooks={"request": [mark_sent]},
                transport=ReusingTransport(limits=DEFAULT_CONNECTION_LIMITS),
            ),
        )
        # The SDK imports resource modules on first attribute access (~100 ms); do it now, outside any TTFT.
        self.completions = self.client.chat.completions
        self.embeddings = self.client.embeddings

    @classmethod
    def emulator_base_url(cls, emulator_url: str) -> str:
        return f"{emulator_url}/v1"

    def chat(self, request: ChatRequest) -> Iterator[StreamEvent]:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(request),
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.tools:
            kwargs["tools"] = [
                {"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                  "parameters": t.get("parameters", {"type": "object"})}}
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
            raise _classify(exc) from None

    def _stream(self, kwargs: dict[str, Any]) -> Iterator[StreamEvent]:
        stream = self.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
        finish: str | None = None
        tool_calls: dict[int, dict[str, str]] = {}
        with stream:
            for chunk in stream:
                for choice in chunk.choices:
                    delta = choice.delta
                    reasoning = getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)
                    if isinstance(reasoning, str) and reasoning:
                        yield ContentDelta(reasoning, "reasoning")
                    if delta.content:
                        yield ContentDelta(delta.content)
                    for call in delta.tool_calls or ():
                        entry = tool_calls.setdefault(call.index, {"name": "", "arguments": ""})
                        if call.function is not None:
                            entry["name"] = call.function.name or entry["name"]
                            if call.function.arguments:
                                entry["arguments"] += call.function.arguments
                                yield ContentDelta(call.function.arguments, "tool_args")
                    if choice.finish_reason:
                        finish = choice.finish_reason
                if chunk.usage is not None:
                    yield _usage(chunk.usage)
        if finish is None:
            raise RequestError(ErrorKind.TRUNCATED_STREAM, "stream ended without a finish_reason chunk")
        yield StreamEnd(finish, tool_calls=list(tool_calls.values()))

    def _complete(self, kwargs: dict[str, Any]) -> Iterator[StreamEvent]:
        response = self.completions.create(**kwargs)
        if not response.choices:
            raise RequestError(ErrorKind.MALFORMED_STREAM, "response has no choices")
        choice = response.choices[0]
        message = choice.message
        if message.content:
            yield ContentDelta(message.content)
        calls = [
            {"name": c.function.name, "arguments": c.function.arguments}
            for c in (message.tool_calls or ())
            if getattr(c, "function", None) is not None
        ]
        for call in calls:
            yield ContentDelta(call["arguments"], "tool_args")
        if response.usage is not None:
            yield _usage(response.usage)
        yield StreamEnd(choice.finish_reason, tool_calls=calls)

    def embed(self, request: EmbeddingRequest) -> Iterator[StreamEvent]:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "input": request.inputs,
            "encoding_format": request.encoding_format,
        }
        if request.dimensions:
            kwargs["dimensions"] = request.dimensions
        try:
            response = self.embeddings.create(**kwargs)
        except Exception as exc:
            raise _classify(exc) from None
        check_embeddings([item.embedding for item in response.data], request)
        yield UsageReport(input_tokens=response.usage.prompt_tokens, output_tokens=0)
        yield StreamEnd("stop", embeddings=len(response.data))

    def close(self) -> None:
        self.client.close()


def _classify(exc: Exception) -> RequestError:
    """An in-stream ``data: {"error": ...}`` event arrives as a bare APIError with no status: classify by its type."""
    if type(exc) is openai.APIError:
        return RequestError(kind_for_stream_error(exc.body), f"error event in stream: {redact(exc.message)[:200]}")
    return classify_exception(exc)


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    if request.system:
        return [{"role": "system", "content": request.system}, *request.messages]
    return list(request.messages)


def _usage(usage: Any) -> UsageReport:
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return UsageReport(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cached_input_tokens=(getattr(prompt_details, "cached_tokens", 0) or 0) if prompt_details else 0,
        reasoning_tokens=(getattr(completion_details, "reasoning_tokens", 0) or 0) if completion_details else 0,
    )
