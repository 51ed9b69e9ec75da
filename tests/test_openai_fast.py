"""The raw-SSE fast path (``--provider openai-fast``) against the OpenAI emulator: the SDK path's conformance checks."""

from __future__ import annotations

import random

import pytest

from llmload.config import load_scenarios
from llmload.emulator import EmulatorProcess, MockConfiguration
from llmload.providers import provider_class
from llmload.providers.base import ProviderSettings
from llmload.providers.openai import OpenAIProvider
from llmload.providers.openai_fast import OpenAIFastProvider
from llmload.workload import execute

SCENARIOS = load_scenarios()


def provider(emu: EmulatorProcess) -> OpenAIFastProvider:
    return OpenAIFastProvider(ProviderSettings(base_url=f"{emu.url}/v1", emulated=True, timeout_s=10))


def test_registered_under_its_cli_name() -> None:
    assert provider_class("openai-fast") is OpenAIFastProvider


def test_streamed_chat_measures_ttft_and_usage_against_truth(emulator: EmulatorProcess) -> None:
    fast = provider(emulator)
    excess_ms = []
    for _ in range(3):
        emulator.reset()
        rec = execute(fast, SCENARIOS["complex_query"], "gpt-test", random.Random(0))
        truth = emulator.truth()[-1]
        assert rec.ok, rec.error_message
        assert rec.output_tokens == truth["tokens_sent"] == 12 and not rec.output_tokens_estimated
        assert rec.input_tokens == truth["input_tokens"] and rec.finish_reason == "stop"
        assert len(rec.itl_ms) == 11
        server_ttft_ms = (truth["first_content_at"] - truth["received_at"]) * 1000
        # The client pays connect + send before the server sees the request, so it is never meaningfully below the
        # server's TTFT; the 5 ms allow for the emulator stamping first_content_at after its write returns (a busy
        # emulator process can be preempted in between while this client already reads the chunk).
        assert rec.ttft_ms is not None and server_ttft_ms <= rec.ttft_ms + 5
        excess_ms.append(rec.ttft_ms - server_ttft_ms)
    # The best of three survives a busy shared machine; a systematic offset (a clock started early) would not.
    assert min(excess_ms) < 50


def test_same_records_as_the_sdk_path(emulator: EmulatorProcess) -> None:
    """Identical metric semantics: token counts, finish reasons, tool calls and gap counts match the SDK adapter."""
    sdk = OpenAIProvider(ProviderSettings(base_url=f"{emulator.url}/v1", emulated=True, timeout_s=10))
    fast = provider(emulator)
    for name in ("complex_query", "tool_calling", "quality_check", "simple_query_blocking"):
        a = execute(sdk, SCENARIOS[name], "m", random.Random(1))
        b = execute(fast, SCENARIOS[name], "m", random.Random(1))
        assert a.ok and b.ok, (name, a.error_message, b.error_message)
        assert (a.output_tokens, a.input_tokens, a.finish_reason, a.quality_ok, len(a.itl_ms)) == (
            b.output_tokens, b.input_tokens, b.finish_reason, b.quality_ok, len(b.itl_ms)), name
        assert (a.ttft_ms is None) == (b.ttft_ms is None), name
        assert a.tool_calls == b.tool_calls, name


def test_embeddings(emulator: EmulatorProcess) -> None:
    rec = execute(provider(emulator), SCENARIOS["embedding_generation"], "m", random.Random(0))
    assert rec.ok, rec.error_message
    assert rec.input_tokens > 0 and rec.endpoint == "embeddings"


def test_connection_is_reused_after_a_complete_stream(emulator: EmulatorProcess) -> None:
    fast = provider(emulator)
    records = [execute(fast, SCENARIOS["complex_query"], "m", random.Random(i)) for i in range(5)]
    assert all(r.ok for r in records)
    assert fast.client._connection_pool._socket_queue.qsize() == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "kind", "status"),
    [
        ("rate_limited", "rate_limited", 429),
        ("server_error", "server_error", 500),
        ("overloaded", "overloaded", 503),
        ("truncate", "truncated_stream", None),
        ("midstream_error", "server_error", None),
        ("midstream_overloaded", "overloaded", None),
        ("malformed", "malformed_stream", None),
        ("disconnect", "connection", None),
    ],
)
def test_faults_map_to_error_kinds(fault: str, kind: str, status: int | None) -> None:
    config = MockConfiguration(ttft_ms=5, itl_ms=1, output_tokens=8, error_rate=1.0, fault_weights={fault: 1.0},
                               retry_after_s=3)
    with EmulatorProcess("openai", config) as emu:
        fast = provider(emu)
        rec, again = (execute(fast, SCENARIOS["simple_query"], "m", random.Random(0)) for _ in range(2))
    # The second request on the same pool fails the same way: a broken stream left no stray bytes behind.
    assert again.error_kind == kind
    assert not rec.ok
    assert rec.error_kind == kind
    assert rec.status_code == status
    if fault == "rate_limited":
        assert rec.retry_after_s == 3.0
