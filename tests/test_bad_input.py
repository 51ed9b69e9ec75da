"""Bad input ends a run with one line naming what to fix and exit code 2, never a traceback (unless asked).

Also property-based checks: config loading either yields scenarios or raises ConfigError, and the data-model
validators accept valid values and reject invalid ones with ValidationError.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llmload.config import load_scenarios
from llmload.errors import ConfigError, ValidationError
from llmload.results import BenchmarkResult, LatencyMetrics, TokenUsage
from tests.conftest import LOCUST, REPO, locust_env

BROKEN_YAML = "scenarios:\n  a: {prompts: [unclosed\n"

BAD_RUNS: dict[str, tuple[list[str], str]] = {
    "unknown_provider": (["--provider", "nosuch"], "unknown provider 'nosuch'"),
    "unknown_scenario": (["--scenario", "nosuch"], "unknown scenario 'nosuch'"),
    "broken_yaml": (["--scenarios-file", "{broken}"], "broken YAML"),
    "missing_file": (["--scenarios-file", "/nonexistent/scenarios.yaml"], "file not found"),
    "bad_url": (["--host", "not-a-url"], "must be an http(s) URL"),
    "negative_think_time": (["--think-time", "-1"], "--think-time must be >= 0"),
    "error_rate_out_of_range": (["--emulator-error-rate", "2"], "error-rate must be within [0, 1]"),
    "unknown_fault": (["--emulator-faults", "gremlins=1"], "unknown emulator fault 'gremlins'"),
    "bad_outage": (["--emulator-outage", "10,5"], "--emulator-outage"),
    "missing_credentials": (["--emulator", "never"], "set OPENAI_API_KEY"),
}


@pytest.mark.slow
def test_bad_runs_fail_with_one_line_and_exit_code_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN_YAML)
    procs = {}
    # All at once: each locust start costs a couple of seconds of imports.
    for name, (args, _) in BAD_RUNS.items():
        args = [a.replace("{broken}", str(broken)) for a in args]
        procs[name] = subprocess.Popen(
            [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "1", "-r", "1", "-t", "2s",
             "--report-dir", str(tmp_path / name), "--only-summary", *args],
            cwd=REPO, env=locust_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=90)
        expected = BAD_RUNS[name][1]
        assert proc.returncode == 2, f"{name}: exit {proc.returncode}\n{stderr[-2000:]}"
        assert "Traceback" not in stderr + stdout, f"{name}:\n{stderr[-2000:]}"
        errors = [line for line in stderr.splitlines() if "ERROR" in line]
        assert len(errors) == 1 and expected in errors[0], f"{name}: {errors}"
        assert not (tmp_path / name).exists(), f"{name}: a failed start wrote results"


@pytest.mark.slow
def test_debug_flag_shows_the_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "1", "-r", "1", "-t", "2s", "--provider", "nosuch",
         "--llmload-debug", "--report-dir", str(tmp_path)],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "unknown provider 'nosuch'" in proc.stderr


# --- property-based: config loading ------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 500), st.floats(allow_nan=True), st.text(max_size=12),
)
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_field_names = st.sampled_from(
    ["endpoint", "prompts", "max_tokens", "temperature", "stream", "weight", "system", "tools", "checks",
     "description", "bogus"]
)
_scenario = st.dictionaries(_field_names, _values, max_size=5)
_documents = st.one_of(
    _values,
    st.fixed_dictionaries({"scenarios": st.dictionaries(st.text(min_size=1, max_size=10), _scenario, max_size=3)}),
    st.fixed_dictionaries({"scenarios": _values}),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_documents)
def test_generated_yaml_loads_or_raises_config_error(tmp_path: Path, document: object) -> None:
    path = tmp_path / "scenarios.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        scenarios = load_scenarios(path)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    assert isinstance(scenarios, dict)
    for scenario in scenarios.values():
        assert scenario.max_tokens > 0 and scenario.weight > 0 and scenario.prompts


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text_loads_or_raises_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "scenarios.yaml"
    path.write_text(text)
    try:
        load_scenarios(path)
    except ConfigError:
        pass


# --- property-based: data-model validators ------------------------------------------------------------------

_latency = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(values=st.lists(_latency, min_size=7, max_size=7))
def test_ordered_latency_metrics_are_accepted(values: list[float]) -> None:
    low, p50, p95, p99, high, mean_raw, stddev = values
    low, p50, p95, p99, high = sorted([low, p50, p95, p99, high])
    mean = min(max(mean_raw, low), high)
    metric = LatencyMetrics(count=1, p50=p50, p95=p95, p99=p99, mean=mean, min=low, max=high, stddev=stddev)
    assert metric.p50 <= metric.p95 <= metric.p99


@given(values=st.lists(_latency, min_size=3, max_size=3, unique=True))
def test_unordered_percentiles_are_rejected(values: list[float]) -> None:
    low, mid, high = sorted(values)
    # The validator forgives float noise (1e-9 ms); an out-of-order gap larger than that must be caught.
    assume(high - low > 1e-6)
    with pytest.raises(ValidationError, match="P50 <= P95 <= P99"):
        LatencyMetrics(count=1, p50=high, p95=mid, p99=low, mean=mid, min=0, max=high, stddev=0)


@given(bad=st.sampled_from([-1.0, math.inf, math.nan]), field=st.sampled_from(["p50", "mean", "stddev", "min"]))
def test_negative_or_non_finite_latencies_are_rejected(bad: float, field: str) -> None:
    values = {"count": 1, "p50": 1.0, "p95": 2.0, "p99": 3.0, "mean": 1.5, "min": 0.5, "max": 4.0, "stddev": 0.1}
    values[field] = bad
    with pytest.raises(ValidationError):
        LatencyMetrics(**values)


@given(count=st.integers(max_value=0))
def test_latency_count_must_be_positive(count: int) -> None:
    with pytest.raises(ValidationError, match="count"):
        LatencyMetrics(count=count, p50=1, p95=1, p99=1, mean=1, min=1, max=1, stddev=0)


@given(inp=st.integers(0, 10**9), out=st.integers(0, 10**9), delta=st.integers(-5, 5))
def test_token_usage_total_must_add_up(inp: int, out: int, delta: int) -> None:
    if delta == 0:
        assert TokenUsage(inp, out, inp + out).total_tokens == inp + out
    else:
        with pytest.raises(ValidationError, match="total_tokens"):
            TokenUsage(inp, out, inp + out + delta)


@given(inp=st.integers(max_value=-1))
def test_negative_token_counts_are_rejected(inp: int) -> None:
    with pytest.raises(ValidationError):
        TokenUsage(inp, 0, inp)


def _result(**overrides: object) -> BenchmarkResult:
    values: dict[str, object] = dict(
        run_id="r", provider="p", model="m", scenario="s", endpoint="chat", started_at=0.0, duration_s=1.0,
        requests_total=3, requests_ok=2, requests_failed=1, error_rate=1 / 3, errors_by_kind={"timeout": 1},
        requests_per_s=2.0, output_tokens_per_s=10.0, e2e=None,
    )
    values.update(overrides)
    return BenchmarkResult(**values)  # type: ignore[arg-type]


@given(ok=st.integers(0, 1000), failed=st.integers(0, 1000))
def test_consistent_results_are_accepted(ok: int, failed: int) -> None:
    total = ok + failed
    rate = failed / total if total else 0.0
    result = _result(requests_total=total, requests_ok=ok, requests_failed=failed, error_rate=rate,
                     errors_by_kind={"timeout": failed} if failed else {})
    assert result.requests_total == total


@given(
    overrides=st.sampled_from(
        [
            {"error_rate": 1.5},
            {"error_rate": -0.1},
            {"requests_total": 4},
            {"errors_by_kind": {"timeout": 2}},
            {"duration_s": -1.0},
            {"requests_per_s": -1.0},
            {"output_tokens_per_s": -0.5},
        ]
    )
)
def test_inconsistent_results_are_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _result(**overrides)
