"""OpenAI-compatible adapter on a raw SSE reader over geventhttpclient (Locust's FastHttpUser stack).

The official SDK parses every chunk into pydantic models, which costs more CPU per chunk than the whole rest of
the harness; one generator process then saturates at a fraction of the load it could drive. This adapter speaks
the same wire protocol (``docs/performance.md`` has the measured difference) with ``json.loads`` on each
``data:`` line and nothing else, and keeps the SDK adapter's semantics exactly:

* the clock starts at :func:`~llmload.metrics.mark_sent`, called right before the request goes to the
  connection pool, so connection setup counts, as it does behind the SDK's httpx hook;
* terminal event: a chunk with a ``finish_reason`` is the end-of-answer marker and the request ends at
  ``data: [DONE]`` (or at EOF for servers that send none); a stream without a ``finish_reason`` chunk is
  ``truncated_stream``;
* errors: HTTP status via ``kind_for_status`` with ``retry-after``; in-stream ``{"error": ...}`` events like the
  SDK path; transport failures through ``classify_exception`` (reset → ``connection``, timeout → ``timeout``);
  an undecodable ``data:`` line → ``malformed_stream``.

It never retries. Use it with ``--provider openai-fast``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPParseError, HTTPSocketPoolResponse

from llmload.errors import (
    ErrorKind,
    ProviderSetupError,
    RequestError,
    kind_for_status,
    kind_for_stream_error,
    parse_retry_after,
)
from llmload.metrics import mark_sent
from llmload.providers.base import Provider, check_embeddings, classify_exception
from llmload.providers.openai import OpenAIProvider
from llmload.secrets import redact
from llmload.types import ChatRequest, ContentDelta, EmbeddingRequest, StreamEnd, StreamEvent, UsageReport

_DONE = b"[DONE]"


class OpenAIFastProvider(Provider):
    name = "openai-fast"
    default_model = OpenAIProvider.default_model
    default_embedding_model = OpenAIProvider.default_embedding_model
    api_key_env = OpenAIProvider.api_key_env
    base_url_env = OpenAIProvider.base_url_env
    emulator_protocol = "openai"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        base_url = settings.base_url or "https://api.openai.com/v1"
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ProviderSetupError(f"provider 'openai-fast' needs an http(s) base URL, got {redact(base_url)!r}")
        self.path_prefix = parsed.path.rstrip("/")
        key = settings.api_key.reveal() if settings.api_key else "llmload-no-key"
        self.client = HTTPClient(
            parsed.hostname,
            port=parsed.port,
            ssl=parsed.scheme == "https",
            concurrency=settings.max_connections,
            connection_timeout=settings.connect_timeout_s,
            network_timeout=settings.timeout_s,
            headers={"authorization": f"Bearer {key}", "content-type": "application/json",
                     "user-agent": "llmload-openai-fast"},
        )

    @classmethod
    def emulator_base_url(cls, emulator_url: str) -> str:
        return f"{emulator_url}/v1"

    def chat(self, request: ChatRequest) -> Iterator[StreamEvent]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(request),
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = [
                {"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                  "parameters": t.get("parameters", {"type": "object"})}}
                for t in request.tools
            ]
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        payload = json.dumps(body).encode()
        response: HTTPSocketPoolResponse | None = None
        try:
            response = self._post("/chat/completions", payload, stream=request.stream)
            if request.stream:
                yield from _stream(response)
            else:
                yield from _complete(_json_body(response))
        except RequestError:
            raise
        except HTTPParseError as exc:
            # A body cut off mid-message or broken HTTP framing: what httpx calls RemoteProtocolError and the
            # SDK path reports as a connection error.
            raise RequestError(ErrorKind.CONNECTION, f"{type(exc).__name__}: {redact(str(exc))[:200]}") from None
        except Exception as exc:
            raise classify_exception(exc) from None
        finally:
            if response is not None:
                _discard_unless_complete(response)

    def embed(self, request: EmbeddingRequest) -> Iterator[StreamEvent]:
        body: dict[str, Any] = {"model": request.model, "input": request.inputs,
                                "encoding_format": request.encoding_format}
        if request.dimensions:
            body["dimensions"] = request.dimensions
        response: HTTPSocketPoolResponse | None = None
        try:
            response = self._post("/embeddings", json.dumps(body).encode(), stream=False)
            data = _json_body(response)
        except RequestError:
            raise
        except Exception as exc:
            raise classify_exception(exc) from None
        finally:
            if response is not None:
                _discard_unless_complete(response)
        vectors = data.get("data") or []
        check_embeddings([v.get("embedding") if isinstance(v, dict) else None for v in vectors], request)
        yield UsageReport(input_tokens=(data.get("usage") or {}).get("prompt_tokens"), output_tokens=0)
        yield StreamEnd("stop", embeddings=len(vectors))

    def _post(self, path: str, payload: bytes, *, stream: bool) -> HTTPSocketPoolResponse:
        headers = {"accept": "text/event-stream"} if stream else {"accept": "application/json"}
        mark_sent()
        response = self.client.request("POST", self.path_prefix + path, body=payload, headers=headers)
        status = response.status_code
        if status >= 400:
            detail = response.read()[:300].decode("utf-8", "replace")
            raise RequestError(
                kind_for_status(status),
                f"HTTP {status}: {redact(detail.splitlines()[0] if detail else '')}",
                status_code=status,
                retry_after_s=parse_retry_after(response),
            )
        return response

    def close(self) -> None:
        self.client.close()


def _stream(response: HTTPSocketPoolResponse) -> Iterator[StreamEvent]:
    finish: str | None = None
    tool_calls: dict[int, dict[str, str]] = {}
    readline = response.readline
    while True:
        line = readline(b"\n")
        if not line:
            break
        if not line.startswith(b"data:"):
            continue  # blank separators, comments, ``event:``/``id:`` fields the protocol does not use
        data = line[5:].strip()
        if data == _DONE:
            # Read the body's end (chunked terminator) as the SDK does before its iterator finishes: same e2e
            # end point, and the connection goes back to the pool clean.
            response.read()
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            raise RequestError(ErrorKind.MALFORMED_STREAM, f"undecodable stream line: {data[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise RequestError(ErrorKind.MALFORMED_STREAM, "stream chunk is not a JSON object")
        if "error" in chunk:
            raise _error_event(chunk["error"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                yield ContentDelta(reasoning, "reasoning")
            content = delta.get("content")
            if content:
                yield ContentDelta(content)
            for call in delta.get("tool_calls") or ():
                entry = tool_calls.setdefault(call.get("index", 0), {"name": "", "arguments": ""})
                function = call.get("function")
                if function:
                    entry["name"] = function.get("name") or entry["name"]
                    arguments = function.get("arguments")
                    if arguments:
                        entry["arguments"] += arguments
                        yield ContentDelta(arguments, "tool_args")
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
        usage = chunk.get("usage")
        if usage:
            yield _usage(usage)
    if finish is None:
        raise RequestError(ErrorKind.TRUNCATED_STREAM, "stream ended without a finish_reason chunk")
    yield StreamEnd(finish, tool_calls=list(tool_calls.values()))


def _complete(data: dict[str, Any]) -> Iterator[StreamEvent]:
    choices = data.get("choices") or []
    if not choices:
        raise RequestError(ErrorKind.MALFORMED_STREAM, "response has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    if message.get("content"):
        yield ContentDelta(message["content"])
    calls = [
        {"name": c["function"].get("name"), "arguments": c["function"].get("arguments") or ""}
        for c in (message.get("tool_calls") or ())
        if c.get("function")
    ]
    for call in calls:
        yield ContentDelta(call["arguments"], "tool_args")
    if data.get("usage"):
        yield _usage(data["usage"])
    yield StreamEnd(choice.get("finish_reason"), tool_calls=calls)


def _json_body(response: HTTPSocketPoolResponse) -> dict[str, Any]:
    raw = response.read()
    try:
        data = json.loads(raw)
    except ValueError:
        raise RequestError(ErrorKind.MALFORMED_STREAM, "response body is not JSON") from None
    if not isinstance(data, dict):
        raise RequestError(ErrorKind.MALFORMED_STREAM, "response body is not a JSON object")
    if "error" in data:
        raise _error_event(data["error"])
    return data


def _error_event(error: Any) -> RequestError:
    """Same mapping as the SDK path's in-stream ``APIError``: by the error's ``type``/``code``."""
    message = str(error.get("message") or error) if isinstance(error, dict) else str(error)
    return RequestError(kind_for_stream_error(error), f"error event in stream: {redact(message)[:200]}")


def _discard_unless_complete(response: HTTPSocketPoolResponse) -> None:
    """A stream abandoned mid-body (error, early close) leaves unread bytes on its socket; returning that socket
    to the pool would hand the next request a stream it never asked for, so close it instead."""
    if response.message_complete:
        response.release()
        return
    sock, pool = response._sock, response._pool
    response._sock = response._pool = None
    if sock is not None and pool is not None:
        pool.release_socket(sock)


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    if request.system:
        return [{"role": "system", "content": request.system}, *request.messages]
    return list(request.messages)


def _usage(usage: dict[str, Any]) -> UsageReport:
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return UsageReport(
        input_tokens=usage.get("prompt_tokens"),
        output_tokens=usage.get("completion_tokens"),
        cached_input_tokens=prompt_details.get("cached_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
    )
