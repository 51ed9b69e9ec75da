"""AWS Bedrock Runtime adapter on boto3's ``bedrock-runtime`` client.

Chat goes through Converse/ConverseStream by default, or through InvokeModel/InvokeModelWithResponseStream with an
Anthropic Messages body when ``settings.extra["api"] == "invoke"``. Embeddings go through InvokeModel with a Titan
Text Embeddings V2 body, or a Cohere Embed v3 body for ``cohere.*`` model ids.

Terminal event: ConverseStream ends with ``messageStop`` followed by ``metadata`` (which carries usage); the
invoke stream ends with the Anthropic ``message_stop`` object. boto3 ends its iterator quietly when the body just
stops, so a stream missing its terminal event is classed ``truncated_stream`` here.

The client is configured for honest load numbers: exactly one attempt (botocore's standard mode would make three and
retry throttling), SigV4 even when ``AWS_BEARER_TOKEN_BEDROCK`` is set (bearer auth refuses ``http://`` endpoints),
and a connection pool as large as the user count (botocore's default of 10 would queue requests client-side).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from llmload.errors import ErrorKind, RequestError
from llmload.metrics import mark_sent
from llmload.providers.base import Provider, check_embeddings, classify_exception
from llmload.secrets import redact
from llmload.types import ChatRequest, ContentDelta, EmbeddingRequest, StreamEnd, StreamEvent, UsageReport

DEFAULT_REGION = "us-east-1"

_ERROR_KINDS: dict[str, ErrorKind] = {
    "throttlingexception": ErrorKind.RATE_LIMITED,
    "servicequotaexceededexception": ErrorKind.RATE_LIMITED,
    "modelnotreadyexception": ErrorKind.OVERLOADED,
    "serviceunavailableexception": ErrorKind.OVERLOADED,
    "internalserverexception": ErrorKind.SERVER_ERROR,
    "modelstreamerrorexception": ErrorKind.SERVER_ERROR,
    "modelerrorexception": ErrorKind.SERVER_ERROR,
    "modeltimeoutexception": ErrorKind.TIMEOUT,
    "validationexception": ErrorKind.BAD_REQUEST,
    "resourcenotfoundexception": ErrorKind.BAD_REQUEST,
    "accessdeniedexception": ErrorKind.AUTH,
    "unrecognizedclientexception": ErrorKind.AUTH,
    "expiredtokenexception": ErrorKind.AUTH,
}
"""Error codes, lower-cased: HTTP errors say ``ThrottlingException``, in-stream ones ``throttlingException``."""


class BedrockProvider(Provider):
    name = "bedrock"
    default_model = "anthropic.claude-3-haiku-20240307-v1:0"
    default_embedding_model = "amazon.titan-embed-text-v2:0"
    base_url_env = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"
    emulator_protocol = "bedrock"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        config = Config(
            signature_version="v4",
            retries={"total_max_attempts": 1},
            read_timeout=settings.timeout_s,
            connect_timeout=settings.connect_timeout_s,
            max_pool_connections=max(settings.max_connections, int(settings.extra.get("users", 0) or 0), 10),
        )
        kwargs: dict[str, Any] = {"region_name": region_for(settings), "config": config}
        if settings.base_url:
            kwargs["endpoint_url"] = settings.base_url
        if settings.emulated:
            # The emulator ignores signatures; dummy keys keep a developer's real credentials out of the traffic.
            kwargs |= {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
        self.client = boto3.session.Session().client("bedrock-runtime", **kwargs)
        # Fires once per attempt, right before the HTTP request goes to urllib3: the TTFT clock starts here.
        self.client.meta.events.register("before-send.bedrock-runtime.*", mark_sent)
        self.api = str(settings.extra.get("api", "converse"))

    @classmethod
    def has_credentials(cls) -> bool:
        return any(os.environ.get(v) for v in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK"))

    def chat(self, request: ChatRequest) -> Iterator[StreamEvent]:
        try:
            if self.api == "invoke":
                yield from self._invoke_chat(request)
            elif request.stream:
                yield from self._converse_stream(request)
            else:
                yield from self._converse(request)
        except RequestError:
            raise
        except Exception as exc:
            raise classify_bedrock_error(exc) from None

    def _converse_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "modelId": request.model,
            "messages": [
                {"role": m["role"], "content": _converse_content(m.get("content"))}
                for m in request.messages
                if m.get("role") in ("user", "assistant")
            ],
            "inferenceConfig": {"maxTokens": request.max_tokens},
        }
        if request.temperature is not None:
            kwargs["inferenceConfig"]["temperature"] = request.temperature
        if request.system:
            kwargs["system"] = [{"text": request.system}]
        if request.tools:
            kwargs["toolConfig"] = {
                "tools": [
                    {
                        "toolSpec": {
                            "name": t["name"],
                            "description": t.get("description") or t["name"],
                            "inputSchema": {"json": t.get("parameters", {"type": "object"})},
                        }
                    }
                    for t in request.tools
                ]
            }
        return kwargs

    def _converse_stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        response = self.client.converse_stream(**self._converse_kwargs(request))
        stop_reason: str | None = None
        saw_metadata = False
        tools: dict[int, dict[str, str]] = {}
        stream = response["stream"]
        try:
            for event in stream:
                if "contentBlockDelta" in event:
                    block = event["contentBlockDelta"]
                    delta = block.get("delta", {})
                    if delta.get("text"):
                        yield ContentDelta(delta["text"])
                    elif "toolUse" in delta and delta["toolUse"].get("input"):
                        fragment = delta["toolUse"]["input"]
                        entry = tools.setdefault(block.get("contentBlockIndex", 0), {"name": "", "arguments": ""})
                        entry["arguments"] += fragment
                        yield ContentDelta(fragment, "tool_args")
                    elif "reasoningContent" in delta and delta["reasoningContent"].get("text"):
                        yield ContentDelta(delta["reasoningContent"]["text"], "reasoning")
                elif "contentBlockStart" in event:
                    block = event["contentBlockStart"]
                    tool_use = block.get("start", {}).get("toolUse")
                    if tool_use:
                        tools[block.get("contentBlockIndex", 0)] = {"name": tool_use.get("name", ""), "arguments": ""}
                elif "messageStop" in event:
                    stop_reason = event["messageStop"].get("stopReason")
                elif "metadata" in event:
                    saw_metadata = True
                    usage = event["metadata"].get("usage") or {}
                    yield UsageReport(
                        input_tokens=usage.get("inputTokens"),
                        output_tokens=usage.get("outputTokens"),
                        cached_input_tokens=usage.get("cacheReadInputTokens", 0) or 0,
                    )
        finally:
            stream.close()
        if stop_reason is None or not saw_metadata:
            missing = "messageStop" if stop_reason is None else "metadata"
            raise RequestError(ErrorKind.TRUNCATED_STREAM, f"ConverseStream ended without its {missing} event")
        yield StreamEnd(stop_reason, tool_calls=list(tools.values()))

    def _converse(self, request: ChatRequest) -> Iterator[StreamEvent]:
        response = self.client.converse(**self._converse_kwargs(request))
        # botocore turns an unparsable body into an empty dict instead of raising: that is no answer.
        if "output" not in response or "stopReason" not in response:
            raise RequestError(ErrorKind.MALFORMED_STREAM, "Converse response has no output or stopReason")
        calls: list[dict[str, Any]] = []
        for block in response.get("output", {}).get("message", {}).get("content", []):
            if block.get("text"):
                yield ContentDelta(block["text"])
            elif "toolUse" in block:
                arguments = json.dumps(block["toolUse"].get("input", {}))
                calls.append({"name": block["toolUse"].get("name", ""), "arguments": arguments})
                yield ContentDelta(arguments, "tool_args")
        usage = response.get("usage") or {}
        yield UsageReport(input_tokens=usage.get("inputTokens"), output_tokens=usage.get("outputTokens"))
        yield StreamEnd(response.get("stopReason"), tool_calls=calls)

    def _anthropic_body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": request.max_tokens,
            "messages": [m for m in request.messages if m.get("role") in ("user", "assistant")],
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.system:
            body["system"] = request.system
        if request.tools:
            body["tools"] = [
                {"name": t["name"], "description": t.get("description", ""),
                 "input_schema": t.get("parameters", {"type": "object"})}
                for t in request.tools
            ]
        return body

    def _invoke_chat(self, request: ChatRequest) -> Iterator[StreamEvent]:
        body = json.dumps(self._anthropic_body(request))
        if not request.stream:
            response = self.client.invoke_model(
                modelId=request.model, body=body, contentType="application/json", accept="application/json"
            )
            message = json.loads(response["body"].read())
            calls: list[dict[str, Any]] = []
            for block in message.get("content", []):
                if block.get("type") == "text" and block.get("text"):
                    yield ContentDelta(block["text"])
                elif block.get("type") == "tool_use":
                    arguments = json.dumps(block.get("input", {}))
                    calls.append({"name": block.get("name", ""), "arguments": arguments})
                    yield ContentDelta(arguments, "tool_args")
            usage = message.get("usage") or {}
            yield UsageReport(input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens"))
            yield StreamEnd(message.get("stop_reason"), tool_calls=calls)
            return
        response = self.client.invoke_model_with_response_stream(
            modelId=request.model, body=body, contentType="application/json", accept="application/json"
        )
        yield from _anthropic_chunks(response["body"])

    def embed(self, request: EmbeddingRequest) -> Iterator[StreamEvent]:
        cohere = request.model.startswith("cohere.")
        if cohere:
            body: dict[str, Any] = {"texts": request.inputs, "input_type": "search_document", "truncate": "END"}
        elif len(request.inputs) != 1:
            # Titan embeds one text per call; a batch is one call per text, measured as one request.
            yield from self._titan_batch(request)
            return
        else:
            body = {"inputText": request.inputs[0], "normalize": True}
            if request.dimensions:
                body["dimensions"] = request.dimensions
        try:
            response = self.client.invoke_model(
                modelId=request.model, body=json.dumps(body), contentType="application/json", accept="application/json"
            )
            payload = json.loads(response["body"].read())
        except Exception as exc:
            raise classify_bedrock_error(exc) from None
        if cohere:
            embeddings = payload.get("embeddings")
            vectors = embeddings.get("float", []) if isinstance(embeddings, dict) else embeddings or []
            input_tokens = _header_int(response, "x-amzn-bedrock-input-token-count")
        else:
            vectors = [payload.get("embedding") or []]
            input_tokens = payload.get("inputTextTokenCount")
        check_embeddings(vectors, request)
        yield UsageReport(input_tokens=input_tokens, output_tokens=0)
        yield StreamEnd("stop", embeddings=len(vectors))

    def _titan_batch(self, request: EmbeddingRequest) -> Iterator[StreamEvent]:
        input_tokens = 0
        vectors: list[Any] = []
        for text in request.inputs:
            body: dict[str, Any] = {"inputText": text, "normalize": True}
            if request.dimensions:
                body["dimensions"] = request.dimensions
            try:
                response = self.client.invoke_model(
                    modelId=request.model, body=json.dumps(body), contentType="application/json",
                    accept="application/json",
                )
                payload = json.loads(response["body"].read())
            except Exception as exc:
                raise classify_bedrock_error(exc) from None
            vectors.append(payload.get("embedding") or [])
            input_tokens += int(payload.get("inputTextTokenCount") or 0)
        check_embeddings(vectors, request)
        yield UsageReport(input_tokens=input_tokens, output_tokens=0)
        yield StreamEnd("stop", embeddings=len(vectors))

    def close(self) -> None:
        self.client.close()


def region_for(settings: Any) -> str:
    return settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def classify_bedrock_error(exc: BaseException) -> RequestError:
    """A botocore ``ClientError`` (HTTP error) or ``EventStreamError`` (in-stream exception frame) by its code;
    anything else (urllib3 ``ProtocolError``, ``ChecksumMismatch``, timeouts) by the shared type-name rules."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        in_stream = code[:1].islower()
        kind = _ERROR_KINDS.get(code.lower())
        if kind is None:
            from llmload.errors import kind_for_status

            kind = kind_for_status(status) if isinstance(status, int) and status >= 400 else ErrorKind.OTHER
        where = "exception event in stream" if in_stream else "HTTP error"
        message = redact(str(error.get("Message", "")))[:200]
        return RequestError(
            kind, f"{where} {code}: {message}", status_code=None if in_stream or status == 200 else status
        )
    return classify_exception(exc)


def _anthropic_chunks(body: Any) -> Iterator[StreamEvent]:
    """Normalize InvokeModelWithResponseStream ``chunk`` events carrying Anthropic stream objects."""
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finished = False
    tools: dict[int, dict[str, str]] = {}
    try:
        for event in body:
            if "chunk" not in event:
                continue
            inner = json.loads(event["chunk"]["bytes"])
            kind = inner.get("type")
            if kind == "content_block_delta":
                delta = inner.get("delta", {})
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield ContentDelta(delta["text"])
                elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                    entry = tools.setdefault(inner.get("index", 0), {"name": "", "arguments": ""})
                    entry["arguments"] += delta["partial_json"]
                    yield ContentDelta(delta["partial_json"], "tool_args")
                elif delta.get("type") == "thinking_delta" and delta.get("thinking"):
                    yield ContentDelta(delta["thinking"], "reasoning")
            elif kind == "content_block_start" and inner.get("content_block", {}).get("type") == "tool_use":
                tools[inner.get("index", 0)] = {"name": inner["content_block"].get("name", ""), "arguments": ""}
            elif kind == "message_start":
                input_tokens = (inner.get("message", {}).get("usage") or {}).get("input_tokens")
            elif kind == "message_delta":
                stop_reason = inner.get("delta", {}).get("stop_reason") or stop_reason
                output_tokens = (inner.get("usage") or {}).get("output_tokens", output_tokens)
            elif kind == "message_stop":
                finished = True
                metrics = inner.get("amazon-bedrock-invocationMetrics") or {}
                input_tokens = metrics.get("inputTokenCount", input_tokens)
                output_tokens = metrics.get("outputTokenCount", output_tokens)
    finally:
        body.close()
    if not finished:
        raise RequestError(ErrorKind.TRUNCATED_STREAM, "invoke stream ended without message_stop")
    yield UsageReport(input_tokens=input_tokens, output_tokens=output_tokens)
    yield StreamEnd(stop_reason, tool_calls=list(tools.values()))


def _converse_content(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    if isinstance(content, list):
        return [{"text": str(part.get("text", ""))} for part in content if isinstance(part, dict)]
    return [{"text": str(content or "")}]


def _header_int(response: dict[str, Any], name: str) -> int | None:
    value = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get(name)
    return int(value) if value and str(value).isdigit() else None

