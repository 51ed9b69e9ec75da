"""The OpenAI adapter on the real openai SDK against the OpenAI emulator, over real sockets."""

from __future__ import annotations

import json
import random
import urllib.request

import openai
import pytest

from llmload.config import load_scenarios
from llmload.emulator import EmulatorProcess, MockConfiguration
from llmload.providers.base import ProviderSettings
from llmload.providers.openai import OpenAIProvider
from llmload.workload import execute

SCENARIOS = load_scenarios()


def provider(emu: EmulatorProcess) -> OpenAIProvider:
    return OpenAIProvider(ProviderSettings(base_url=f"{emu.url}/v1", emulated=True, timeout_s=10))


def test_stream_bytes_follow_the_protocol(emulator: EmulatorProcess) -> None:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}],
            "stream_options": {"include_usage": True}}
    req = urllib.request.Request(f"{emulator.url}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["transfer-encoding"] == "chunked"
        frames = [f for f in resp.read().decode().split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert len(chunks) == 12 + 3


def test_streamed_chat_measures_ttft_and_usage_against_truth(emulator: EmulatorProcess) -> None:
    emulator.reset()
    rec = execute(provider(emulator), SCENARIOS["complex_query"], "gpt-test", random.Random(0))
    truth = emulator.truth()[-1]
    assert rec.ok, rec.error_message
    assert rec.output_tokens == truth["tokens_sent"] == 12 and not rec.output_tokens_estimated
    assert rec.input_tokens > 0 and rec.finish_reason == "stop"
    server_ttft_ms = (truth["first_content_at"] - truth["received_at"]) * 1000
    assert rec.ttft_ms is not None and server_ttft_ms <= rec.ttft_ms + 1 and rec.ttft_ms < server_ttft_ms + 50
    assert len(rec.itl_ms) == 11


def test_non_streamed_chat(emulator: EmulatorProcess) -> None:
    rec = execute(provider(emulator), SCENARIOS["simple_query_blocking"], "m", random.Random(0))
    assert rec.ok and rec.ttft_ms is None and rec.output_tokens >= 1 and rec.e2e_ms >= 50


def test_tool_call_ttft_starts_on_first_argument_delta(emulator: EmulatorProcess) -> None:
    rec = execute(provider(emulator), SCENARIOS["tool_calling"], "m", random.Random(0))
    assert rec.ok, rec.error_message
    assert rec.finish_reason == "tool_calls" and rec.quality_ok is True
    assert rec.ttft_ms is not None and rec.ttft_ms >= 49


def test_quality_checks_use_known_answers(emulator: EmulatorProcess) -> None:
    rec = execute(provider(emulator), SCENARIOS["quality_check"], "m", random.Random(0))
    assert rec.ok and rec.quality_ok is True


@pytest.mark.parametrize(
    ("fault", "kind", "status"),
    [
        ("rate_limited", "rate_limited", 429),
        ("server_error", "server_error", 500),
        ("overloaded", "overloaded", 503),
        ("truncate", "truncated_stream", None),
        ("midstream_error", "server_error", None),
        ("midstream_overloaded", "overloaded", None),
        ("disconnect", "connection", None),
    ],
)
def test_faults_map_to_error_kinds(fault: str, kind: str, status: int | None) -> None:
    config = MockConfiguration(ttft_ms=5, itl_ms=1, output_tokens=8, error_rate=1.0, fault_weights={fault: 1.0},
                               retry_after_s=3)
    with EmulatorProcess("openai", config) as emu:
        rec = execute(provider(emu), SCENARIOS["simple_query"], "m", random.Random(0))
    assert not rec.ok
    assert rec.error_kind == kind
    assert rec.status_code == status
    if fault == "rate_limited":
        assert rec.retry_after_s == 3.0


def test_sdk_retries_are_off(emulator: EmulatorProcess) -> None:
    assert provider(emulator).client.max_retries == 0


def test_models_endpoint(emulator: EmulatorProcess) -> None:
    client = openai.OpenAI(base_url=f"{emulator.url}/v1", api_key="x", max_retries=0)
    assert [m.id for m in client.models.list()] == ["emulated-model"]
