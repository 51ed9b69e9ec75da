"""Rendering runs into one self-contained HTML report with Jinja2 (autoescaped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from llmload.results import RunResult


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("llmload", "report/templates"), autoescape=select_autoescape(["html"]))
    env.filters["ms"] = lambda v: "-" if v is None else f"{v:,.1f}"
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    return env


def render(runs: list[RunResult]) -> str:
    rows: list[dict[str, Any]] = []
    for run in runs:
        for result in run.results:
            rows.append({"run": run, "r": result})
    return _environment().get_template("report.html.j2").render(runs=runs, rows=rows)


def write_report(runs: list[RunResult], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(runs), encoding="utf-8")
    return path
