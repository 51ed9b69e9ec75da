"""Bedrock: the event-stream encoder against golden bytes, and real boto3 against the emulator over 127.0.0.1.

Fault tests run the emulator's aiohttp app in a thread so each test can swap the emulator's fault configuration
without paying a subprocess start; the wire path (boto3 → urllib3 → socket → aiohttp) is the same.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from llmload.emulator import EmulatorProcess, MockConfiguration
from llmload.emulator.bedrock import BedrockProtocol, event_frame, exception_frame
from llmload.emulator.core import Emulator, build_app
from llmload.errors import ErrorKind
from llmload.metrics import RequestRecord, measure
from llmload.providers import provider_class
from llmload.providers.base import ProviderSettings
from llmload.providers.bedrock import BedrockProvider
from llmload.types import ChatRequest
from tests.conftest import LOCUST, REPO, locust_env

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TOOLS = [{"name": "get_weather", "description": "Weather for a city", "parameters": {"type": "object"}}]

GOLDEN_HEX = (
    "000000aa00000057aaba9c090b3a6576656e742d74797065070011636f6e74656e74426c6f636b44656c74610d3a636f6e74656e742d7479"
    "70650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b22636f6e74656e74426c6f63"
    "6b496e646578223a302c2264656c7461223a7b2274657874223a2248656c6c6f227d2c2270223a226162636465666768696a6b6c227de19d"
    "c8b1"
)


def test_encoder_matches_golden_frame() -> None:
    frame = event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}, "p": "abcdefghijkl"})
    assert len(frame) == 170
    assert frame[8:12] == bytes.fromhex("aaba9c09") and frame[-4:] == bytes.fromhex("e19dc8b1")
    assert frame == bytes.fromhex(GOLDEN_HEX)


def test_botocore_decodes_event_and_exception_frames() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(event_frame("messageStop", {"stopReason": "end_turn"}))
    buffer.add_data(exception_frame("throttlingException", "slow down"))
    event, error = list(buffer)
    assert event.headers[":event-type"] == "messageStop" and json.loads(event.payload) == {"stopReason": "end_turn"}
    assert error.headers[":message-type"] == "exception"
    assert error.headers[":exception-type"] == "throttlingException"
    corrupted = bytearray(event_frame("messageStop", {"stopReason": "end_turn"}))
    corrupted[-1] ^= 0xFF
    bad = EventStreamBuffer()
    bad.add_data(bytes(corrupted))
    with pytest.raises(ChecksumMismatch):
        list(bad)


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess("bedrock", MockConfiguration(ttft_ms=40, itl_ms=4, output_tokens=10)) as process:
        yield process


def _client(url: str) -> Any:
    return boto3.session.Session().client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=url,
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(signature_version="v4", retries={"total_max_attempts": 1}),
    )


def _truth(emu: EmulatorProcess, request_id: str) -> dict[str, Any]:
    (row,) = [t for t in emu.truth() if t["request_id"] == request_id]
    return row


def test_converse_stream_with_raw_boto3(emu: EmulatorProcess) -> None:
    client = _client(emu.url)
    response = client.converse_stream(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "hi"}]}])
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["content-type"] == "application/vnd.amazon.eventstream"
    assert headers["transfer-encoding"] == "chunked"
    events = list(response["stream"])
    names = [next(iter(e)) for e in events]
    assert names[0] == "messageStart" and names[-2:] == ["messageStop", "metadata"]
    assert names.count("contentBlockDelta") == 10 and names[-3] == "contentBlockStop"
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    truth = _truth(emu, response["ResponseMetadata"]["RequestId"])
    assert events[-1]["metadata"]["usage"]["outputTokens"] == truth["tokens_sent"] == 10
    assert events[-1]["metadata"]["usage"]["inputTokens"] == truth["input_tokens"]
    assert len(text.split()) == 10 and events[-2]["messageStop"]["stopReason"] == "end_turn"


def test_converse_and_invoke_with_raw_boto3(emu: EmulatorProcess) -> None:
    client = _client(emu.url)
    reply = client.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "hi"}]}],
                            inferenceConfig={"maxTokens": 4})
    assert reply["stopReason"] == "max_tokens" and reply["usage"]["outputTokens"] == 4
    assert len(reply["output"]["message"]["content"][0]["text"].split()) == 4
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}]}
    invoked = client.invoke_model(modelId=MODEL, body=json.dumps(body))
    message = json.loads(invoked["body"].read())
    assert message["type"] == "message" and message["usage"]["output_tokens"] == 10
    assert invoked["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-output-token-count"] == "10"
    streamed = client.invoke_model_with_response_stream(modelId=MODEL, body=json.dumps(body))
    inner = [json.loads(e["chunk"]["bytes"]) for e in streamed["body"]]
    assert inner[0]["type"] == "message_start" and inner[-1]["type"] == "message_stop"
    assert inner[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 10
    assert sum(1 for i in inner if i["type"] == "content_block_delta") == 10


@pytest.mark.parametrize(
    "model_id",
    ["anthropic.claude-3-haiku-20240307-v1:0",
     "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"],
)
def test_percent_encoded_model_id_round_trips(emu: EmulatorProcess, model_id: str) -> None:
    response = _client(emu.url).converse(modelId=model_id, messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert _truth(emu, response["ResponseMetadata"]["RequestId"])["model"] == model_id


def _adapter(url: str, api: str = "converse") -> BedrockProvider:
    cls = provider_class("bedrock")
    assert cls is BedrockProvider
    return BedrockProvider(ProviderSettings(base_url=url, emulated=True, timeout_s=10, extra={"api": api}))


def _chat(provider: BedrockProvider, *, stream: bool = True, tools: list[dict[str, Any]] | None = None,
          max_tokens: int = 128) -> RequestRecord:
    request = ChatRequest(model=MODEL, messages=[{"role": "user", "content": "hello"}], stream=stream,
                          tools=tools, max_tokens=max_tokens)
    return measure(provider.chat(request), provider="bedrock", model=MODEL, scenario="t", endpoint="chat",
                   streamed=stream)


@pytest.mark.parametrize("api", ["converse", "invoke"])
def test_adapter_streams_against_truth(emu: EmulatorProcess, api: str) -> None:
    provider = _adapter(emu.url, api)
    since = emu.truth()[-1]["received_at"] if emu.truth() else 0.0
    record = _chat(provider)
    provider.close()
    assert record.ok, record.error_message
    (truth,) = [t for t in emu.truth(since) if t["received_at"] > since]
    assert record.output_tokens == truth["tokens_sent"] == 10 and not record.output_tokens_estimated
    assert record.input_tokens == truth["input_tokens"]
    truth_ttft_ms = (truth["first_content_at"] - truth["received_at"]) * 1000
    # The client clock starts before the server's, so measured TTFT is at least the server's, give or take clocks.
    assert truth_ttft_ms - 5 <= record.ttft_ms <= truth_ttft_ms + 250
    assert len(record.itl_ms) == 9 and record.finish_reason == "end_turn"
    # Frames arrive as they are sent (chunked, one frame per chunk), not in one buffered block at the end.
    truth_spread_ms = (truth["last_content_at"] - truth["first_content_at"]) * 1000
    assert record.e2e_ms - record.ttft_ms >= 0.5 * truth_spread_ms > 10


@pytest.mark.parametrize("api", ["converse", "invoke"])
@pytest.mark.parametrize("stream", [True, False])
def test_adapter_tool_use(emu: EmulatorProcess, api: str, stream: bool) -> None:
    provider = _adapter(emu.url, api)
    record = _chat(provider, stream=stream, tools=TOOLS)
    provider.close()
    assert record.ok, record.error_message
    assert record.finish_reason == "tool_use"
    (call,) = record.tool_calls
    assert call["name"] == "get_weather" and set(json.loads(call["arguments"])) == {"city", "unit"}
    assert (record.ttft_ms is not None) is stream


def test_adapter_non_stream_respects_max_tokens(emu: EmulatorProcess) -> None:
    provider = _adapter(emu.url)
    record = _chat(provider, stream=False, max_tokens=3)
    provider.close()
    assert record.ok and record.output_tokens == 3 and record.finish_reason == "max_tokens"


@pytest.fixture(scope="module")
def threaded() -> Iterator[tuple[str, Emulator]]:
    """The Bedrock app served from a thread; tests replace ``emulator.config`` to pick a fault."""
    loop = asyncio.new_event_loop()
    emulator = Emulator(MockConfiguration(ttft_ms=5, itl_ms=1, output_tokens=8))
    runner = web.AppRunner(build_app(emulator, [BedrockProtocol]))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", emulator
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


FAULT_CASES = [
    ("rate_limited", ErrorKind.RATE_LIMITED, {429}),
    ("overloaded", ErrorKind.OVERLOADED, {429, 503}),
    ("server_error", ErrorKind.SERVER_ERROR, {500}),
    ("midstream_error", ErrorKind.SERVER_ERROR, {None}),
    ("midstream_overloaded", ErrorKind.OVERLOADED, {None}),
    ("malformed", ErrorKind.MALFORMED_STREAM, {None}),
    ("disconnect", ErrorKind.CONNECTION, {None}),
    ("truncate", ErrorKind.TRUNCATED_STREAM, {None}),
]


@pytest.mark.parametrize("api", ["converse", "invoke"])
@pytest.mark.parametrize(("fault", "kind", "statuses"), FAULT_CASES)
def test_faults_map_to_error_kinds(
    threaded: tuple[str, Emulator], api: str, fault: str, kind: ErrorKind, statuses: set[int | None]
) -> None:
    url, emulator = threaded
    emulator.config = MockConfiguration(ttft_ms=5, itl_ms=1, output_tokens=8, error_rate=1.0,
                                        fault_weights={fault: 1.0})
    provider = _adapter(url, api)
    records = [_chat(provider) for _ in range(4 if fault == "overloaded" else 1)]
    provider.close()
    for record in records:
        assert not record.ok
        assert record.error_kind == kind, record.error_message
        assert record.status_code in statuses


def test_overloaded_serves_both_bedrock_exceptions(threaded: tuple[str, Emulator]) -> None:
    url, emulator = threaded
    emulator.config = MockConfiguration(ttft_ms=1, itl_ms=1, output_tokens=2, error_rate=1.0,
                                        fault_weights={"overloaded": 1.0})
    client = _client(url)
    codes = set()
    for _ in range(30):
        try:
            client.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "x"}]}])
        except client.exceptions.ClientError as exc:
            codes.add(exc.response["Error"]["Code"])
    assert codes == {"ModelNotReadyException", "ServiceUnavailableException"}


def test_sdk_retries_are_off(threaded: tuple[str, Emulator]) -> None:
    url, emulator = threaded
    emulator.config = MockConfiguration(ttft_ms=1, itl_ms=1, output_tokens=2, error_rate=1.0,
                                        fault_weights={"rate_limited": 1.0})
    emulator.truth.clear()
    provider = _adapter(url)
    record = _chat(provider)
    provider.close()
    assert record.error_kind == ErrorKind.RATE_LIMITED
    assert len(emulator.truth) == 1


def test_validation_error_is_bad_request(threaded: tuple[str, Emulator]) -> None:
    url, emulator = threaded
    emulator.config = MockConfiguration(ttft_ms=1, itl_ms=1, output_tokens=2)
    provider = _adapter(url)
    request = ChatRequest(model=MODEL, messages=[{"role": "system", "content": "only a system message"}])
    record = measure(provider.chat(request), provider="bedrock", model=MODEL, scenario="t", endpoint="chat",
                     streamed=True)
    provider.close()
    assert record.error_kind == ErrorKind.BAD_REQUEST and record.status_code == 400


@pytest.mark.parametrize("api", ["converse", "invoke"])
@pytest.mark.parametrize("stream", [True, False])
def test_adapter_reasoning_blocks(threaded: tuple[str, Emulator], api: str, stream: bool) -> None:
    """Converse's ``reasoningContent`` block and InvokeModel's Anthropic ``thinking`` block come ahead of the answer
    block: TTFT stops on the first reasoning delta, every token counts, and the answer text holds no reasoning."""
    url, emulator = threaded
    emulator.config = MockConfiguration(ttft_ms=5, itl_ms=20, output_tokens=6, reasoning_tokens=3)
    provider = _adapter(url, api)
    try:
        record = _chat(provider, stream=stream)
    finally:
        provider.close()
        emulator.config = MockConfiguration(ttft_ms=5, itl_ms=1, output_tokens=8)
    assert record.ok, record.error_message
    assert record.output_tokens == 9
    assert len(record.text.split()) == 6, record.text
    if stream:
        assert len(record.itl_ms) == 8
        # From the first reasoning token, 8 gaps of 20 ms remain to the end; from the first answer token only 5.
        assert record.ttft_ms is not None and record.e2e_ms - record.ttft_ms >= 7 * 20 * 0.9


@pytest.mark.slow
@pytest.mark.parametrize(("api", "route"), [("converse", "converse-stream"), ("invoke", "invoke-with-response-stream")])
def test_locust_bedrock_api_option_picks_the_api(tmp_path: Path, api: str, route: str) -> None:
    """``--bedrock-api`` reaches the adapter through Locust's options: every request lands on that API's route."""
    fake_keys = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    env = locust_env() | fake_keys
    with EmulatorProcess("bedrock", MockConfiguration(ttft_ms=10, itl_ms=1, output_tokens=4)) as emu:
        proc = subprocess.run(
            [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "2", "-r", "2", "-t", "2s", "--provider",
             "bedrock", "--bedrock-api", api, "-H", emu.url, "--run-name", "b", "--report-dir", str(tmp_path),
             "--only-summary"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
        )
        paths = {t["path"] for t in emu.truth()}
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert paths == {f"/model/{MODEL}/{route}"}
    (result,) = json.loads((tmp_path / "b" / "result.json").read_text())["results"]
    assert result["requests_ok"] > 0 and result["requests_failed"] == 0
