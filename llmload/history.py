"""Run history: every finalized run's BenchmarkResults in SQLite (default) or PostgreSQL, and trends over them.

One code path serves both databases; ``_Dialect`` holds the few differences (placeholders, connecting, the
auto-increment column). A run is stored in one transaction, so an interrupted write never leaves half a run.

Trends fit a least-squares line to each metric over a key's runs (in run order). The direction comes from the
relative change the line predicts across those runs (beyond ``STABLE_BAND`` of the mean = a trend); the
confidence is the fit's R², the share of the run-to-run variation the trend explains. With fewer than
``MIN_TREND_POINTS`` runs a trend says "insufficient data" instead of guessing.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from llmload.errors import ConfigError, ValidationError
from llmload.results import BenchmarkResult, RunResult, _json_default
from llmload.secrets import redact

logger = logging.getLogger("llmload.history")

DEFAULT_HISTORY_PATH = "reports/history.db"
HISTORY_ENV = "LLMLOAD_HISTORY"
MIN_TREND_POINTS = 3
STABLE_BAND = 0.05
"""A fitted change smaller than 5% of the metric's mean across the runs counts as stable."""
ERROR_RATE_STABLE_ABS = 0.01
"""Error rates near zero make relative change meaningless; below one percentage point of change is stable."""

IMPROVING = "improving"
DEGRADING = "degrading"
STABLE = "stable"
INSUFFICIENT = "insufficient data"

TREND_METRICS: dict[str, bool] = {
    "ttft_p95_ms": False,
    "e2e_p95_ms": False,
    "output_tokens_per_s": True,
    "error_rate": False,
    "output_tokens_per_usd": True,
}
"""Trend metrics and whether higher is better."""


def display_target(target: str) -> str:
    """The target for messages: a URL's password masked (``redact`` knows API keys, not URL credentials)."""
    parts = urlsplit(target)
    if parts.password is None:
        return redact(target)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return redact(urlunsplit(parts._replace(netloc=netloc)))


def scrub(text: str, target: str) -> str:
    """``text`` with the target URL's password masked, wherever a driver's message repeats it."""
    password = urlsplit(target).password if "://" in target else None
    return redact(text.replace(password, "***") if password else text)


def history_target(explicit: str | None = None) -> str:
    """The history database: an explicit path/URL, else ``$LLMLOAD_HISTORY``, else ``reports/history.db``."""
    return explicit or os.environ.get(HISTORY_ENV) or DEFAULT_HISTORY_PATH


class _Dialect:
    """What differs between SQLite and PostgreSQL for this module's handful of statements."""

    name = "sqlite"
    placeholder = "?"
    id_column = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, target: str) -> None:
        self.target = target

    def connect(self) -> Any:
        path = Path(self.target)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn


class _PostgresDialect(_Dialect):
    name = "postgresql"
    placeholder = "%s"
    id_column = "BIGSERIAL PRIMARY KEY"

    def connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.target, connect_timeout=10)
        except psycopg.OperationalError as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"history database {display_target(self.target)} is unreachable: "
                              f"{scrub(detail, self.target)}") from None


def _dialect_for(target: str) -> _Dialect:
    if target.startswith(("postgresql://", "postgres://")):
        return _PostgresDialect(target)
    if "://" in target:
        raise ConfigError(f"history database '{display_target(target)}' must be a file path or a postgresql:// URL")
    return _Dialect(target)


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS llmload_runs (
        run_id TEXT PRIMARY KEY,
        recorded_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        meta TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS llmload_results (
        id {id_column},
        run_id TEXT NOT NULL REFERENCES llmload_runs(run_id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        scenario TEXT NOT NULL,
        level INTEGER,
        started_at DOUBLE PRECISION NOT NULL,
        requests_total INTEGER NOT NULL,
        error_rate DOUBLE PRECISION NOT NULL,
        ttft_p95_ms DOUBLE PRECISION,
        e2e_p95_ms DOUBLE PRECISION,
        output_tokens_per_s DOUBLE PRECISION NOT NULL,
        cost_usd DOUBLE PRECISION,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS llmload_results_key ON llmload_results (provider, model, scenario, started_at)",
)


@dataclass(frozen=True, slots=True)
class HistoryRun:
    """One stored run: its id, when it started, its metadata and results."""

    run_id: str
    recorded_at: float
    started_at: float | None
    meta: dict[str, Any]
    results: list[BenchmarkResult]

    def to_run_result(self) -> RunResult:
        return RunResult(run_id=self.run_id, meta=self.meta, results=self.results)


class HistoryStore:
    """Stores runs and reads them back, on SQLite or PostgreSQL."""

    def __init__(self, target: str | None = None) -> None:
        self.target = history_target(target)
        self.dialect = _dialect_for(self.target)
        self._conn = self.dialect.connect()
        with self._transaction() as cur:
            for statement in _SCHEMA:
                cur.execute(statement.format(id_column=self.dialect.id_column))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        try:
            yield cur
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise
        finally:
            cur.close()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.dialect.placeholder)

    def save_run(self, run: RunResult) -> None:
        """Store (or replace) one run and all its results atomically."""
        started = min((r.started_at for r in run.results), default=None)
        with self._transaction() as cur:
            cur.execute(self._sql("DELETE FROM llmload_runs WHERE run_id = ?"), (run.run_id,))
            cur.execute(
                self._sql("INSERT INTO llmload_runs (run_id, recorded_at, started_at, meta) VALUES (?, ?, ?, ?)"),
                (run.run_id, time.time(), started, json.dumps(run.meta, default=_json_default)),
            )
            for result in run.results:
                cur.execute(
                    self._sql(
                        "INSERT INTO llmload_results (run_id, provider, model, scenario, level, started_at, "
                        "requests_total, error_rate, ttft_p95_ms, e2e_p95_ms, output_tokens_per_s, cost_usd, data) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ),
                    (
                        run.run_id,
                        result.provider,
                        result.model,
                        result.scenario,
                        result.level,
                        result.started_at,
                        result.requests_total,
                        result.error_rate,
                        result.ttft.p95 if result.ttft else None,
                        result.e2e.p95 if result.e2e else None,
                        result.output_tokens_per_s,
                        result.tokens.cost_usd,
                        json.dumps(result.to_dict(), default=_json_default),
                    ),
                )

    def runs(
        self,
        *,
        provider: str | None = None,
        model: str | None = None,
        scenario: str | None = None,
        limit: int | None = None,
        run_id: str | None = None,
    ) -> list[HistoryRun]:
        """Stored runs, oldest first, keeping only results that match the filters (and runs that have any)."""
        where, params = [], []
        for column, value in (("provider", provider), ("model", model), ("scenario", scenario), ("run_id", run_id)):
            if value:
                where.append(f"r.{column} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    "SELECT u.run_id, u.recorded_at, u.started_at, u.meta, r.data FROM llmload_runs u "
                    f"JOIN llmload_results r ON r.run_id = u.run_id {clause} "
                    "ORDER BY u.started_at, u.run_id, r.id"
                ),
                params,
            )
            rows = cur.fetchall()
        grouped: dict[str, HistoryRun] = {}
        for run_id, recorded_at, started_at, meta, data in rows:
            run = grouped.get(run_id)
            if run is None:
                run = grouped[run_id] = HistoryRun(run_id, recorded_at, started_at, json.loads(meta), [])
            run.results.append(BenchmarkResult.from_dict(json.loads(data)))
        runs = list(grouped.values())
        return runs[-limit:] if limit else runs

    def run(self, run_id: str) -> HistoryRun | None:
        found = self.runs(run_id=run_id)
        return found[0] if found else None


def run_history_target(opts: Any) -> str:
    """``--history-db``, else ``$LLMLOAD_HISTORY``, else ``history.db`` in the run's ``--report-dir`` (by default
    ``reports/history.db``), so runs written to a separate report folder keep a separate history."""
    explicit = getattr(opts, "history_db", "") or os.environ.get(HISTORY_ENV)
    return explicit or str(Path(getattr(opts, "report_dir", "reports")) / "history.db")


def report_sections(opts: Any, run: RunResult) -> list[tuple[str, Any]]:
    """The HTML report's trends section for this run's keys: stored runs plus this one (not stored yet). Empty with
    ``--no-history``; a history that cannot be read is logged and leaves the report without the section."""
    if opts is None or getattr(opts, "no_history", False):
        return []
    from markupsafe import Markup

    keys = {r.key for r in run.results}
    try:
        with HistoryStore(run_history_target(opts)) as store:
            stored = [r for r in store.runs() if r.run_id != run.run_id]
    except Exception as exc:
        # The report matters more than its trends section; database drivers raise their own exception families.
        logger.warning("llmload: no trends in the report, history unreadable: %s",
                       scrub(str(exc), run_history_target(opts)))
        return []
    history = [h.to_run_result() for h in stored]
    relevant = [r for r in history if any(res.key in keys for res in r.results)] + [run]
    title, markup = trends_report_section(relevant)
    return [(title, Markup(markup))]


def record_run(run: RunResult, target: str | None = None) -> str:
    """Store a finalized run in the history database; returns where it went (redacted)."""
    with HistoryStore(target) as store:
        store.save_run(run)
        return display_target(store.target)


# --- trends ---------------------------------------------------------------------------------------------------


def metric_value(result: BenchmarkResult, metric: str) -> float | None:
    """One trend metric of one result, or None when the result does not have it."""
    if metric == "ttft_p95_ms":
        return result.ttft.p95 if result.ttft else None
    if metric == "e2e_p95_ms":
        return result.e2e.p95 if result.e2e else None
    if metric == "output_tokens_per_s":
        return result.output_tokens_per_s
    if metric == "error_rate":
        return result.error_rate
    if metric == "output_tokens_per_usd":
        cost = result.tokens.cost_usd
        return result.tokens.output_tokens / cost if cost else None
    raise ValidationError(f"unknown trend metric '{metric}'; use one of {', '.join(TREND_METRICS)}")


@dataclass(frozen=True, slots=True)
class TrendMetrics:
    """The trend of one metric across a key's runs."""

    metric: str
    direction: str
    confidence: float
    n_points: int
    first: float | None = None
    last: float | None = None
    slope_per_run: float | None = None
    relative_change: float | None = None
    """Change the fitted line predicts from the first to the last run, relative to the mean."""
    r_squared: float | None = None

    def __post_init__(self) -> None:
        if self.metric not in TREND_METRICS:
            raise ValidationError(f"TrendMetrics.metric must be one of {', '.join(TREND_METRICS)}, got '{self.metric}'")
        if self.direction not in (IMPROVING, DEGRADING, STABLE, INSUFFICIENT):
            raise ValidationError(f"TrendMetrics.direction must be improving, degrading, stable or "
                                  f"'{INSUFFICIENT}', got '{self.direction}'")
        if not (0.0 <= self.confidence <= 1.0) or math.isnan(self.confidence):
            raise ValidationError(f"TrendMetrics.confidence must be within [0, 1], got {self.confidence}")
        if self.n_points < 0:
            raise ValidationError("TrendMetrics.n_points must be >= 0")
        if self.direction != INSUFFICIENT and self.n_points < MIN_TREND_POINTS:
            raise ValidationError(f"TrendMetrics needs >= {MIN_TREND_POINTS} points for a direction, "
                                  f"got {self.n_points}")


def trend(metric: str, values: Sequence[float]) -> TrendMetrics:
    """Fit a line to ``values`` (in run order) and classify the metric's direction."""
    higher_is_better = TREND_METRICS.get(metric)
    if higher_is_better is None:
        raise ValidationError(f"unknown trend metric '{metric}'; use one of {', '.join(TREND_METRICS)}")
    ys = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = int(ys.size)
    first = float(ys[0]) if n else None
    last = float(ys[-1]) if n else None
    if n < MIN_TREND_POINTS:
        return TrendMetrics(metric, INSUFFICIENT, 0.0, n, first, last)
    xs = np.arange(n, dtype=float)
    slope, intercept = np.polyfit(xs, ys, 1)
    fitted = slope * xs + intercept
    ss_tot = float(((ys - ys.mean()) ** 2).sum())
    r_squared = 1.0 - float(((ys - fitted) ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0
    r_squared = min(1.0, max(0.0, r_squared))
    change = float(slope) * (n - 1)
    mean = float(abs(ys.mean()))
    relative = change / mean if mean > 0 else 0.0
    if metric == "error_rate":
        moving = abs(change) >= ERROR_RATE_STABLE_ABS
    else:
        moving = abs(relative) >= STABLE_BAND
    if not moving:
        direction = STABLE
        # A flat series is confidently stable; a noisy one with no trend much less so.
        spread = float(ys.std()) / mean if mean > 0 else 0.0
        confidence = max(0.0, min(1.0, 1.0 - r_squared - spread))
    else:
        direction = IMPROVING if (change > 0) == higher_is_better else DEGRADING
        confidence = r_squared
    return TrendMetrics(metric, direction, confidence, n, first, last, float(slope), relative, r_squared)


@dataclass(frozen=True, slots=True)
class PerformanceProfile:
    """A provider/model/scenario's history: how many runs, the latest figures and each metric's trend."""

    provider: str
    model: str
    scenario: str
    runs: int
    first_run: str
    last_run: str
    latest: dict[str, float | None]
    trends: dict[str, TrendMetrics] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (self.provider and self.model and self.scenario):
            raise ValidationError("PerformanceProfile needs provider, model and scenario")
        if self.runs < 1:
            raise ValidationError("PerformanceProfile.runs must be >= 1")
        unknown = set(self.trends) - set(TREND_METRICS)
        if unknown:
            raise ValidationError(f"PerformanceProfile.trends has unknown metrics: {', '.join(sorted(unknown))}")

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.model, self.scenario)


def profiles(runs: Sequence[HistoryRun | RunResult]) -> list[PerformanceProfile]:
    """One PerformanceProfile per provider/model/scenario over ``runs`` (oldest first). Load-level results are
    left out: a sweep's levels are different loads, not repeated measurements of one."""
    series: dict[tuple[str, str, str], list[tuple[str, BenchmarkResult]]] = defaultdict(list)
    for run in runs:
        for result in run.results:
            if result.level is None:
                series[result.key].append((run.run_id, result))
    out = []
    for key, items in sorted(series.items()):
        trends = {m: trend(m, [v for _, r in items if (v := metric_value(r, m)) is not None]) for m in TREND_METRICS}
        out.append(
            PerformanceProfile(
                provider=key[0],
                model=key[1],
                scenario=key[2],
                runs=len(items),
                first_run=items[0][0],
                last_run=items[-1][0],
                latest={m: metric_value(items[-1][1], m) for m in TREND_METRICS},
                trends=trends,
            )
        )
    return out


_ARROWS = {IMPROVING: "▲ improving", DEGRADING: "▼ degrading", STABLE: "= stable", INSUFFICIENT: "? insufficient data"}


def trends_table(results_history: Sequence[HistoryRun | RunResult]) -> str:
    """Each key's trend per metric as a self-contained HTML table (styles inline, no scripts)."""
    rows = []
    for profile in profiles(results_history):
        cells = []
        for metric in TREND_METRICS:
            t = profile.trends[metric]
            css = t.direction.split()[0]
            title = f"n={t.n_points}, R²={t.r_squared:.2f}" if t.r_squared is not None else f"n={t.n_points}"
            cells.append(
                f'<td class="trend-{css}" title="{html.escape(title)}">{html.escape(_ARROWS[t.direction])}'
                f"<br><small>{_fmt(profile.latest[metric])} · conf {t.confidence:.2f}</small></td>"
            )
        name = html.escape(f"{profile.provider}:{profile.model}:{profile.scenario}")
        rows.append(f"<tr><td>{name}</td><td>{profile.runs}</td>{''.join(cells)}</tr>")
    header = "".join(f"<th>{html.escape(m)}</th>" for m in TREND_METRICS)
    body = "".join(rows) or f'<tr><td colspan="{len(TREND_METRICS) + 2}">no history yet</td></tr>'
    return (
        "<style>.trend-improving{color:#1a7f37}.trend-degrading{color:#cf222e}.trend-stable{color:#57606a}"
        ".trend-insufficient{color:#9a6700}</style>"
        f'<table class="llmload-trends"><thead><tr><th>provider:model:scenario</th><th>runs</th>{header}</tr>'
        f"</thead><tbody>{body}</tbody></table>"
        f"<p class=\"note\">Direction: fitted change across the runs beyond {STABLE_BAND:.0%} of the mean "
        f"(error rate: {ERROR_RATE_STABLE_ABS:.0%} points); confidence: the fit's R²; fewer than "
        f"{MIN_TREND_POINTS} runs: insufficient data.</p>"
    )


def trends_section(results_history: Sequence[HistoryRun | RunResult]) -> str:
    """A complete HTML ``<section>`` with a heading and :func:`trends_table`."""
    return f'<section class="llmload-trends"><h2>Trends</h2>{trends_table(results_history)}</section>'


def trends_report_section(results_history: Sequence[HistoryRun | RunResult]) -> tuple[str, str]:
    """``(title, html)`` for the HTML report's ``extra_sections`` (which adds the section and heading itself)."""
    return ("Trends", trends_table(results_history))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:.1f}"
