"""Every emulator fault, through every provider's real SDK: counted under the right ErrorKind, never as a success.

Providers are discovered at test time (``llmload.providers.PROVIDERS`` whose emulator protocol is registered in
``llmload.emulator.PROTOCOLS``), so a newly added provider is covered without editing this file.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator

import pytest

from llmload.aggregate import build_results
from llmload.emulator import PROTOCOLS, EmulatorProcess, MockConfiguration
from llmload.emulator.config import FAULTS
from llmload.errors import ErrorKind
from llmload.providers import PROVIDERS, provider_class
from llmload.providers.base import ProviderSettings
from llmload.results import BenchmarkScenario
from llmload.workload import execute
from tests.conftest import LOCUST, REPO, locust_env

EXPECTED_KIND: dict[str, ErrorKind] = {
    "server_error": ErrorKind.SERVER_ERROR,
    "rate_limited": ErrorKind.RATE_LIMITED,
    "overloaded": ErrorKind.OVERLOADED,
    "disconnect": ErrorKind.CONNECTION,
    # stall_ms is longer than the client's read timeout in these tests, so a stall is a timeout.
    "stall": ErrorKind.TIMEOUT,
    "malformed": ErrorKind.MALFORMED_STREAM,
    "truncate": ErrorKind.TRUNCATED_STREAM,
    "midstream_error": ErrorKind.SERVER_ERROR,
    "midstream_overloaded": ErrorKind.OVERLOADED,
    "slow_headers": ErrorKind.TIMEOUT,
}
EXPECTED_KIND_EXCEPTIONS: dict[tuple[str, str], ErrorKind] = {
    # Ollama's in-stream error lines are bare strings: nothing tells an overload from any other failure.
    ("ollama", "midstream_overloaded"): ErrorKind.SERVER_ERROR,
}
STALL_MS = 1500.0
CLIENT_TIMEOUT_S = 0.5
REQUESTS_PER_CASE = 3


def emulated_providers() -> list[str]:
    """Providers whose emulator protocol is registered now. One that fails to import stays in, to fail."""
    names = []
    for name in PROVIDERS:
        try:
            if provider_class(name).emulator_protocol not in PROTOCOLS:
                continue
        except ImportError:
            pass
        names.append(name)
    return names


def test_every_fault_has_an_expected_kind() -> None:
    assert set(EXPECTED_KIND) == set(FAULTS)


@pytest.fixture(scope="module", params=FAULTS)
def faulty_emulator(request: pytest.FixtureRequest) -> Iterator[tuple[str, EmulatorProcess]]:
    fault = request.param
    config = MockConfiguration(
        ttft_ms=20, itl_ms=2, output_tokens=10, error_rate=1.0, fault_weights={fault: 1.0}, stall_ms=STALL_MS,
        retry_after_s=7.0,
    )
    with EmulatorProcess("all", config) as emu:
        yield fault, emu


@pytest.mark.parametrize("provider_name", emulated_providers())
def test_fault_is_counted_under_its_kind(faulty_emulator: tuple[str, EmulatorProcess], provider_name: str) -> None:
    fault, emu = faulty_emulator
    cls = provider_class(provider_name)
    settings = ProviderSettings(base_url=cls.emulator_base_url(emu.url), timeout_s=CLIENT_TIMEOUT_S, emulated=True)
    provider = cls(settings)
    scenario = BenchmarkScenario(name=f"fault-{fault}", max_tokens=10)
    try:
        records = [execute(provider, scenario, cls.default_model, random.Random(i)) for i in range(REQUESTS_PER_CASE)]
    finally:
        provider.close()
    expected = EXPECTED_KIND_EXCEPTIONS.get((provider_name, fault), EXPECTED_KIND[fault]).value
    for rec in records:
        assert not rec.ok, f"{provider_name}/{fault}: counted as a success"
        assert rec.error_kind == expected, f"{provider_name}/{fault}: {rec.error_kind} ({rec.error_message})"
    if fault == "rate_limited" and provider_name in ("openai", "anthropic"):
        assert all(rec.retry_after_s == pytest.approx(7.0) for rec in records)
    (result,) = build_results(records, run_id="faults")
    assert result.requests_ok == 0 and result.requests_failed == REQUESTS_PER_CASE
    assert result.errors_by_kind == {expected: REQUESTS_PER_CASE}
    # Tokens that arrived before a mid-stream failure are not throughput.
    assert result.e2e is None and result.ttft is None and result.tokens.output_tokens == 0


@pytest.mark.parametrize("provider_name", emulated_providers())
def test_stall_shorter_than_the_read_timeout_is_only_slow(provider_name: str) -> None:
    config = MockConfiguration(
        ttft_ms=20, itl_ms=2, output_tokens=10, error_rate=1.0, fault_weights={"stall": 1.0}, stall_ms=300
    )
    cls = provider_class(provider_name)
    with EmulatorProcess("all", config) as emu:
        provider = cls(ProviderSettings(base_url=cls.emulator_base_url(emu.url), timeout_s=5.0, emulated=True))
        try:
            rec = execute(provider, BenchmarkScenario(name="stall", max_tokens=10), cls.default_model, random.Random(0))
        finally:
            provider.close()
    assert rec.ok, rec.error_message
    # The 300 ms stall sits between two tokens: it shows as one long inter-token gap.
    assert max(rec.itl_ms) >= 250


def test_disconnect_resets_the_connection_without_emulator_tracebacks() -> None:
    """Run the emulator with its stderr captured: an aborted stream must not make aiohttp log a traceback."""
    config = MockConfiguration(ttft_ms=10, itl_ms=2, output_tokens=10, error_rate=1.0,
                               fault_weights={"disconnect": 1.0})
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmload", "emulate", "openai", "--port", "0", "--config-json",
         json.dumps(config.to_dict())],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=locust_env(),
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        cls = provider_class("openai")
        provider = cls(ProviderSettings(base_url=f"{url}/v1", timeout_s=5.0, emulated=True))
        records = [execute(provider, BenchmarkScenario(name="d"), "m", random.Random(i)) for i in range(5)]
        provider.close()
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert all(r.error_kind == "connection" for r in records)
    assert "Traceback" not in stderr, stderr[-2000:]


@pytest.mark.slow
def test_headless_run_with_a_fault_mix_keeps_going(tmp_path) -> None:
    mix = "server_error=1,rate_limited=1,disconnect=1,truncate=1,malformed=1"
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "4", "-r", "4", "-t", "5s",
         "--emulator", "always", "--emulator-ttft-ms", "20", "--emulator-itl-ms", "2",
         "--emulator-output-tokens", "8", "--emulator-error-rate", "0.5", "--emulator-faults", mix,
         "--run-name", "faultmix", "--report-dir", str(tmp_path), "--only-summary"],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=90,
    )
    # Locust exits 1 when any request failed; what matters is that the run went the distance and wrote results.
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    run_dir = tmp_path / "faultmix"
    data = json.loads((run_dir / "result.json").read_text())
    (result,) = data["results"]
    kinds = result["errors_by_kind"]
    expected = {"server_error", "rate_limited", "connection", "truncated_stream", "malformed_stream"}
    assert set(kinds) - {"interrupted"} == expected
    assert sum(kinds.values()) == result["requests_failed"]
    assert result["requests_ok"] > 20 and result["requests_failed"] > 20
    assert 0.3 < result["error_rate"] < 0.7
    assert not result["partial"]
    # Requests kept completing until the end: the last timeline buckets still hold successes.
    assert result["timeline"][-2]["ok"] > 0
    html = (run_dir / "report.html").read_text()
    for kind in kinds:
        assert kind in html
    assert "Traceback" not in proc.stderr


def test_client_hanging_up_mid_request_body_is_no_emulator_error() -> None:
    """A load generator that stops while sending a request body leaves the emulator serving, with no traceback."""
    import socket

    from llmload.emulator.server import READY_PREFIX

    proc = subprocess.Popen(
        [sys.executable, "-m", "llmload", "emulate", "openai", "--port", "0", "--ttft-ms", "1", "--itl-ms", "1",
         "--output-tokens", "2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix(READY_PREFIX)
        host, port = url.removeprefix("http://").split(":")
        for _ in range(3):
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000\r\n\r\n{\"model\": ")
        provider = provider_class("openai")(ProviderSettings(base_url=f"{url}/v1", emulated=True))
        record = execute(provider, BenchmarkScenario(name="after-hangups"), "m", random.Random(0))
        assert record.ok, record.error_message
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert "Traceback" not in stderr and "Error handling request" not in stderr, stderr[-2000:]
