"""History store (SQLite and a real PostgreSQL), trends and regression detection."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmload.aggregate import build_results
from llmload.cli import main
from llmload.compare import compare_runs
from llmload.errors import ConfigError, ValidationError
from llmload.history import (
    DEGRADING,
    IMPROVING,
    INSUFFICIENT,
    STABLE,
    HistoryStore,
    PerformanceProfile,
    TrendMetrics,
    profiles,
    trend,
    trends_section,
)
from llmload.metrics import RequestRecord
from llmload.results import RunResult
from tests.conftest import LOCUST, REPO, locust_env

POSTGRES_URL = "postgresql://llmload:llmload@127.0.0.1:5432/llmload_test"


def make_run(run_id: str, *, ttft_ms: float, n: int = 200, errors: int = 0, spread_ms: float = 5.0,
             started_at: float = 1_700_000_000.0, seed: int = 1) -> RunResult:
    """A run built by the real results pipeline from request records with a known TTFT distribution."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        ttft = ttft_ms + rng.uniform(-spread_ms, spread_ms)
        ok = i >= errors
        records.append(
            RequestRecord(
                provider="openai", model="m", scenario="s", endpoint="chat", started_at=started_at + i * 0.05,
                ok=ok, e2e_ms=ttft + 100.0 + rng.uniform(0, 20), ttft_ms=ttft if ok else None,
                itl_ms=[10.0 + rng.random() for _ in range(10)] if ok else [],
                input_tokens=10, output_tokens=11 if ok else 0, error_kind=None if ok else "server_error",
            )
        )
    return RunResult(run_id=run_id, meta={"provider": "openai"}, results=build_results(records, run_id=run_id))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "history.db")
        return
    import psycopg

    # A schema per test: parallel test workers share the one database.
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable in CI ({exc}); "
                        "scripts/test-deps.d/40-postgres.sh should have started it")
        pytest.skip(f"PostgreSQL unreachable locally: {exc}")
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_store_round_trip_and_filters(store_target: str) -> None:
    with HistoryStore(store_target) as store:
        store.save_run(make_run("r1", ttft_ms=200, started_at=1000))
        store.save_run(make_run("r2", ttft_ms=220, started_at=2000))
        runs = store.runs()
        assert [r.run_id for r in runs] == ["r1", "r2"]
        assert runs[1].results[0].ttft is not None
        assert runs[1].results[0].ttft.p50 == pytest.approx(220, abs=6)
        assert store.runs(provider="nope") == []
        assert [r.run_id for r in store.runs(limit=1)] == ["r2"]
        # Storing a run id again replaces it instead of duplicating its results.
        store.save_run(make_run("r1", ttft_ms=300, started_at=1000))
        again = store.run("r1")
        assert again is not None and len(again.results) == 1
        assert again.results[0].ttft is not None and again.results[0].ttft.p50 == pytest.approx(300, abs=6)


def test_a_failed_write_leaves_no_half_run(store_target: str) -> None:
    run = make_run("broken", ttft_ms=200)
    # The second "result" cannot be stored: the write fails after the run row and first result were inserted.
    run.results.append("not a result")  # type: ignore[arg-type]
    with HistoryStore(store_target) as store:
        with pytest.raises(AttributeError):
            store.save_run(run)
        assert store.run("broken") is None
        store.save_run(make_run("fine", ttft_ms=200))
        assert [r.run_id for r in store.runs()] == ["fine"]


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    HistoryStore(str(path)).close()
    import sqlite3

    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_history_target_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="postgresql://"):
        HistoryStore("mysql://u:secret@127.0.0.1/db")


def test_trend_directions_and_confidence() -> None:
    assert trend("ttft_p95_ms", [100, 200]).direction == INSUFFICIENT
    degrading = trend("ttft_p95_ms", [100, 120, 140, 160, 180])
    assert degrading.direction == DEGRADING and degrading.confidence > 0.99
    improving = trend("output_tokens_per_s", [100, 120, 140, 160])
    assert improving.direction == IMPROVING
    stable = trend("e2e_p95_ms", [1000, 1001, 999, 1000])
    assert stable.direction == STABLE and 0 <= stable.confidence <= 1
    noisy = trend("ttft_p95_ms", [100, 300, 90, 310, 120])
    assert noisy.confidence < 0.5
    assert trend("error_rate", [0.0, 0.0, 0.0]).direction == STABLE
    assert trend("error_rate", [0.0, 0.05, 0.10]).direction == DEGRADING


def test_data_classes_validate() -> None:
    with pytest.raises(ValidationError, match="confidence"):
        TrendMetrics("ttft_p95_ms", STABLE, 1.5, 4)
    with pytest.raises(ValidationError, match="points"):
        TrendMetrics("ttft_p95_ms", DEGRADING, 0.5, 2)
    with pytest.raises(ValidationError, match="metric"):
        TrendMetrics("bogus", STABLE, 0.5, 4)
    with pytest.raises(ValidationError, match="runs"):
        PerformanceProfile("p", "m", "s", 0, "a", "b", {})


def test_profiles_and_html_section() -> None:
    runs = [make_run(f"r{i}", ttft_ms=200 + 40 * i, started_at=1000 * i, seed=i) for i in range(4)]
    (profile,) = profiles(runs)
    assert profile.runs == 4 and profile.last_run == "r3"
    assert profile.trends["ttft_p95_ms"].direction == DEGRADING
    assert profile.trends["output_tokens_per_usd"].direction == INSUFFICIENT
    html = trends_section(runs)
    assert "openai:m:s" in html and "degrading" in html and "<script" not in html


def test_compare_needs_both_size_and_significance() -> None:
    base = make_run("base", ttft_ms=200)
    slower = make_run("slow", ttft_ms=260, seed=2)
    same = make_run("same", ttft_ms=201, seed=3)
    verdicts = {v.metric: v for v in compare_runs([base], [slower], 5.0)}
    assert verdicts["ttft_p95_ms"].regression and verdicts["ttft_p95_ms"].significant
    assert not verdicts["error_rate"].regression
    assert not any(v.regression for v in compare_runs([base], [same], 5.0))
    # A big change measured on a handful of noisy samples is not significant: no flag.
    tiny_base = make_run("tb", ttft_ms=200, n=4, spread_ms=150)
    tiny_cand = make_run("tc", ttft_ms=240, n=4, spread_ms=150, seed=9)
    tiny = {v.metric: v for v in compare_runs([tiny_base], [tiny_cand], 5.0)}
    assert not tiny["ttft_p95_ms"].regression
    errors = {v.metric: v for v in compare_runs([base], [make_run("err", ttft_ms=200, errors=40)], 5.0)}
    assert errors["error_rate"].regression


def test_compare_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "h.db")
    with HistoryStore(db) as store:
        for i in range(3):
            store.save_run(make_run(f"base{i}", ttft_ms=200, started_at=1000 * i, seed=i))
    cand = make_run("cand", ttft_ms=300, seed=7)
    cand.save(tmp_path / "cand" / "result.json")
    assert main(["compare", "last:3", str(tmp_path / "cand"), "--history-db", db]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert main(["compare", "base0", "base1", "--history-db", db]) == 0
    assert main(["compare", "base0", "base1", "--history-db", db, "--threshold", "-1"]) == 2
    assert main(["compare", "nope", "base1", "--history-db", db]) == 2
    assert "neither a run folder" in capsys.readouterr().err
    assert main(["history", "--history-db", db, "--provider", "openai"]) == 0
    assert "base2" in capsys.readouterr().out
    assert main(["trends", "--history-db", db]) == 0
    assert "stable" in capsys.readouterr().out


@pytest.mark.slow
def test_locust_runs_land_in_history_and_compare_flags_a_slower_emulator(tmp_path: Path) -> None:
    db = str(tmp_path / "history.db")

    def run(name: str, ttft_ms: int, *html: str) -> None:
        proc = subprocess.run(
            [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "4", "-r", "4", "-t", "3s", "--run-name", name,
             "--only-summary", "--report-dir", str(tmp_path), *html, "--emulator-ttft-ms", str(ttft_ms),
             "--emulator-output-tokens", "8", "--emulator-itl-ms", "5"],
            cwd=REPO, env={**locust_env(), "LLMLOAD_HISTORY": db}, capture_output=True, text=True, timeout=90,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]

    run("fast", 100, "--no-html")
    run("slow", 300)
    # The second run's report carries the trends of both runs (too few for a direction yet).
    report = (tmp_path / "slow" / "report.html").read_text()
    assert "<h2>Trends</h2>" in report and "insufficient data" in report
    with HistoryStore(db) as store:
        assert [r.run_id for r in store.runs()] == ["fast", "slow"]
    cli = [sys.executable, "-m", "llmload"]
    verdict = subprocess.run([*cli, "compare", "fast", "slow", "--history-db", db], capture_output=True, text=True,
                             cwd=REPO, timeout=60)
    assert verdict.returncode == 1, verdict.stdout + verdict.stderr
    assert "ttft_p95_ms" in verdict.stdout and "REGRESSION" in verdict.stdout
    fine = subprocess.run([*cli, "compare", "fast", str(tmp_path / "fast"), "--history-db", db],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert fine.returncode == 0, fine.stdout + fine.stderr


def test_report_gets_a_trends_section_from_history(tmp_path: Path) -> None:
    from argparse import Namespace

    from llmload.history import report_sections
    from llmload.report import write_report

    opts = Namespace(history_db="", no_history=False, report_dir=str(tmp_path))
    with HistoryStore(str(tmp_path / "history.db")) as store:
        for i in range(3):
            store.save_run(make_run(f"old{i}", ttft_ms=200 + 50 * i, started_at=1000 * i, seed=i))
    current = make_run("now", ttft_ms=400, started_at=9000, seed=5)
    sections = report_sections(opts, current)
    assert [title for title, _ in sections] == ["Trends"]
    assert "degrading" in sections[0][1] and ">4<" in sections[0][1]
    html = write_report([current], tmp_path / "report.html", extra_sections=sections).read_text()
    assert "<h2>Trends</h2>" in html and "trend-degrading" in html
    assert report_sections(Namespace(history_db="", no_history=True, report_dir=str(tmp_path)), current) == []


def test_unreachable_postgres_is_one_line_without_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--history-db", "postgresql://llmload:s3cretpw@127.0.0.1:9/llmload_test"]) == 2
    err = capsys.readouterr().err
    assert "unreachable" in err and "s3cretpw" not in err and ":***@" in err
    assert err.count("\n") == 1
