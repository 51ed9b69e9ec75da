"""The Anthropic and Ollama emulators' wire bytes, and the parts of their SDKs' contracts the conformance suite
does not reach (auth headers, required headers, Ollama's extra endpoints and defaults)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import anthropic
import ollama
import pytest

from llmload.emulator import EmulatorProcess, MockConfiguration


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "k"}
MESSAGE = {"model": "claude-test", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


def test_anthropic_stream_has_the_golden_event_sequence(emulator: EmulatorProcess) -> None:
    status, headers, text = post(f"{emulator.url}/v1/messages", MESSAGE | {"stream": True}, ANTHROPIC_HEADERS)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    frames = [f for f in text.split("\n\n") if f]
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert names == ["message_start", "content_block_start", "ping", *["content_block_delta"] * 12,
                     "content_block_stop", "message_delta", "message_stop"]
    data = [json.loads(f.split("\n")[1].removeprefix("data: ")) for f in frames]
    assert all(d["type"] == n for d, n in zip(data, names, strict=True))
    assert data[0]["message"]["usage"]["input_tokens"] > 0
    assert data[3]["delta"]["type"] == "text_delta"
    assert data[-2]["usage"] == {"output_tokens": 12} and data[-2]["delta"]["stop_reason"] == "end_turn"


@pytest.mark.parametrize(
    ("headers", "status", "err_type"),
    [
        ({"x-api-key": "k"}, 400, "invalid_request_error"),
        ({"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ({"anthropic-version": "2023-06-01", "authorization": "Bearer k"}, 200, None),
        (ANTHROPIC_HEADERS, 200, None),
    ],
)
def test_anthropic_requires_version_and_accepts_either_key_header(
    emulator: EmulatorProcess, headers: dict[str, str], status: int, err_type: str | None
) -> None:
    got_status, _, text = post(f"{emulator.url}/v1/messages", MESSAGE, headers)
    assert got_status == status
    body = json.loads(text)
    if err_type:
        assert body["type"] == "error" and body["error"]["type"] == err_type
    else:
        assert body["content"][0]["type"] == "text" and body["usage"]["output_tokens"] == 12


def test_anthropic_sdk_stream_helper_rebuilds_text_and_tool_use(emulator: EmulatorProcess) -> None:
    client = anthropic.Anthropic(base_url=emulator.url, api_key="k", max_retries=0)
    with client.messages.stream(**MESSAGE) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 12
    assert len(message.content[0].text.split()) == 12
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    with client.messages.stream(**MESSAGE, tools=tools) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use" and set(message.content[0].input) == {"city", "unit"}
    client.close()


def test_anthropic_overload_is_529_overloaded_error() -> None:
    config = MockConfiguration(error_rate=1.0, fault_weights={"overloaded": 1.0})
    with EmulatorProcess("anthropic", config) as emu:
        client = anthropic.Anthropic(base_url=emu.url, api_key="k", max_retries=0)
        with pytest.raises(anthropic.OverloadedError) as err:
            client.messages.create(**MESSAGE)
        client.close()
    assert err.value.status_code == 529 and err.value.body["error"]["type"] == "overloaded_error"


def test_ollama_streams_ndjson_by_default(emulator: EmulatorProcess) -> None:
    status, headers, text = post(f"{emulator.url}/api/chat",
                                 {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 13 and not any(line["done"] for line in lines[:-1])
    final = lines[-1]
    assert final["done"] and final["done_reason"] == "stop" and final["eval_count"] == 12
    assert final["prompt_eval_count"] > 0
    assert all(isinstance(final[k], int) for k in ("total_duration", "eval_duration", "prompt_eval_duration"))
    # Nanoseconds: the whole generation took at least the configured 50 ms TTFT.
    assert final["total_duration"] >= 50_000_000


def test_ollama_generate_stream_false_is_one_object(emulator: EmulatorProcess) -> None:
    status, _, text = post(f"{emulator.url}/api/generate", {"model": "m", "prompt": "hi", "stream": False})
    body = json.loads(text)
    assert status == 200 and body["done"] and len(body["response"].split()) == 12 and body["context"]


def test_ollama_client_endpoints(emulator: EmulatorProcess) -> None:
    client = ollama.Client(host=emulator.url, timeout=10)
    assert [m.model for m in client.list().models] == ["emulated-model:latest"]
    embedded = client.embed(model="e", input=["a", "b", "a"])
    assert len(embedded.embeddings) == 3 and embedded.embeddings[0] == embedded.embeddings[2]
    assert embedded.embeddings[0] != embedded.embeddings[1]
    assert len(client.embeddings(model="e", prompt="a").embedding) == 256
    parts = list(client.generate(model="m", prompt="hi", stream=True))
    assert parts[-1].done and parts[-1].eval_count == 12
    client.close()
    with urllib.request.urlopen(f"{emulator.url}/", timeout=10) as resp:
        assert resp.read() == b"Ollama is running"
    with urllib.request.urlopen(f"{emulator.url}/api/version", timeout=10) as resp:
        assert json.loads(resp.read())["version"]


def test_ollama_busy_is_503_response_error() -> None:
    config = MockConfiguration(error_rate=1.0, fault_weights={"overloaded": 1.0})
    with EmulatorProcess("ollama", config) as emu:
        client = ollama.Client(host=emu.url, timeout=10)
        with pytest.raises(ollama.ResponseError) as err:
            list(client.chat(model="m", messages=[{"role": "user", "content": "hi"}], stream=True))
        client.close()
    assert err.value.status_code == 503 and "server busy" in err.value.error


def test_ollama_needs_no_key_only_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmload.providers.ollama import OllamaProvider

    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert not OllamaProvider.has_credentials()
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:11434")
    assert OllamaProvider.has_credentials()
