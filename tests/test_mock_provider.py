"""The in-process mock provider: pacing with real gevent sleeps, error injection, its concurrency limit, and a
headless Locust run with ``--provider mock`` and one with ``--provider anthropic`` against the embedded emulator."""

from __future__ import annotations

import json
import subprocess

import gevent
import pytest

from llmload.emulator import MockConfiguration
from llmload.metrics import RequestRecord, clock, measure
from llmload.providers.base import ProviderSettings
from llmload.providers.mock import MockProvider
from llmload.types import ChatRequest, ContentDelta, EmbeddingRequest
from tests.conftest import LOCUST, REPO, locust_env

TOOLS = [{"name": "get_weather", "parameters": {"type": "object"}}]


def mock(**config: object) -> MockProvider:
    return MockProvider(ProviderSettings(extra={"mock_config": MockConfiguration(**config)}))  # type: ignore[arg-type]


def chat(provider: MockProvider, *, stream: bool = True, tools: bool = False) -> RequestRecord:
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=64, stream=stream,
                          tools=TOOLS if tools else None)
    return measure(provider.chat(request), provider="mock", model="m", scenario="s", endpoint="chat", streamed=stream)


def test_stream_is_paced_by_the_configuration() -> None:
    record = chat(mock(ttft_ms=40, itl_ms=10, output_tokens=6))
    assert record.ok and record.output_tokens == 6 and not record.output_tokens_estimated
    assert record.ttft_ms is not None and 40 <= record.ttft_ms < 40 + 30
    # Token deadlines are absolute, so a late first token shortens the next gap: check the span, not each gap.
    assert len(record.itl_ms) == 5 and record.e2e_ms >= 40 + 50 and sum(record.itl_ms) < 50 + 40
    assert record.finish_reason == "stop"


def test_max_tokens_caps_the_answer() -> None:
    provider = mock(ttft_ms=1, itl_ms=0, output_tokens=100)
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=7)
    record = measure(provider.chat(request), provider="mock", model="m", scenario="s", endpoint="chat", streamed=True)
    assert record.output_tokens == 7 and record.finish_reason == "length"


def test_non_streamed_and_tool_calls() -> None:
    provider = mock(ttft_ms=20, itl_ms=2, output_tokens=5)
    blocking = chat(provider, stream=False)
    assert blocking.ok and blocking.ttft_ms is None and blocking.e2e_ms >= 28 and blocking.output_tokens == 5
    tool = chat(provider, tools=True)
    (call,) = tool.tool_calls
    assert tool.ok and tool.finish_reason == "tool_calls" and set(json.loads(call["arguments"])) == {"city", "unit"}
    assert tool.ttft_ms is not None and tool.ttft_ms >= 20


@pytest.mark.parametrize("stream", [True, False])
def test_reasoning_tokens_come_first_and_stay_out_of_the_answer(stream: bool) -> None:
    provider = mock(ttft_ms=30, itl_ms=10, output_tokens=4, reasoning_tokens=3)
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=64, stream=stream)
    kinds = [e.kind for e in provider.chat(request) if isinstance(e, ContentDelta)]
    assert kinds == (["reasoning"] * 3 + ["text"] * 4 if stream else ["reasoning", "text"])
    record = chat(provider, stream=stream)
    assert record.ok and record.output_tokens == 7 and record.reasoning_tokens == 3
    assert len(record.text.split()) == 4, record.text
    if stream:
        assert record.ttft_ms is not None and 30 <= record.ttft_ms < 30 + 30 and len(record.itl_ms) == 6


def test_embeddings() -> None:
    provider = mock(ttft_ms=10)
    record = measure(provider.embed(EmbeddingRequest(model="e", inputs=["a", "b"])), provider="mock", model="e",
                     scenario="s", endpoint="embeddings", streamed=False)
    assert record.ok and record.e2e_ms >= 10 and record.input_tokens > 0


@pytest.mark.parametrize(
    ("fault", "kind", "status"),
    [
        ("rate_limited", "rate_limited", 429),
        ("overloaded", "overloaded", 503),
        ("server_error", "server_error", 500),
        ("disconnect", "connection", None),
        ("malformed", "malformed_stream", None),
        ("midstream_error", "server_error", None),
        ("midstream_overloaded", "overloaded", None),
        ("truncate", "truncated_stream", None),
    ],
)
def test_faults_raise_the_adapters_error_kinds(fault: str, kind: str, status: int | None) -> None:
    record = chat(mock(ttft_ms=1, itl_ms=1, output_tokens=6, error_rate=1.0, fault_weights={fault: 1.0},
                       retry_after_s=2))
    assert not record.ok and record.error_kind == kind and record.status_code == status
    assert record.retry_after_s == (2.0 if fault == "rate_limited" else None)


def test_stall_delays_but_completes() -> None:
    record = chat(mock(ttft_ms=1, itl_ms=1, output_tokens=6, error_rate=1.0, fault_weights={"stall": 1.0},
                       stall_ms=60))
    assert record.ok and record.e2e_ms >= 60 + 1 + 5


def test_error_rate_is_a_probability() -> None:
    provider = mock(ttft_ms=0, itl_ms=0, output_tokens=2, error_rate=0.3, seed=7)
    failed = sum(not chat(provider).ok for _ in range(400))
    assert 80 <= failed <= 160


def first_content_after(provider: MockProvider, start: float) -> float:
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    for event in provider.chat(request):
        if isinstance(event, ContentDelta):
            first = (clock() - start) * 1000
    return first


def test_concurrency_limit_queues_requests() -> None:
    # Timed here rather than with measure(): without Locust's monkey-patching, greenlets share its thread-local.
    provider = mock(ttft_ms=50, itl_ms=0, output_tokens=1, concurrency_limit=1)
    start = clock()
    jobs = [gevent.spawn(first_content_after, provider, start) for _ in range(3)]
    gevent.joinall(jobs, timeout=10, raise_error=True)
    ttfts = sorted(job.value for job in jobs)
    # One slot: the second request waits for the first (~50 ms), the third for both.
    assert ttfts[0] >= 50 and ttfts[1] >= 100 and ttfts[2] >= 150


def test_configuration_may_come_as_a_dict() -> None:
    provider = MockProvider(ProviderSettings(extra={"mock_config": {"ttft_ms": 5, "output_tokens": 3}}))
    assert provider.config.output_tokens == 3 and chat(provider).output_tokens == 3


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["mock", "anthropic"])
def test_headless_locust_run(provider: str, tmp_path) -> None:
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "4", "-r", "4", "-t", "4s", "--provider", provider,
         "--emulator-ttft-ms", "50", "--emulator-itl-ms", "5", "--emulator-output-tokens", "16",
         "--run-name", "smoke", "--report-dir", str(tmp_path), "--only-summary"],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "smoke" / "result.json").read_text())
    assert data["results"] and all(r["provider"] == provider for r in data["results"])
    ok = sum(r["requests_ok"] for r in data["results"])
    assert ok >= 20 and sum(r["requests_failed"] for r in data["results"]) == 0
    # Known questions get short true answers (the quality hook); every other answer is the configured 16 tokens.
    assert ok <= sum(r["tokens"]["output_tokens"] for r in data["results"]) <= 16 * ok
    assert all(r["ttft"]["p50"] >= 50 for r in data["results"] if r.get("ttft"))
