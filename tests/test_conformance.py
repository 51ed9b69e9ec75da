"""Cross-provider conformance: every registered provider with an emulator, driven through its real SDK over real
sockets, measures the same scenario the same way and fails the same way.

Parametrized over whatever ``PROVIDERS`` registers with an emulator protocol in ``PROTOCOLS``, so a new adapter
(bedrock, openai-fast, ...) is held to the same contract as soon as it is registered. Each check compares the
client's measurement with the emulator's ground truth (``EmulatorProcess.truth()``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import uvloop

from llmload.emulator import PROTOCOLS, EmulatorProcess, MockConfiguration
from llmload.emulator.core import sleep_until
from llmload.metrics import RequestRecord, measure
from llmload.providers import PROVIDERS, Provider, provider_class
from llmload.providers.base import ProviderSettings
from llmload.types import ChatRequest

TTFT_MS = 80.0
ITL_MS = 5.0
OUTPUT_TOKENS = 10
TOLERANCE_MS = 25.0
"""How far the best client TTFT of three may exceed the server's (request transfer plus scheduling)."""

EMULATED = sorted(name for name in PROVIDERS if provider_class(name).emulator_protocol in PROTOCOLS)
TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
FAULT_KINDS = {
    "rate_limited": "rate_limited",
    "overloaded": "overloaded",
    "server_error": "server_error",
    "disconnect": "connection",
    "malformed": "malformed_stream",
    "midstream_error": "server_error",
    "truncate": "truncated_stream",
}
SENDS_RETRY_AFTER = {"openai", "anthropic", "ollama"}
"""Protocols whose 429 carries ``retry-after``; Bedrock's ThrottlingException has none, on AWS or the emulator."""


def test_the_four_wire_protocols_are_covered() -> None:
    assert {"openai", "anthropic", "ollama"} <= set(EMULATED)
    assert {"anthropic", "ollama", "mock"} <= set(PROVIDERS)


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess("all", MockConfiguration(ttft_ms=TTFT_MS, itl_ms=ITL_MS, output_tokens=OUTPUT_TOKENS)) as e:
        yield e


@pytest.fixture(scope="module")
def fault_emulators() -> Iterator[dict[str, EmulatorProcess]]:
    """One always-failing emulator per fault, started on first use and shared by every provider."""
    started: dict[str, EmulatorProcess] = {}
    yield started
    for process in started.values():
        process.stop()


def fault_emulator(cache: dict[str, EmulatorProcess], fault: str) -> EmulatorProcess:
    if fault not in cache:
        config = MockConfiguration(ttft_ms=5, itl_ms=1, output_tokens=8, error_rate=1.0, fault_weights={fault: 1.0},
                                   retry_after_s=3)
        cache[fault] = EmulatorProcess("all", config).start()
    return cache[fault]


def adapter(name: str, emulator: EmulatorProcess) -> Provider:
    cls = provider_class(name)
    return cls(ProviderSettings(base_url=cls.emulator_base_url(emulator.url), emulated=True, timeout_s=10))


def run(provider: Provider, *, stream: bool = True, tools: bool = False) -> RequestRecord:
    request = ChatRequest(model="conformance-model", messages=[{"role": "user", "content": "Tell me a story"}],
                          max_tokens=64, stream=stream, tools=TOOLS if tools else None)
    return measure(provider.chat(request), provider=provider.name, model=request.model, scenario="conformance",
                   endpoint="chat", streamed=stream)


def warm_runs(name: str, emulator: EmulatorProcess, **kwargs: bool) -> list[tuple[RequestRecord, dict]]:
    """Three measured calls, each with the emulator's truth for it, after one warm-up call that pays connection
    setup and the SDK's lazy imports (real costs, but not what these checks compare)."""
    provider = adapter(name, emulator)
    try:
        run(provider, **kwargs)
        return [(run(provider, **kwargs), last_truth(emulator, name)) for _ in range(3)]
    finally:
        provider.close()


def last_truth(emulator: EmulatorProcess, name: str) -> dict:
    protocol = provider_class(name).emulator_protocol
    return [t for t in emulator.truth() if t["protocol"] == protocol][-1]


def since_received_ms(truth: dict, key: str) -> float:
    return (truth[key] - truth["received_at"]) * 1000


def assert_ttft_matches_truth(pairs: list[tuple[RequestRecord, dict]]) -> None:
    """The client starts its clock before the server receives the request, so its TTFT is never below the
    server's; CPU contention only ever adds to the excess, so the best of three must be within the tolerance."""
    excess = []
    for record, truth in pairs:
        server_ttft_ms = since_received_ms(truth, "first_content_at")
        assert record.ttft_ms is not None and record.ttft_ms >= TTFT_MS
        assert record.ttft_ms >= server_ttft_ms - 1
        excess.append(record.ttft_ms - server_ttft_ms)
    assert min(excess) <= TOLERANCE_MS, f"client TTFT exceeds the server's by {sorted(excess)} ms"


REASONING_TOKENS = 4
REASONING_ITL_MS = 15.0
"""Long enough gaps that a TTFT taken at the first answer token instead would miss the tolerance (4 × 15 ms)."""
REPORTS_REASONING_USAGE = {"openai", "openai-fast"}
"""Adapters whose protocol reports reasoning tokens separately (``completion_tokens_details.reasoning_tokens``)."""


@pytest.fixture(scope="module")
def reasoning_emu() -> Iterator[EmulatorProcess]:
    config = MockConfiguration(ttft_ms=TTFT_MS, itl_ms=REASONING_ITL_MS, output_tokens=OUTPUT_TOKENS,
                               reasoning_tokens=REASONING_TOKENS)
    with EmulatorProcess("all", config) as e:
        yield e


@pytest.mark.parametrize("name", EMULATED)
def test_reasoning_deltas_start_ttft_and_count_as_output(name: str, reasoning_emu: EmulatorProcess) -> None:
    """A reasoning model streams its thinking first (OpenAI-compatible ``reasoning_content``, Anthropic
    ``thinking_delta``, Bedrock ``reasoningContent``, Ollama ``thinking``): TTFT stops on the first reasoning delta,
    every token is output and has its gap, and the answer text holds no reasoning."""
    pairs = warm_runs(name, reasoning_emu)
    total = OUTPUT_TOKENS + REASONING_TOKENS
    for record, truth in pairs:
        assert record.ok, record.error_message
        assert record.output_tokens == truth["tokens_sent"] == total
        assert len(record.itl_ms) == total - 1
        assert len(record.text.split()) == OUTPUT_TOKENS, record.text
        if name in REPORTS_REASONING_USAGE:
            assert record.reasoning_tokens == REASONING_TOKENS
    assert_ttft_matches_truth(pairs)


@pytest.mark.parametrize("name", EMULATED)
def test_non_streamed_reasoning_stays_out_of_the_answer(name: str, reasoning_emu: EmulatorProcess) -> None:
    provider = adapter(name, reasoning_emu)
    try:
        record = run(provider, stream=False)
    finally:
        provider.close()
    assert record.ok, record.error_message
    assert record.output_tokens == OUTPUT_TOKENS + REASONING_TOKENS
    assert len(record.text.split()) == OUTPUT_TOKENS, record.text


@pytest.mark.parametrize("name", EMULATED)
def test_streamed_requests_reuse_one_kept_alive_connection(name: str, emu: EmulatorProcess) -> None:
    """A finished stream returns its connection to the pool: no per-request TCP/TLS setup inside the next TTFT
    (the sync openai SDK alone would reconnect for every stream; see llmload/providers/transport.py)."""
    pairs = warm_runs(name, emu)
    assert all(record.ok for record, _ in pairs)
    ports = {truth["client_port"] for _, truth in pairs}
    assert len(ports) == 1 and None not in ports, f"{name}: streamed requests came from ports {sorted(ports)}"


@pytest.mark.parametrize("name", EMULATED)
def test_streamed_ttft_and_usage_match_ground_truth(name: str, emu: EmulatorProcess) -> None:
    pairs = warm_runs(name, emu)
    for record, truth in pairs:
        assert record.ok, record.error_message
        assert record.output_tokens == truth["tokens_sent"] == OUTPUT_TOKENS
        assert not record.output_tokens_estimated and record.input_tokens > 0
        assert len(record.itl_ms) == OUTPUT_TOKENS - 1
        # e2e ends at the terminal event, which follows the last token.
        assert record.e2e_ms >= since_received_ms(truth, "last_content_at") - 1
    assert_ttft_matches_truth(pairs)


@pytest.mark.parametrize("name", EMULATED)
def test_non_streamed_chat_reports_usage_and_no_ttft(name: str, emu: EmulatorProcess) -> None:
    for record, truth in warm_runs(name, emu, stream=False):
        assert record.ok, record.error_message
        assert record.ttft_ms is None and not truth["stream"]
        assert record.output_tokens == truth["tokens_sent"] == OUTPUT_TOKENS
        assert record.e2e_ms >= TTFT_MS + ITL_MS * (OUTPUT_TOKENS - 1)
        assert len(record.text.split()) == OUTPUT_TOKENS


@pytest.mark.parametrize("name", EMULATED)
def test_tool_call_ttft_starts_on_first_argument_delta(name: str, emu: EmulatorProcess) -> None:
    pairs = warm_runs(name, emu, tools=True)
    for record, _ in pairs:
        assert record.ok, record.error_message
        (call,) = record.tool_calls
        assert call["name"] == "get_weather" and set(json.loads(call["arguments"])) == {"city", "unit"}
    assert_ttft_matches_truth(pairs)


@pytest.mark.parametrize("fault", sorted(FAULT_KINDS))
@pytest.mark.parametrize("name", EMULATED)
def test_faults_map_to_the_same_error_kind(name: str, fault: str, fault_emulators: dict[str, EmulatorProcess]) -> None:
    emulator = fault_emulator(fault_emulators, fault)
    provider = adapter(name, emulator)
    try:
        record = run(provider)
    finally:
        provider.close()
    assert not record.ok, f"{fault} was measured as a success"
    assert record.error_kind == FAULT_KINDS[fault], record.error_message
    if fault == "rate_limited":
        sends = provider_class(name).emulator_protocol in SENDS_RETRY_AFTER
        assert record.retry_after_s == (3.0 if sends else None)


def test_emulator_pacing_never_sends_a_token_early() -> None:
    """The emulator runs on uvloop, whose timers fire up to ~0.4 ms early; its pacing must still never wake
    before a token's due time, or a client would measure a TTFT below the configured one."""
    async def earliest_margin_s() -> float:
        margins = []
        for i in range(200):
            due = time.perf_counter() + 0.002 + (i % 7) * 0.00037
            await sleep_until(due)
            margins.append(time.perf_counter() - due)
        return min(margins)

    assert uvloop.run(earliest_margin_s()) >= 0
