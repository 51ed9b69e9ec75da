"""Rendering runs into one self-contained HTML report with Jinja2 (autoescaped) and inlined plotly.js.

Charts are plain plotly figure dicts built here from the results' summaries (histograms, per-level points,
timelines), never from raw samples, so a report of a million requests is as small as one of ten. They travel as
JSON in ``<script type="application/json">`` blocks and are drawn by the one inlined copy of plotly.js.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from llmload.report.analysis import (
    HEATMAP_AXES,
    KNEE_MIN_GAIN,
    KNEE_MIN_LATENCY_RISE,
    RADAR_AXES,
    Entry,
    cost_per_1k_output,
    entries,
    find_knee,
    headline,
    score_matrix,
    verdict_grid,
    verdicts,
)
from llmload.results import LatencyMetrics, RunResult

Section = tuple[str, Markup]
"""An optional extra report section: a title and html-safe markup (see ``render(extra_sections=...)``)."""

PALETTE = ("#3b6fd8", "#e4572e", "#17a398", "#f3a712", "#8e5ad7", "#5c6b7a", "#d6336c", "#2f9e44", "#a0522d",
           "#1098ad")
ERROR_COLORS = ("#e03131", "#f08c00", "#9c36b5", "#c2255c", "#5f3dc4", "#862e9c")


@functools.cache
def plotly_js() -> str:
    """The plotly.js bundle shipped with the installed ``plotly`` package (inlined once per report; no CDN)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _fmt_num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    """Milliseconds with precision that matters: a decimal below 100 ms, whole numbers above (keeps tables narrow)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _usd(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _usd_fine(value: float | None) -> str:
    """USD with enough decimals for per-request prices (three significant digits below a cent, no exponent)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if 0 < value < 0.01:
        return f"${value:,.{min(10, 2 - math.floor(math.log10(value)))}f}"
    return _usd(value)


DASH = "\u2013"
"""What the reliability table shows for a value that was not measured (None or absent)."""


def _dash_or(value: Any, fmt: str) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return DASH
    return fmt.format(value)


def _seconds(value: float | None) -> str:
    """A duration in seconds, in the unit that keeps it short: s below 2 min, min below 2 h, then h."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return DASH
    if value < 10:
        return f"{value:.2f} s"
    if value < 120:
        return f"{value:,.1f} s"
    if value < 7200:
        return f"{value / 60:,.1f} min"
    return f"{value / 3600:,.1f} h"


def _when(value: float | None) -> str:
    if not isinstance(value, (int, float)):
        return "n/a"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _json_for_script(data: Any) -> Markup:
    """JSON safe to place inside a <script> element: no '<', '>' or '&' can close the element or open a comment."""
    text = json.dumps(_finite_only(data), separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _finite_only(data: Any) -> Any:
    """NaN/inf become null (a gap in the chart): JSON has no NaN, and JSON.parse would reject the whole figure."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite_only(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite_only(v) for v in data]
    return data


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("llmload", "report/templates"),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _fmt_num
    env.filters["ms"] = _ms
    env.filters["pct"] = _pct
    env.filters["usd"] = _usd
    env.filters["usd_fine"] = _usd_fine
    env.filters["seconds"] = _seconds
    env.filters["when"] = _when
    env.filters["tojson_script"] = _json_for_script
    return env


def _color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0.01, "font": {"size": 15}},
        "margin": {"l": 60, "r": 20, "t": 48, "b": 56},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "#fbfcfe",
        "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12, "color": "#1d2430"},
        "legend": {"orientation": "h", "y": -0.3},
        "hovermode": "closest",
    }
    layout.update(extra)
    return layout


def _distribution_figure(items: Sequence[Entry], attr: str, title: str) -> dict[str, Any] | None:
    """Per-result share of requests per log-spaced bin, drawn from the stored histogram (edges/counts)."""
    traces = []
    for i, e in enumerate(items):
        metric: LatencyMetrics | None = getattr(e.result, attr)
        if metric is None or not metric.histogram.get("counts"):
            continue
        edges, counts = metric.histogram["edges"], metric.histogram["counts"]
        total = sum(counts) or 1
        centers = [math.sqrt(edges[k] * edges[k + 1]) for k in range(len(counts))]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": e.label,
                "x": centers,
                "y": [c / total for c in counts],
                "line": {"shape": "hvh", "width": 2, "color": _color(i)},
                "hovertemplate": "%{x:,.1f} ms: %{y:.1%} of requests<extra>" + _plotly_text(e.label) + "</extra>",
            }
        )
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"{e.label} p50/p95/p99",
                "showlegend": False,
                "x": [metric.p50, metric.p95, metric.p99],
                "y": [0, 0, 0],
                "text": ["p50", "p95", "p99"],
                "marker": {"symbol": "triangle-up", "size": 11, "color": _color(i)},
                "hovertemplate": "%{text}: %{x:,.1f} ms<extra>" + _plotly_text(e.label) + "</extra>",
            }
        )
    if not traces:
        return None
    return {
        "data": traces,
        "layout": _layout(
            title,
            xaxis={"type": "log", "title": {"text": "milliseconds (log scale)"}, "gridcolor": "#e6e9ef"},
            yaxis={"title": {"text": "share of requests"}, "tickformat": ".0%", "gridcolor": "#e6e9ef",
                   "rangemode": "tozero"},
        ),
    }


def _plotly_text(text: str) -> str:
    """Plotly renders hover/label strings as a small HTML subset; escape so names cannot inject markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _curves(items: Sequence[Entry]) -> list[dict[str, Any]]:
    """Results of one run/provider/model/scenario across load levels, ordered by load, with the knee found."""
    series: dict[tuple[str, str, str, str], list[Entry]] = defaultdict(list)
    for e in items:
        if e.result.level is not None and e.result.e2e is not None:
            r = e.result
            series[(e.run_id, r.provider, r.model, r.scenario)].append(e)
    curves = []
    multi_run = len({key[0] for key in series}) > 1
    for (run_id, provider, model, scenario), members in series.items():
        members.sort(key=lambda e: e.result.level or 0)
        throughput = [e.result.requests_per_s for e in members]
        latency = [e.result.e2e.p95 for e in members if e.result.e2e is not None]
        name = f"{provider}:{model} {scenario}" + (f" [{run_id}]" if multi_run else "")
        knee = find_knee(throughput, latency)
        curves.append({"name": name, "members": members, "throughput": throughput, "latency": latency, "knee": knee})
    return curves


def _load_label(e: Entry) -> str:
    load = e.result.load
    for key in ("users", "rate", "rps", "concurrency"):
        if load.get(key) is not None:
            return f"level {e.result.level}: {key}={load[key]}"
    return f"level {e.result.level}"


def _curve_figure(curves: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not any(len(c["members"]) > 1 for c in curves):
        return None
    traces = []
    for i, c in enumerate(curves):
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": c["name"],
                "x": c["throughput"],
                "y": c["latency"],
                "text": [_plotly_text(_load_label(e)) for e in c["members"]],
                "line": {"color": _color(i), "width": 2.5},
                "marker": {"size": 8},
                "hovertemplate": "%{text}<br>%{x:,.2f} req/s, p95 %{y:,.0f} ms<extra></extra>",
            }
        )
        if c["knee"] is not None:
            k = c["knee"]
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers+text",
                    "name": f"knee: {c['name']}",
                    "x": [c["throughput"][k]],
                    "y": [c["latency"][k]],
                    "text": ["knee"],
                    "textposition": "top left",
                    "marker": {"symbol": "star", "size": 18, "color": _color(i), "line": {"width": 1,
                                                                                          "color": "#1d2430"}},
                    "hovertemplate": "saturation knee<br>%{x:,.2f} req/s, p95 %{y:,.0f} ms<extra></extra>",
                }
            )
    return {
        "data": traces,
        "layout": _layout(
            "Throughput vs p95 e2e latency across load levels",
            xaxis={"title": {"text": "completed requests / s"}, "gridcolor": "#e6e9ef", "rangemode": "tozero"},
            yaxis={"title": {"text": "e2e p95 (ms)"}, "gridcolor": "#e6e9ef", "rangemode": "tozero"},
        ),
    }


def _radar_figure(items: Sequence[Entry]) -> tuple[dict[str, Any], list[str]]:
    raw, scores = score_matrix(items, RADAR_AXES)
    missing = [a.name for j, a in enumerate(RADAR_AXES) if all(row[j] is None for row in raw)]
    theta = [a.name + (" (n/a)" if a.name in missing else "") for a in RADAR_AXES]
    traces = []
    for i, e in enumerate(items):
        r = [s if s is not None else 0.0 for s in scores[i]]
        hover = [f"{a.name}: {'n/a' if s is None else f'{s:.2f}'}" for a, s in zip(RADAR_AXES, scores[i], strict=True)]
        traces.append(
            {
                "type": "scatterpolar",
                "name": e.label,
                "r": r + r[:1],
                "theta": theta + theta[:1],
                "text": hover + hover[:1],
                "fill": "toself",
                "opacity": 0.55,
                "line": {"color": _color(i)},
                "hovertemplate": "%{text}<extra>" + _plotly_text(e.label) + "</extra>",
            }
        )
    layout = _layout(
        "Overall profile (1 = best of the compared results)",
        polar={"radialaxis": {"range": [0, 1], "tickvals": [0.25, 0.5, 0.75, 1]}, "bgcolor": "#fbfcfe"},
    )
    return {"data": traces, "layout": layout}, missing


def _heatmap_figure(items: Sequence[Entry]) -> dict[str, Any]:
    raw, scores = score_matrix(items, HEATMAP_AXES)
    labels = [_plotly_text(e.label) for e in items]
    text = [
        ["n/a" if v is None else (f"{100 * v:.2f}%" if a.name == "error rate" else f"{v:,.4g}")
         for a, v in zip(HEATMAP_AXES, row, strict=True)]
        for row in raw
    ]
    return {
        "data": [
            {
                "type": "heatmap",
                "x": [a.name for a in HEATMAP_AXES],
                "y": labels,
                "z": scores,
                "text": text,
                "texttemplate": "%{text}",
                "zmin": 0,
                "zmax": 1,
                "colorscale": [[0, "#f8d7da"], [0.5, "#fff3bf"], [1, "#b2f2bb"]],
                "colorbar": {"title": {"text": "score"}, "thickness": 12},
                "hovertemplate": "%{y}<br>%{x}: %{text} (score %{z:.2f})<extra></extra>",
                "xgap": 2,
                "ygap": 2,
            }
        ],
        "layout": _layout(
            "Provider × metric (green = best of the compared results)",
            height=max(320, 110 + 44 * len(items)),
            margin={"l": 220, "r": 20, "t": 48, "b": 60},
            yaxis={"autorange": "reversed", "automargin": True},
            xaxis={"side": "bottom"},
        ),
    }


def _timeline_figure(items: Sequence[Entry]) -> dict[str, Any] | None:
    traces: list[dict[str, Any]] = []
    kinds = sorted({k for e in items for p in e.result.timeline for k in p.get("errors", {})})
    for i, e in enumerate(items):
        points = e.result.timeline
        if not points:
            continue
        xs = [p["t"] for p in points]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"{e.label} ok",
                "x": xs,
                "y": [p.get("ok", 0) for p in points],
                "line": {"color": _color(i), "width": 2},
                "hovertemplate": "t=%{x}s: %{y} ok<extra>" + _plotly_text(e.label) + "</extra>",
            }
        )
        for kind in kinds:
            ys = [p.get("errors", {}).get(kind, 0) for p in points]
            if any(ys):
                traces.append(
                    {
                        "type": "bar",
                        "name": f"{e.label} {kind}",
                        "x": xs,
                        "y": ys,
                        "marker": {"color": ERROR_COLORS[kinds.index(kind) % len(ERROR_COLORS)]},
                        "hovertemplate": "t=%{x}s: %{y} " + _plotly_text(kind) + "<extra>"
                        + _plotly_text(e.label) + "</extra>",
                    }
                )
    if not traces:
        return None
    return {
        "data": traces,
        "layout": _layout(
            "Completions and errors over time",
            barmode="stack",
            xaxis={"title": {"text": "seconds since the result's first request"}, "gridcolor": "#e6e9ef"},
            yaxis={"title": {"text": "requests per bucket"}, "gridcolor": "#e6e9ef", "rangemode": "tozero"},
        ),
    }


def _matrix_rows(items: Sequence[Entry]) -> list[dict[str, Any]]:
    rows = []
    for e in items:
        r = e.result
        rows.append(
            {
                "label": e.label,
                "r": r,
                "cost_per_1k": cost_per_1k_output(r),
                "cost_per_request": r.cost_per_request_usd,
                "cost_per_1k_requests": r.cost_per_1k_requests_usd,
                "quality_per_dollar": r.quality_per_dollar,
                "errors": sorted(r.errors_by_kind.items(), key=lambda kv: -kv[1]),
            }
        )
    return rows


INCIDENT_WINDOWS_SHOWN = 5


def _reliability_rows(items: Sequence[Entry]) -> list[dict[str, Any]]:
    """One row per result from its ``reliability`` block, every cell already formatted ("–" when not measured)."""
    rows = []
    for e in items:
        rel = e.result.reliability or {}
        open_incident = rel.get("open_incident")
        windows = [w for w in rel.get("incident_windows") or [] if isinstance(w, (list, tuple)) and len(w) == 2]
        rows.append(
            {
                "label": e.label,
                "measured": bool(rel),
                "uptime": _dash_or(rel.get("uptime_pct"), "{:.2f}%"),
                "incidents": _dash_or(rel.get("incidents"), "{:,}"),
                "mtbf": _seconds(rel.get("mtbf_s")),
                "mttr": _seconds(rel.get("mttr_s")),
                "longest": _seconds(rel.get("longest_incident_s")),
                "open_incident": DASH if not isinstance(open_incident, bool) else ("yes" if open_incident else "no"),
                "open": open_incident is True,
                "outage_recovery": _seconds(rel.get("outage_recovery_s")),
                "windows": [f"{_dash_or(a, '{:,.1f}')}–{_dash_or(b, '{:,.1f}')} s"
                            for a, b in windows[:INCIDENT_WINDOWS_SHOWN]],
                "more_windows": max(0, len(windows) - INCIDENT_WINDOWS_SHOWN),
            }
        )
    return rows


def _meta_rows(meta: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested run metadata into dotted key/value rows for display."""
    rows: list[tuple[str, str]] = []
    for key, value in meta.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_meta_rows(value, f"{name}.") if value else [(name, "{}")])
        elif key in ("started_at", "ended_at", "window_start") and isinstance(value, (int, float)):
            rows.append((name, _when(value)))
        elif isinstance(value, (list, tuple)):
            rows.append((name, ", ".join(str(v) for v in value)))
        else:
            rows.append((name, "n/a" if value is None else str(value)))
    return rows


def build_context(runs: Sequence[RunResult], *, extra_sections: Sequence[Section] = ()) -> dict[str, Any]:
    """Everything the template needs; exposed so tests (and other sections) can inspect what a report says."""
    items = entries(runs)
    charts: list[dict[str, Any]] = []

    def chart(chart_id: str, title: str, figure: dict[str, Any] | None, note: str = "", wide: bool = False) -> None:
        if figure is not None:
            charts.append({"id": chart_id, "title": title, "figure": figure, "note": note, "wide": wide})

    found = verdicts(items)
    grid_metrics, grid_rows = verdict_grid(found)
    radar, radar_missing = _radar_figure(items) if items else (None, [])
    curves = _curves(items)
    knee_notes = [
        f"{c['name']}: knee at {_load_label(c['members'][c['knee']])}"
        if c["knee"] is not None else f"{c['name']}: no knee within the measured levels"
        for c in curves if len(c["members"]) > 1
    ]
    chart("heatmap", "Heatmap", _heatmap_figure(items) if items else None, wide=True)
    chart("ttft-dist", "TTFT distribution", _distribution_figure(items, "ttft", "Time to first token"))
    chart("e2e-dist", "End-to-end latency distribution", _distribution_figure(items, "e2e", "End-to-end latency"))
    chart("curve", "Throughput vs latency", _curve_figure(curves), "; ".join(knee_notes))
    chart("radar", "Profile", radar,
          f"No data for: {', '.join(radar_missing)} (shown as n/a, scored 0)." if radar_missing else "")
    chart("timeline", "Error timeline", _timeline_figure(items), wide=True)
    return {
        "runs": runs,
        "title": "llmload report — " + ", ".join(run.run_id for run in runs),
        "generated_at": _when(datetime.now(UTC).timestamp()),
        "rows": _matrix_rows(items),
        "reliability_rows": _reliability_rows(items),
        "any_reliability": any(e.result.reliability for e in items),
        "any_outage_recovery": any("outage_recovery_s" in (e.result.reliability or {}) for e in items),
        "verdicts": found,
        "headline": headline(found),
        "verdict_metrics": grid_metrics,
        "verdict_rows": grid_rows,
        "total_requests": sum(e.result.requests_total for e in items),
        "providers": sorted({f"{e.result.provider}:{e.result.model}" for e in items}),
        "scenarios": sorted({e.result.scenario for e in items}),
        "any_cost": any(e.result.tokens.cost_usd is not None for e in items),
        "any_quality": any(e.result.quality for e in items),
        "any_quality_per_dollar": any(e.result.quality_per_dollar is not None for e in items),
        "warnings": sorted({f"{e.label}: {w}" for e in items for w in e.result.warnings}
                           | {f"{e.label}: partial result (the run was stopped early)" for e in items
                              if e.result.partial}),
        "charts": charts,
        "meta": [(run.run_id, _meta_rows(run.meta)) for run in runs],
        "knee_rule": (f"the last load level before the first step that adds less than {KNEE_MIN_GAIN:.0%} "
                      f"throughput while raising e2e p95 by more than {KNEE_MIN_LATENCY_RISE:.0%}"),
        "extra_sections": list(extra_sections),
    }


def render(runs: Sequence[RunResult], *, extra_sections: Sequence[Section] = (), inline_js: bool = True) -> str:
    """The report HTML. ``extra_sections`` are (title, Markup) blocks appended after the built-in sections;
    ``inline_js=False`` leaves plotly.js out (for size checks of the report's own content)."""
    context = build_context(runs, extra_sections=extra_sections)
    context["plotly_js"] = Markup(plotly_js()) if inline_js else Markup("")
    return _environment().get_template("report.html.j2").render(**context)


def write_report(runs: Sequence[RunResult], path: Path, *, extra_sections: Sequence[Section] = ()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render(runs, extra_sections=extra_sections), encoding="utf-8")
    tmp.replace(path)
    return path
