"""metrics.measure: the metric definitions, on hand-built event sequences with known timing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from llmload.errors import ErrorKind, RequestError
from llmload.metrics import measure
from llmload.types import ContentDelta, StreamEnd, StreamEvent, UsageReport


def timed(events: list[tuple[float, StreamEvent]]) -> Iterator[StreamEvent]:
    for delay_s, event in events:
        time.sleep(delay_s)
        yield event


def run(events: list[tuple[float, StreamEvent]], streamed: bool = True):
    return measure(timed(events), provider="p", model="m", scenario="s", endpoint="chat", streamed=streamed)


def test_ttft_skips_empty_chunks_and_itl_counts_content_gaps() -> None:
    rec = run(
        [
            (0.0, ContentDelta("")),  # role-only chunk
            (0.05, ContentDelta("Hello")),
            (0.02, ContentDelta(" world")),
            (0.0, UsageReport(input_tokens=9, output_tokens=2)),
            (0.0, StreamEnd("stop")),
        ]
    )
    assert rec.ok
    assert rec.ttft_ms == pytest.approx(50, abs=15)
    assert len(rec.itl_ms) == 1 and rec.itl_ms[0] == pytest.approx(20, abs=15)
    assert rec.output_tokens == 2 and not rec.output_tokens_estimated
    assert rec.input_tokens == 9
    assert rec.tpot_ms == pytest.approx((rec.e2e_ms - rec.ttft_ms) / 1)


def test_tool_arguments_and_reasoning_start_ttft() -> None:
    rec = run([(0.03, ContentDelta('{"city"', "tool_args")), (0.0, StreamEnd("tool_calls"))])
    assert rec.ttft_ms is not None and rec.ttft_ms >= 25
    rec = run([(0.03, ContentDelta("thinking", "reasoning")), (0.0, StreamEnd("stop"))])
    assert rec.ttft_ms is not None and rec.ttft_ms >= 25


def test_missing_terminal_event_is_truncated_not_success() -> None:
    rec = run([(0.0, ContentDelta("Hello"))])
    assert not rec.ok and rec.error_kind == ErrorKind.TRUNCATED_STREAM


def test_estimates_tokens_without_usage() -> None:
    rec = run([(0.0, ContentDelta("abcdefgh" * 4)), (0.0, StreamEnd("stop"))])
    assert rec.output_tokens == 8 and rec.output_tokens_estimated


def test_later_usage_overrides_earlier_fields() -> None:
    rec = run(
        [
            (0.0, UsageReport(input_tokens=9, output_tokens=1)),
            (0.0, ContentDelta("x")),
            (0.0, UsageReport(output_tokens=5)),
            (0.0, StreamEnd("stop")),
        ]
    )
    assert (rec.input_tokens, rec.output_tokens) == (9, 5)


def test_errors_are_recorded_with_kind_and_retry_after() -> None:
    def failing() -> Iterator[StreamEvent]:
        yield ContentDelta("partial")
        raise RequestError(ErrorKind.RATE_LIMITED, "slow down", status_code=429, retry_after_s=2.0)

    rec = measure(failing(), provider="p", model="m", scenario="s", endpoint="chat", streamed=True)
    assert not rec.ok
    assert (rec.error_kind, rec.status_code, rec.retry_after_s) == ("rate_limited", 429, 2.0)


def test_non_streamed_calls_have_no_ttft() -> None:
    rec = run([(0.01, ContentDelta("answer")), (0.0, StreamEnd("stop"))], streamed=False)
    assert rec.ok and rec.ttft_ms is None and rec.itl_ms == []


def test_schedule_lag_counts_from_the_scheduled_time() -> None:
    scheduled = time.perf_counter() - 0.05
    rec = measure(
        timed([(0.0, ContentDelta("x")), (0.0, StreamEnd("stop"))]),
        provider="p", model="m", scenario="s", endpoint="chat", streamed=True, scheduled_at=scheduled,
    )
    assert rec.schedule_lag_ms is not None and rec.schedule_lag_ms >= 49
    assert rec.e2e_from_schedule_ms is not None and rec.e2e_from_schedule_ms >= rec.e2e_ms + 49
