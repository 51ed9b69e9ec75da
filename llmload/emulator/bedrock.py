"""AWS Bedrock Runtime protocol: Converse, ConverseStream, InvokeModel and InvokeModelWithResponseStream.

Byte shapes follow ``shared/reference/provider-protocols.md`` §3. Streams are ``application/vnd.amazon.eventstream``
binary frames (length-prefixed, CRC-32 checked), sent one frame per HTTP chunk: boto3 reads close-delimited bodies in
64 KiB blocks, so without chunked encoding every frame would arrive at once and TTFT would be meaningless.

InvokeModel bodies are model-native: an Anthropic Messages body (chat), a Titan Text Embeddings V2 body
(``inputText``) or a Cohere Embed v3 body (``texts``).
"""

from __future__ import annotations

import base64
import binascii
import json
import string
import struct
import time
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from llmload.emulator.anthropic import (
    message_delta_events,
    message_head_events,
    message_tail_events,
    thinking_blocks,
)
from llmload.emulator.core import (
    PRE_STREAM_FAULTS,
    Generation,
    Protocol,
    StreamEncoder,
    estimate_input_tokens,
)
from llmload.emulator.openai import embedding_vector

EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
_PAD_ALPHABET = string.ascii_letters + string.digits
_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _header(name: str, value: str) -> bytes:
    """One event-stream header of type 7 (string): the only header type Bedrock uses."""
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", 7, len(raw_value)) + raw_value


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (lengths + CRC), headers, payload, CRC of everything before it."""
    encoded_headers = b"".join(_header(k, v) for k, v in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded_headers) + len(payload) + 4, len(encoded_headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + encoded_headers + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event_frame(event_type: str, body: dict[str, Any]) -> bytes:
    return frame(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}, _dumps(body)
    )


def exception_frame(member: str, message: str) -> bytes:
    """An in-stream error; ``member`` is the lower-camel union member name, e.g. ``throttlingException``."""
    return frame(
        {":exception-type": member, ":content-type": "application/json", ":message-type": "exception"},
        _dumps({"message": message}),
    )


def _padding(gen: Generation, index: int) -> str:
    """Real Bedrock pads each event with a random-length ``p`` field; botocore drops it. Derived from the request
    id so a replayed run serves the same bytes."""
    length = 1 + binascii.crc32(f"{gen.request_id}:{index}".encode()) % 40
    return _PAD_ALPHABET[:length]


def _bad_crc(frame_bytes: bytes) -> bytes:
    """The same frame with its message CRC flipped: boto3 raises ``ChecksumMismatch``."""
    crc = struct.unpack(">I", frame_bytes[-4:])[0] ^ 0xFFFFFFFF
    return frame_bytes[:-4] + struct.pack(">I", crc)


def _stop_reason(gen: Generation) -> str:
    if gen.tool_name:
        return "tool_use"
    return "max_tokens" if gen.finish_reason == "length" else "end_turn"


def _latency_ms(gen: Generation) -> int:
    return round((time.time() - gen.truth.received_at) * 1000)


class _BedrockEncoder(StreamEncoder):
    content_type = EVENTSTREAM_CONTENT_TYPE

    def malformed(self, gen: Generation) -> bytes:
        return _bad_crc(self.token(gen, gen.fault_at, "broken"))

    def error_event(self, gen: Generation) -> bytes:
        if gen.fault == "midstream_overloaded":
            return exception_frame("serviceUnavailableException", "The service is temporarily unable to handle "
                                   "the request.")
        return exception_frame("modelStreamErrorException", "The model stream ended with an error.")


class ConverseStreamEncoder(_BedrockEncoder):
    """``messageStart``, [``contentBlockStart`` for tools], ``contentBlockDelta``×N, ``contentBlockStop``,
    ``messageStop``, ``metadata``. The last two together are the terminal event."""

    def head(self, gen: Generation) -> list[bytes]:
        frames = [event_frame("messageStart", {"p": _padding(gen, -1), "role": "assistant"})]
        if gen.tool_name:
            start = {"toolUse": {"toolUseId": f"tooluse_{gen.request_id}", "name": gen.tool_name}}
            frames.append(event_frame("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        return frames

    def token(self, gen: Generation, index: int, token: str) -> bytes:
        if gen.is_reasoning(index):
            delta: dict[str, Any] = {"reasoningContent": {"text": token}}
            return event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta,
                                                     "p": _padding(gen, index)})
        frames = b""
        answer_index = gen.answer_block
        if answer_index and index == gen.reasoning_count:
            # The reasoning block ends with its signature, then the answer opens a block of its own.
            signature = {"reasoningContent": {"signature": gen.reasoning_signature}}
            frames += event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": signature,
                                                        "p": _padding(gen, index)})
            frames += event_frame("contentBlockStop", {"contentBlockIndex": 0, "p": _padding(gen, index)})
        delta = {"toolUse": {"input": token}} if gen.tool_name else {"text": token}
        return frames + event_frame("contentBlockDelta", {"contentBlockIndex": answer_index, "delta": delta,
                                                          "p": _padding(gen, index)})

    def tail(self, gen: Generation) -> list[bytes]:
        usage = {
            "inputTokens": gen.input_tokens,
            "outputTokens": gen.output_tokens,
            "totalTokens": gen.input_tokens + gen.output_tokens,
        }
        return [
            event_frame("contentBlockStop", {"contentBlockIndex": gen.answer_block, "p": _padding(gen, -2)}),
            event_frame("messageStop", {"p": _padding(gen, -3), "stopReason": _stop_reason(gen)}),
            event_frame("metadata", {"metrics": {"latencyMs": _latency_ms(gen)}, "usage": usage}),
        ]

    def terminal_count(self) -> int:
        return 2


class InvokeStreamEncoder(_BedrockEncoder):
    """``chunk`` events whose base64 ``bytes`` are the Anthropic SSE ``data`` objects, ``message_start`` to
    ``message_stop``; the last carries ``amazon-bedrock-invocationMetrics``."""

    def _chunk(self, inner: dict[str, Any]) -> bytes:
        return event_frame("chunk", {"bytes": base64.b64encode(_dumps(inner)).decode(), "p": "abcdefgh"})

    def head(self, gen: Generation) -> list[bytes]:
        return [self._chunk(e) for e in message_head_events(gen, id_prefix="msg_bdrk_")]

    def token(self, gen: Generation, index: int, token: str) -> bytes:
        return b"".join(self._chunk(e) for e in message_delta_events(gen, index, token))

    def tail(self, gen: Generation) -> list[bytes]:
        metrics = {
            "inputTokenCount": gen.input_tokens,
            "outputTokenCount": gen.output_tokens,
            "invocationLatency": _latency_ms(gen),
            "firstByteLatency": round(gen.ttft_s * 1000),
        }
        *events, stop = message_tail_events(gen)
        return [self._chunk(e) for e in events] + [self._chunk({**stop, "amazon-bedrock-invocationMetrics": metrics})]


ERRORS: dict[str, tuple[int, str, str]] = {
    "rate_limited": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "model_not_ready": (429, "ModelNotReadyException", "The model is not ready to serve inference requests."),
    "overloaded": (503, "ServiceUnavailableException", "The service is temporarily unable to handle the request."),
    "server_error": (500, "InternalServerException", "The server encountered an internal error."),
    "bad_request": (400, "ValidationException", "The request is malformed."),
    "not_found": (404, "ResourceNotFoundException", "The requested operation is not supported."),
}

_OPERATIONS = ("converse", "converse-stream", "invoke", "invoke-with-response-stream")


class BedrockProtocol(Protocol):
    name = "bedrock"

    def routes(self) -> list[web.RouteDef]:
        # One catch-all route: model ids of ARNs contain %2F, which aiohttp would decode into extra path segments.
        return [web.post("/model/{tail:.+}", self.dispatch)]

    def error_response(self, kind: str, request_id: str, message: str | None = None) -> web.Response:
        status, code, default_message = ERRORS[kind]
        headers = {"x-amzn-errortype": f"{code}:{_ERROR_NAMESPACE}", "x-amzn-requestid": request_id}
        return web.json_response({"message": message or default_message}, status=status, headers=headers)

    def fault_response(self, gen: Generation) -> web.Response:
        kind = gen.fault or "server_error"
        # Bedrock reports an overloaded model either way; both are modelled, so serve both.
        if kind == "overloaded" and self.emulator.rng.random() < 0.5:
            kind = "model_not_ready"
        gen.truth.status = ERRORS[kind][0]
        return self.error_response(kind, gen.request_id)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        segments = request.raw_path.split("?", 1)[0].split("/")
        if len(segments) != 4 or segments[3] not in _OPERATIONS:
            return self.error_response("not_found", "-")
        model_id, operation = unquote(segments[2]), segments[3]
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return self.error_response("bad_request", "-", "Malformed input request: body is not valid JSON.")
        if not isinstance(body, dict):
            return self.error_response("bad_request", "-", "Malformed input request: expected a JSON object.")
        if operation in ("converse", "converse-stream"):
            return await self.converse(request, model_id, body, stream=operation == "converse-stream")
        if "inputText" in body or "texts" in body:
            if operation != "invoke":
                return self.error_response("bad_request", "-", "Embedding models do not support streaming.")
            return await self.embed(model_id, body)
        return await self.invoke_anthropic(request, model_id, body, stream=operation != "invoke")

    async def converse(
        self, request: web.Request, model_id: str, body: dict[str, Any], *, stream: bool
    ) -> web.StreamResponse:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self.error_response("bad_request", "-", "messages must contain at least one message.")
        tools = (body.get("toolConfig") or {}).get("tools") or []
        tool_spec = tools[0].get("toolSpec", {}) if tools and isinstance(tools[0], dict) else {}
        gen = self.emulator.plan(
            protocol=self.name,
            endpoint="chat",
            model=model_id,
            prompt=_last_user_text(messages),
            input_tokens=estimate_input_tokens(_flatten(messages)),
            max_tokens=(body.get("inferenceConfig") or {}).get("maxTokens"),
            stream=stream,
            tool_name=tool_spec.get("name") or None,
        )
        if gen.fault in PRE_STREAM_FAULTS:
            return self.fault_response(gen)
        if stream:
            return await self.emulator.stream(request, gen, ConverseStreamEncoder())
        await self.emulator.complete(gen)
        if gen.tool_name:
            block: dict[str, Any] = {
                "toolUse": {
                    "toolUseId": f"tooluse_{gen.request_id}", "name": gen.tool_name, "input": json.loads(gen.text)
                }
            }
        else:
            block = {"text": gen.text}
        reasoning = [{"reasoningContent": {"reasoningText": {"text": gen.reasoning_text,
                                                             "signature": gen.reasoning_signature}}}]
        return web.json_response(
            {
                "output": {"message": {"role": "assistant",
                                       "content": [*(reasoning if gen.reasoning_count else []), block]}},
                "stopReason": _stop_reason(gen),
                "usage": {
                    "inputTokens": gen.input_tokens,
                    "outputTokens": gen.output_tokens,
                    "totalTokens": gen.input_tokens + gen.output_tokens,
                },
                "metrics": {"latencyMs": _latency_ms(gen)},
            },
            headers={"x-amzn-requestid": gen.request_id},
        )

    async def invoke_anthropic(
        self, request: web.Request, model_id: str, body: dict[str, Any], *, stream: bool
    ) -> web.StreamResponse:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self.error_response(
                "bad_request", "-", "Malformed input request: messages, inputText or texts is required."
            )
        tools = body.get("tools") or []
        tool_name = tools[0].get("name") if tools and isinstance(tools[0], dict) else None
        gen = self.emulator.plan(
            protocol=self.name,
            endpoint="chat",
            model=model_id,
            prompt=_last_user_text(messages),
            input_tokens=estimate_input_tokens(_flatten(messages)),
            max_tokens=body.get("max_tokens"),
            stream=stream,
            tool_name=tool_name or None,
        )
        if gen.fault in PRE_STREAM_FAULTS:
            return self.fault_response(gen)
        if stream:
            return await self.emulator.stream(request, gen, InvokeStreamEncoder())
        await self.emulator.complete(gen)
        if gen.tool_name:
            block: dict[str, Any] = {
                "type": "tool_use", "id": f"toolu_bdrk_{gen.request_id}", "name": gen.tool_name,
                "input": json.loads(gen.text),
            }
        else:
            block = {"type": "text", "text": gen.text}
        response = {
            "id": f"msg_bdrk_{gen.request_id}",
            "type": "message",
            "role": "assistant",
            "model": model_id,
            "content": [*thinking_blocks(gen), block],
            "stop_reason": _stop_reason(gen),
            "stop_sequence": None,
            "usage": {"input_tokens": gen.input_tokens, "output_tokens": gen.output_tokens},
        }
        return web.json_response(response, headers=self._invoke_headers(gen))

    def _invoke_headers(self, gen: Generation) -> dict[str, str]:
        return {
            "x-amzn-requestid": gen.request_id,
            "x-amzn-bedrock-input-token-count": str(gen.input_tokens),
            "x-amzn-bedrock-output-token-count": str(gen.output_tokens),
            "x-amzn-bedrock-invocation-latency": str(_latency_ms(gen)),
        }

    async def embed(self, model_id: str, body: dict[str, Any]) -> web.StreamResponse:
        cohere = "texts" in body
        texts = body.get("texts") if cohere else [body.get("inputText")]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            field = "texts must be a non-empty array of strings" if cohere else "inputText must be a non-empty string"
            return self.error_response("bad_request", "-", f"Malformed input request: {field}.")
        if cohere and len(texts) > 96:
            return self.error_response("bad_request", "-", "Malformed input request: at most 96 texts.")
        gen = self.emulator.plan(
            protocol=self.name,
            endpoint="embeddings",
            model=model_id,
            prompt="",
            input_tokens=sum(estimate_input_tokens(t) for t in texts),
            max_tokens=1,
            stream=False,
        )
        if gen.fault in PRE_STREAM_FAULTS:
            return self.fault_response(gen)
        # An embedding generates no tokens: no gaps to wait for, and zero output tokens in the ground truth.
        gen.gaps_s = []
        gen.tokens = []
        await self.emulator.complete(gen)
        headers = self._invoke_headers(gen)
        if cohere:
            # Cohere Embed v3 on Bedrock always returns 1024 dimensions.
            vectors = [embedding_vector(t, 1024) for t in texts]
            if body.get("embedding_types"):
                return web.json_response(
                    {"id": gen.request_id, "texts": texts, "embeddings": {"float": vectors},
                     "response_type": "embeddings_by_type"},
                    headers=headers,
                )
            return web.json_response(
                {"id": gen.request_id, "texts": texts, "embeddings": vectors, "response_type": "embeddings_floats"},
                headers=headers,
            )
        dim = int(body.get("dimensions") or 1024)
        if dim not in (256, 512, 1024):
            return self.error_response("bad_request", gen.request_id, "dimensions must be one of 256, 512, 1024.")
        vector = embedding_vector(texts[0], dim)
        return web.json_response(
            {"embedding": vector, "inputTextTokenCount": gen.input_tokens, "embeddingsByType": {"float": vector}},
            headers=headers,
        )


def _flatten(messages: list[Any]) -> list[Any]:
    """Converse/Anthropic content lists as plain ``{"content": text}`` items, for the input-token estimate."""
    flat: list[Any] = []
    for message in messages:
        if isinstance(message, dict):
            flat.append({"content": _content_text(message.get("content"))})
    return flat


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""
