"""Executing one scenario request against a provider: build the request, measure it, check its quality."""

from __future__ import annotations

import random

from llmload.metrics import RequestRecord, measure
from llmload.providers.base import Provider
from llmload.quality import check_response, is_judged, wants_answer_kept
from llmload.results import BenchmarkScenario
from llmload.types import ChatRequest, EmbeddingRequest


def execute(
    provider: Provider,
    scenario: BenchmarkScenario,
    model: str,
    rng: random.Random,
    *,
    scheduled_at: float | None = None,
    level: int | None = None,
) -> RequestRecord:
    """Run one request of ``scenario`` and return its measured record (text cleared, quality judged)."""
    prompt = rng.choice(scenario.prompts)
    if scenario.endpoint == "embeddings":
        events = provider.embed(EmbeddingRequest(model=model, inputs=list(scenario.prompts),
                                                 encoding_format=scenario.encoding_format,
                                                 dimensions=scenario.dimensions))
        streamed = False
    else:
        request = ChatRequest(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=scenario.max_tokens,
            stream=scenario.stream,
            temperature=scenario.temperature,
            system=scenario.system,
            tools=list(scenario.tools) or None,
        )
        events = provider.chat(request)
        streamed = scenario.stream
    record = measure(
        events,
        provider=provider.name,
        model=model,
        scenario=scenario.name,
        endpoint=scenario.endpoint,
        streamed=streamed,
        scheduled_at=scheduled_at,
    )
    record.level = level
    if record.ok and is_judged(scenario.checks):
        record.quality_ok = check_response(
            record.text, record.tool_calls, scenario.checks, prompt=prompt, tools=scenario.tools
        )
    if record.ok and wants_answer_kept(scenario.checks):
        record.response_sample = record.text
    record.text = ""
    record.tool_calls = []
    return record
