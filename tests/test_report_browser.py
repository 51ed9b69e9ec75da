"""The HTML report in a real headless browser (Debian chromium driven by playwright; no browser download)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

from llmload.report.html import plotly_js, render, write_report
from llmload.results import BenchmarkResult, LatencyMetrics, RunResult, TokenUsage
from tests.report_fixtures import comparison_run, synthetic_result

ARTIFACTS = Path(__file__).resolve().parent.parent / "reports" / "ci-artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: run scripts/test-deps.d/20-chromium.sh")
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1440, "height": 1000}, offline=True,
        )
        yield context
        context.close()


def _open(context: BrowserContext, path: Path) -> tuple[Page, list[str], float]:
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    started = time.perf_counter()
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function(
        "() => [...document.querySelectorAll('div.chart')].every(d => d.querySelector('.main-svg'))", timeout=60_000
    )
    return page, problems, time.perf_counter() - started


@pytest.mark.slow
def test_report_renders_every_chart_without_console_errors(browser: BrowserContext) -> None:
    path = write_report([comparison_run()], ARTIFACTS / "report.html")
    page, problems, _ = _open(browser, path)
    charts = page.eval_on_selector_all("div.chart", "ds => ds.map(d => d.id)")
    assert set(charts) == {"chart-ttft-dist", "chart-e2e-dist", "chart-curve", "chart-radar", "chart-heatmap",
                           "chart-timeline"}
    drawn = page.eval_on_selector_all(
        "div.chart", "ds => ds.map(d => d.querySelectorAll('.main-svg path, .main-svg rect, canvas').length)"
    )
    assert all(count > 5 for count in drawn), drawn
    assert page.locator("#chart-curve .textpoint").count() >= 1  # knee label drawn
    assert problems == []
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000
    page.close()


@pytest.mark.slow
def test_single_result_without_levels_cost_or_quality_renders(browser: BrowserContext, tmp_path: Path) -> None:
    lone = RunResult(run_id="lone", meta={}, results=[synthetic_result(provider="ollama", model="llama3")])
    path = write_report([lone], tmp_path / "lone.html")
    page, problems, _ = _open(browser, path)
    charts = page.eval_on_selector_all("div.chart", "ds => ds.map(d => d.id)")
    assert "chart-curve" not in charts and "chart-radar" in charts  # one load level: no curve to draw
    assert "nothing to compare" in page.inner_text("#summary")
    assert problems == []
    page.close()


def _big_result(provider: str, scale: float, seed: int) -> BenchmarkResult:
    rng = np.random.default_rng(seed)
    n = 1_000_000
    e2e = rng.lognormal(np.log(800 * scale), 0.3, n)
    ttft = rng.lognormal(np.log(120 * scale), 0.3, n)
    return BenchmarkResult(
        run_id="million", provider=provider, model="m", scenario="chat", endpoint="chat",
        started_at=1_790_000_000.0, duration_s=3600.0, requests_total=n, requests_ok=n, requests_failed=0,
        error_rate=0.0, errors_by_kind={}, requests_per_s=n / 3600, output_tokens_per_s=64 * n / 3600,
        e2e=LatencyMetrics.from_samples(e2e), ttft=LatencyMetrics.from_samples(ttft),
        tokens=TokenUsage(30 * n, 64 * n, 94 * n),
        timeline=[{"t": 12 * i, "ok": n // 300, "errors": {}, "ttft_p50": 120.0, "e2e_p50": 800.0,
                   "output_tokens": 64 * n // 300} for i in range(300)],
    )


@pytest.mark.slow
def test_million_sample_report_is_small_and_opens_quickly(browser: BrowserContext, tmp_path: Path) -> None:
    run = RunResult(run_id="million", meta={"records": 2_000_000},
                    results=[_big_result("fast", 1.0, 1), _big_result("slow", 1.02, 2)])
    own_content = len(render([run], inline_js=False).encode())
    assert own_content < 5_000_000, own_content
    path = write_report([run], tmp_path / "million.html")
    assert path.stat().st_size < len(plotly_js().encode()) + 5_000_000
    page, problems, seconds = _open(browser, path)
    assert problems == []
    print(f"million-sample report: {path.stat().st_size:,} bytes, drawn in {seconds:.2f}s")
    assert seconds < 30, f"report took {seconds:.1f}s to draw"
    page.close()
