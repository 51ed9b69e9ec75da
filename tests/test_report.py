"""Report content, verdict honesty, knee detection, normalization and flat exports (no browser needed)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import Markup

import llmload
from llmload.cli import main
from llmload.export import write_csv
from llmload.report.analysis import entries, find_knee, normalize, verdicts
from llmload.report.html import _json_for_script, build_context, plotly_js, render
from llmload.results import RunResult
from tests.report_fixtures import comparison_run, synthetic_result

EVIL = '<script>alert("x")</script>'


def _run(*results: object, run_id: str = "r1") -> RunResult:
    return RunResult(run_id=run_id, meta={"command": "locust --headless"}, results=list(results))  # type: ignore[arg-type]


def test_names_with_markup_are_escaped_everywhere() -> None:
    run = RunResult(
        run_id=f"run{EVIL}",
        meta={"command": f"locust {EVIL}", "emulator": {"note": EVIL}},
        results=[synthetic_result(provider=f"p{EVIL}", model="m", scenario=f"s{EVIL}"),
                 synthetic_result(provider="q", model=f"m{EVIL}", seed=3)],
    )
    html = render([run], inline_js=False)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert" in html
    # Chart JSON lives in <script> blocks: markup there is \u003c-escaped so it cannot close the element.
    for block in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, flags=re.S):
        assert "<" not in block and ">" not in block


def test_extra_sections_render_after_the_builtin_ones() -> None:
    html = render([_run(synthetic_result(provider="a", model="m"))], inline_js=False,
                  extra_sections=[("Trends", Markup("<p id='trend-body'>up</p>")), (f"T{EVIL}", Markup("<i>x</i>"))])
    assert "<p id='trend-body'>up</p>" in html
    assert f"T{EVIL}" not in html and "T&lt;script&gt;" in html
    assert html.index("trend-body") < html.index('id="environment"')


def test_plotly_is_inlined_once_and_nothing_loads_from_the_network() -> None:
    html = render([comparison_run()])
    assert html.count(plotly_js()) == 1
    assert html.count("<script>") == 2  # plotly.js, then the tiny bootstrap that draws the charts
    # plotly.js itself mentions URLs (map tiles, MathJax) that these charts never use; check the report's own markup.
    own = render([comparison_run()], inline_js=False)
    assert not re.search(r'<script[^>]+src=|<link[^>]+href=|<img[^>]+src=|https?://', own)


def test_overlapping_intervals_give_no_winner() -> None:
    same = [synthetic_result(provider="a", model="m", e2e_ms=900, seed=1),
            synthetic_result(provider="b", model="m", e2e_ms=905, seed=2)]
    e2e = next(v for v in verdicts(entries([_run(*same)])) if v.metric == "e2e p50")
    assert not e2e.significant
    assert "not significant" in e2e.text


def test_separated_intervals_name_the_winner() -> None:
    apart = [synthetic_result(provider="slow", model="m", e2e_ms=1500, seed=1),
             synthetic_result(provider="fast", model="m", e2e_ms=600, seed=2)]
    e2e = next(v for v in verdicts(entries([_run(*apart)])) if v.metric == "e2e p50")
    assert e2e.significant and e2e.best == "fast:m" and e2e.runner_up == "slow:m"
    assert "not significant" not in e2e.text


def test_results_are_compared_only_within_scenario_and_level() -> None:
    results = [synthetic_result(provider="a", model="m", scenario="x", e2e_ms=500),
               synthetic_result(provider="b", model="m", scenario="y", e2e_ms=2000)]
    for v in verdicts(entries([_run(*results)])):
        assert v.runner_up is None


def test_knee_on_a_saturating_curve() -> None:
    throughput = [10, 20, 30, 38, 39, 39.5]
    latency = [500, 510, 530, 600, 1200, 2500]
    assert find_knee(throughput, latency) == 3


def test_no_knee_while_throughput_keeps_scaling() -> None:
    assert find_knee([10, 20, 40, 80], [500, 550, 700, 900]) is None
    assert find_knee([10, 10.5, 11], [500, 505, 510]) is None  # flat throughput but latency steady: not saturated
    assert find_knee([5], [100]) is None


def test_report_marks_the_knee_of_the_saturating_provider() -> None:
    context = build_context([comparison_run()])
    curve = next(c for c in context["charts"] if c["id"] == "curve")
    assert "openai:gpt-4o-mini chat-short: knee at level 1: users=8" in curve["note"]
    assert "claude-haiku chat-short: no knee" in curve["note"]


def test_normalize_ratios_and_missing() -> None:
    assert normalize([100.0, 200.0, None], higher_is_better=False) == [1.0, 0.5, None]
    assert normalize([10.0, 5.0], higher_is_better=True) == [1.0, 0.5]
    assert normalize([0.0, 0.1, 0.2], higher_is_better=False) == [1.0, 0.5, 0.0]
    assert normalize([None, None], higher_is_better=True) == [None, None]


def test_radar_marks_missing_axes_as_na() -> None:
    two = _run(synthetic_result(provider="a", model="m"), synthetic_result(provider="b", model="m"))
    context = build_context([two])
    radar = next(c for c in context["charts"] if c["id"] == "radar")
    assert "quality (n/a)" in radar["figure"]["data"][0]["theta"]
    assert "cost (n/a)" in radar["figure"]["data"][0]["theta"]
    assert "No data for: quality, cost" in radar["note"]


def test_matrix_shows_cis_errors_and_cost() -> None:
    html = render([comparison_run()], inline_js=False)
    assert "rate_limited" in html and "timeout" in html
    r = comparison_run().results[0]
    lo, hi = r.e2e.ci95["p50"]  # type: ignore[union-attr]
    assert f"{lo:,.0f}–{hi:,.0f}" in html  # e2e is above 100 ms: whole milliseconds
    assert "$0.4200" in html and "per 1k out" in html


def test_csv_and_dataframe_exports(tmp_path: Path) -> None:
    run = comparison_run()
    run.save(tmp_path / "run" / "result.json")
    write_csv(run, tmp_path / "run" / "result.csv")
    csv = pd.read_csv(tmp_path / "run" / "result.csv")
    frame = llmload.load_results(str(tmp_path / "run"), str(tmp_path / "run" / "result.json"))
    assert len(csv) == len(run.results) and len(frame) == 2 * len(run.results)
    for column in ("provider", "model", "scenario", "level", "requests_per_s", "output_tokens_per_s", "error_rate",
                   "ttft_p50_ms", "itl_p95_ms", "e2e_p99_ms", "cost_usd", "errors_rate_limited", "errors_timeout"):
        assert column in csv.columns and column in frame.columns
    first = run.results[0]
    assert csv.loc[0, "e2e_p95_ms"] == first.e2e.p95  # type: ignore[union-attr]
    assert frame["requests_failed"].sum() == 2 * sum(r.requests_failed for r in run.results)


def test_cli_report_writes_one_file_from_several_runs(tmp_path: Path) -> None:
    first, second = comparison_run(), _run(synthetic_result(provider="other", model="m"), run_id="second")
    first.save(tmp_path / "a" / "result.json")
    second.save(tmp_path / "b" / "result.json")
    out = tmp_path / "reports" / "cmp.html"
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b" / "result.json"), "-o", str(out)]) == 0
    html = out.read_text()
    assert "[compare-demo]" in html and "[second]" in html


def test_cli_report_missing_run_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope"), "-o", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope" in err and "\n" not in err
    assert not (tmp_path / "x.html").exists()


def test_chart_json_turns_nan_into_gaps() -> None:
    assert str(_json_for_script({"y": [1.0, float("nan"), float("inf")], "t": "</script>"})) == (
        '{"y":[1.0,null,null],"t":"\\u003c/script\\u003e"}'
    )


RELIABILITY = {
    "bucket_s": 1.0, "uptime_pct": 97.25, "error_rate": 0.04, "incidents": 2, "mtbf_s": 36.5, "mttr_s": 1.75,
    "longest_incident_s": 2.5, "open_incident": True, "outage_recovery_s": 0.42,
    "incident_windows": [[3.0, 5.5], [12.0, 13.0]],
}


def _section(html: str, section_id: str) -> str:
    start = html.index(f'<section id="{section_id}">')
    return html[start:html.index("</section>", start)]


def test_reliability_section_shows_each_results_figures() -> None:
    measured = synthetic_result(provider="a", model="m")
    measured.reliability = dict(RELIABILITY)
    quiet = synthetic_result(provider="b", model="m", seed=2)
    quiet.reliability = {"uptime_pct": 100.0, "error_rate": 0.0, "incidents": 0, "mtbf_s": None, "mttr_s": None,
                         "longest_incident_s": None, "open_incident": False, "incident_windows": []}
    section = _section(render([_run(measured, quiet)], inline_js=False), "reliability")
    row_a, row_b = re.findall(r"<tr>\s*<td class=\"l\">(.*?)</tr>", section, flags=re.S)
    assert row_a.startswith("a:m")
    for text in ("97.25%", "<td>2</td>", "36.5 s", "1.75 s", "2.50 s", "yes", "0.42 s", "3.0–5.5 s, 12.0–13.0 s"):
        assert text in row_a, text
    assert row_b.startswith("b:m")
    assert "100.00%" in row_b and "<td>0</td>" in row_b and ">no</td>" in row_b
    assert row_b.count("<td>–</td>") == 4  # MTBF, MTTR, longest incident and outage recovery were not measured
    assert "outage recovery" in section


def test_reliability_without_outage_has_no_recovery_column_and_long_durations_change_unit() -> None:
    result = synthetic_result(provider="a", model="m")
    result.reliability = {k: v for k, v in RELIABILITY.items() if k != "outage_recovery_s"} | {"mtbf_s": 5400.0}
    section = _section(render([_run(result)], inline_js=False), "reliability")
    assert "outage recovery" not in section
    assert "90.0 min" in section


def test_missing_reliability_block_still_renders() -> None:
    old = synthetic_result(provider="a", model="m")  # results saved before reliability existed: empty block
    html = render([_run(old)], inline_js=False)
    assert "carry no reliability figures" in _section(html, "reliability")
    partly = synthetic_result(provider="b", model="m", seed=2)
    partly.reliability = {"uptime_pct": None, "incidents": 1}  # keys missing or None: dashes, no KeyError
    section = _section(render([_run(old, partly)], inline_js=False), "reliability")
    assert "<td>1</td>" in section and section.count("<td>–</td>") >= 8


def test_reliability_values_are_escaped() -> None:
    result = synthetic_result(provider=f"p{EVIL}", model="m")
    result.reliability = dict(RELIABILITY) | {"incidents": EVIL, "open_incident": EVIL, "incident_windows": [[EVIL, 1]]}
    section = _section(render([_run(result)], inline_js=False), "reliability")
    assert "<script>" not in section and "&lt;script&gt;" in section


def test_matrix_shows_cost_per_request_and_quality_per_dollar() -> None:
    priced = synthetic_result(provider="a", model="m", n=400, cost_usd=0.5, accuracy=0.9)
    cheap = synthetic_result(provider="b", model="m", n=400, cost_usd=0.002, seed=2)
    unpriced = synthetic_result(provider="c", model="m", seed=3)
    assert priced.cost_per_request_usd == pytest.approx(0.00125)
    assert priced.quality_per_dollar == pytest.approx(720.0)
    matrix = _section(render([_run(priced, cheap, unpriced)], inline_js=False), "matrix")
    assert "per request" in matrix and "per 1k requests" in matrix and "passed per $" in matrix
    assert "$0.00125" in matrix and "$1.25" in matrix and "720.0" in matrix
    assert "$0.00000500" in matrix and "$0.0050" in matrix  # $0.002 over 400 requests keeps three significant digits
    row_c = re.findall(r"<tr>\s*<td class=\"l\">(.*?)</tr>", matrix, flags=re.S)[2]
    assert row_c.startswith("c:m") and row_c.count("n/a") >= 3


def test_matrix_without_prices_has_no_cost_columns() -> None:
    matrix = _section(render([_run(synthetic_result(provider="a", model="m", accuracy=0.9))], inline_js=False),
                      "matrix")
    assert "per request" not in matrix and "passed per $" not in matrix and "accuracy" in matrix


def test_reasoning_tokens_show_in_the_matrix_and_the_csv(tmp_path: Path) -> None:
    run = comparison_run()
    run.results[0].tokens = dataclasses.replace(run.results[0].tokens, reasoning_tokens=1234)
    html = render([run], inline_js=False)
    assert html.count(" reasoning)</span>") == 1 and "(1,234 reasoning)" in html
    write_csv(run, tmp_path / "result.csv")
    csv = pd.read_csv(tmp_path / "result.csv")
    assert csv.loc[0, "reasoning_tokens"] == 1234 and csv["reasoning_tokens"].iloc[1:].eq(0).all()
