"""Live monitoring in a Locust run: rolling-window figures, SLO alerts, the web UI's LLM tab, Prometheus, history.

The :class:`~llmload.live.Monitor` is a ``Recorder`` listener, so on a master it sees every worker's records as they
arrive. A checker greenlet compares its figures with ``config/thresholds.yaml`` once a second and alerts on each
breach (log, optional webhook, web UI); metrics named in ``--fail-on`` stop the run with exit code 3. When the run is
finalized, the plugin calls :func:`store_history`.

Exit codes: 0 ok, 1 Locust request failures, 2 configuration error, 3 SLO breach.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING, WorkerRunner
from prometheus_client import CollectorRegistry, start_http_server

from llmload.errors import ConfigError, LLMLoadError
from llmload.history import run_history_target, scrub
from llmload.live import (
    Alert,
    Monitor,
    MonitorCollector,
    load_thresholds,
    parse_fail_on,
    post_webhook,
    validate_webhook,
)

logger = logging.getLogger("llmload.monitor")

EXIT_SLO_BREACH = 3
CHECK_INTERVAL_S = 1.0


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    parser.add_argument("--history-db", default="", help="Run history: SQLite path or postgresql:// URL "
                        "(default: $LLMLOAD_HISTORY or history.db in --report-dir)")
    parser.add_argument("--no-history", action="store_true", default=False, help="Do not store this run in history")
    parser.add_argument("--thresholds", default="", help="SLO thresholds YAML (default: config/thresholds.yaml)")
    parser.add_argument("--alert-webhook", default="", include_in_web_ui=False,
                        help="POST each SLO breach as JSON to this URL")
    parser.add_argument("--fail-on", default="", help="Stop the run with exit code 3 when these SLOs break, "
                        "e.g. ttft_p95,error_rate")
    parser.add_argument("--monitor-window", type=float, default=10.0, help="Live monitoring window, seconds")
    parser.add_argument("--prometheus-port", type=int, default=0, include_in_web_ui=False,
                        help="Also serve /metrics on this 127.0.0.1 port (the web UI always serves /metrics)")


def monitor_for(environment: Environment) -> Monitor | None:
    return getattr(environment, "llmload_monitor", None)


def _baseline_figures(history_db: str, needed: bool) -> dict[tuple[str, str], dict[str, float]]:
    """The most recent stored result per provider/model, as live-metric figures, for relative thresholds."""
    if not needed:
        return {}
    from llmload.history import HistoryStore

    figures: dict[tuple[str, str], dict[str, float]] = {}
    with HistoryStore(history_db) as store:
        for run in store.runs():
            for r in run.results:
                if r.level is not None:
                    continue
                values = {"error_rate": r.error_rate, "output_tokens_per_s": r.output_tokens_per_s}
                if r.ttft:
                    values["ttft_p95_ms"] = r.ttft.p95
                if r.itl:
                    values["itl_p50_ms"] = r.itl.p50
                figures[(r.provider, r.model)] = values
    return figures


def setup_monitor(environment: Environment) -> Monitor:
    opts = environment.parsed_options
    if opts.monitor_window <= 0:
        raise ConfigError("--monitor-window must be > 0 seconds")
    thresholds = load_thresholds(opts.thresholds or None)
    fail_on = parse_fail_on(opts.fail_on)
    missing = fail_on - set(thresholds)
    if missing:
        raise ConfigError(f"--fail-on names {', '.join(sorted(missing))} but the thresholds file sets no limit for it")
    monitor = Monitor(
        window_s=opts.monitor_window,
        thresholds=thresholds,
        fail_on=fail_on,
        webhook=validate_webhook(opts.alert_webhook),
        baseline=_baseline_figures(run_history_target(opts), any(t.relative for t in thresholds.values())),
    )
    return monitor


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return
    from llmload.plugin import EXIT_CONFIG_ERROR, state

    try:
        monitor = setup_monitor(environment)
    except LLMLoadError as exc:
        logger.error("llmload: %s", exc)
        raise SystemExit(EXIT_CONFIG_ERROR) from None
    environment.llmload_monitor = monitor  # type: ignore[attr-defined]
    state(environment).recorder.listeners.append(monitor)
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor))
    port = environment.parsed_options.prometheus_port
    if port:
        try:
            start_http_server(port, addr="127.0.0.1", registry=registry)
        except OSError as exc:
            logger.error("llmload: --prometheus-port %d: cannot listen on 127.0.0.1 (%s)", port, exc.strerror or exc)
            raise SystemExit(EXIT_CONFIG_ERROR) from None
    if environment.web_ui is not None:
        from llmload.monitor_web import install_web_ui

        install_web_ui(environment, monitor, registry)
    gevent.spawn(_check_loop, environment, monitor)


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    monitor = monitor_for(environment)
    if monitor is not None:
        monitor.reset()


def _check_loop(environment: Environment, monitor: Monitor) -> None:
    while True:
        gevent.sleep(CHECK_INTERVAL_S)
        # Between runs (web UI idle) the window still holds the last seconds of the previous run: don't judge it.
        runner = environment.runner
        if runner is None or runner.state not in (STATE_SPAWNING, STATE_RUNNING):
            continue
        for alert in monitor.check():
            handle_alert(environment, monitor, alert)


def handle_alert(environment: Environment, monitor: Monitor, alert: Alert) -> None:
    logger.warning("llmload: SLO breach: %s%s", alert.message, " (--fail-on: stopping the run)" if alert.fail else "")
    if monitor.webhook:
        gevent.spawn(post_webhook, monitor.webhook, alert)
    if alert.fail:
        environment.process_exit_code = EXIT_SLO_BREACH
        runner = environment.runner
        if runner is not None:
            gevent.spawn_later(0, runner.quit)


def store_history(environment: Environment, run: Any) -> None:
    """Called by the plugin's finalize: store the run in history unless ``--no-history``. Never fails the run."""
    opts = environment.parsed_options
    if opts is None or getattr(opts, "no_history", False):
        return
    from llmload.history import record_run

    target = run_history_target(opts)
    try:
        where = record_run(run, target)
    except Exception as exc:
        # Database drivers raise their own exception families; the run's files are written either way.
        logger.error("llmload: could not store the run in history: %s: %s", type(exc).__name__,
                     scrub(str(exc), target))
        return
    logger.info("llmload: stored run %s in history %s", run.run_id, where)
