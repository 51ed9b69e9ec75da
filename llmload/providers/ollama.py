"""Ollama adapter on the official ollama client (``/api/chat``, ``/api/embed``).

Terminal event: the ``done: true`` line, which also carries usage (``prompt_eval_count``, ``eval_count``); the
request ends when the client's iterator finishes after it, as with the OpenAI adapter. The client ends its iterator
quietly when a stream stops without one, so the adapter classes that as
``truncated_stream``. Ollama sends a tool call whole, in one line, with ``arguments`` as an object; the adapter
serializes it to a JSON string so tool arguments look the same from every provider.

Errors: ``ResponseError`` carries the HTTP status, or ``-1`` for an ``{"error": ...}`` line inside a stream (the
server failed mid-generation: ``server_error``). The client drops response headers, so a transport hook keeps the
last error response's ``retry-after``. A connection drop leaks a raw ``httpx`` error.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import ollama

from llmload.errors import ErrorKind, RequestError, kind_for_status, parse_retry_after
from llmload.metrics import mark_sent
from llmload.providers.base import Provider, check_embeddings, classify_exception
from llmload.secrets import redact
from llmload.types import ChatRequest, ContentDelta, EmbeddingRequest, StreamEnd, StreamEvent, UsageReport


class OllamaProvider(Provider):
    name = "ollama"
    default_model = "llama3.2"
    default_embedding_model = "nomic-embed-text"
    base_url_env = "OLLAMA_HOST"
    emulator_protocol = "ollama"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._last_error = threading.local()
        """Per-greenlet (gevent patches ``threading.local``): the retry-after of this user's last error response."""
        self.client = ollama.Client(
            host=settings.base_url,
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            limits=httpx.Limits(max_connections=settings.max_connections,
                                max_keepalive_connections=settings.max_connections),
            event_hooks={"request": [mark_sent], "response": [self._remember_retry_after]},
        )

    @classmethod
    def has_credentials(cls) -> bool:
        """A local Ollama needs no key: an ``OLLAMA_HOST`` in the environment is enough to target a real server."""
        return bool(os.environ.get("OLLAMA_HOST"))

    def _remember_retry_after(self, response: httpx.Response) -> None:
        self._last_error.retry_after = parse_retry_after(response.headers) if response.status_code >= 400 else None

    def chat(self, request: ChatRequest) -> Iterator[StreamEvent]:
        messages = list(request.messages)
        if request.system:
            messages.insert(0, {"role": "system", "content": request.system})
        options: dict[str, Any] = {"num_predict": request.max_tokens}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        tools = [
            {"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                              "parameters": t.get("parameters", {"type": "object"})}}
            for t in request.tools or ()
        ]
        kwargs: dict[str, Any] = {"model": request.model, "messages": messages, "options": options}
        if tools:
            kwargs["tools"] = tools
        try:
            if request.stream:
                yield from self._stream(kwargs)
            else:
                yield from self._events(self.client.chat(**kwargs, stream=False), [])
        except RequestError:
            raise
        except Exception as exc:
            raise self._classify(exc) from None

    def _stream(self, kwargs: dict[str, Any]) -> Iterator[StreamEvent]:
        end: StreamEnd | None = None
        calls: list[dict[str, str]] = []
        for part in self.client.chat(**kwargs, stream=True):
            for event in self._events(part, calls):
                if isinstance(event, StreamEnd):
                    end = event
                else:
                    yield event
        if end is None:
            raise RequestError(ErrorKind.TRUNCATED_STREAM, "stream ended without a done:true line")
        # StreamEnd only once the SDK's iterator has finished: it then has read the HTTP body to its end and the
        # connection goes back to the pool (ending at the done line would close it, and the next request would
        # pay a new connection inside its TTFT).
        yield end

    def _events(self, part: Any, calls: list[dict[str, str]]) -> Iterator[StreamEvent]:
        """The events of one chat response object (a stream line, or a whole non-streamed reply).

        Tool calls are appended to ``calls``, which gathers them across a stream's lines for the final StreamEnd.
        """
        message = part.message
        if message.thinking:
            yield ContentDelta(message.thinking, "reasoning")
        if message.content:
            yield ContentDelta(message.content)
        for call in message.tool_calls or ():
            arguments = json.dumps(dict(call.function.arguments))
            calls.append({"name": call.function.name, "arguments": arguments})
            yield ContentDelta(arguments, "tool_args")
        if part.done:
            yield UsageReport(input_tokens=part.prompt_eval_count, output_tokens=part.eval_count)
            yield StreamEnd(part.done_reason, tool_calls=calls)

    def embed(self, request: EmbeddingRequest) -> Iterator[StreamEvent]:
        kwargs: dict[str, Any] = {"model": request.model, "input": request.inputs}
        if request.dimensions:
            kwargs["dimensions"] = request.dimensions
        try:
            response = self.client.embed(**kwargs)
        except Exception as exc:
            raise self._classify(exc) from None
        check_embeddings(list(response.embeddings), request)
        yield UsageReport(input_tokens=response.prompt_eval_count, output_tokens=0)
        yield StreamEnd("stop", embeddings=len(response.embeddings))

    def _classify(self, exc: Exception) -> RequestError:
        if isinstance(exc, ollama.ResponseError):
            message = redact(str(exc.error))[:200]
            if exc.status_code == -1:
                return RequestError(ErrorKind.SERVER_ERROR, f"error line in stream: {message}")
            retry_after = getattr(self._last_error, "retry_after", None)
            return RequestError(kind_for_status(exc.status_code), message, status_code=exc.status_code,
                                retry_after_s=retry_after)
        return classify_exception(exc)

    def close(self) -> None:
        self.client.close()
