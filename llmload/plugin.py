"""llmload's Locust plugin: command-line options, target resolution, the embedded emulator, run finalization.

Importing this module (the locustfiles do, through ``llmload.users``) registers listeners on Locust's global
``events``. Options are added through ``init_command_line_parser``, so they show in the web UI and travel from
master to workers with Locust's own spawn messages.

Target resolution, per provider: ``--host`` wins; else the provider's usual environment variables (real
service); else, when no credentials are present, the embedded emulator, started as a subprocess on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import platform
import random
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import locust
from locust import events
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING, LocalRunner, MasterRunner, WorkerRunner

from llmload import __version__, monitor, openloop, quality_options, resilience, saturation, shapes
from llmload.aggregate import EXACT_SAMPLES_DEFAULT, RunAccumulator
from llmload.config import load_scenarios, select_scenarios
from llmload.emulator.config import MockConfiguration, parse_faults
from llmload.emulator.server import EmulatorProcess
from llmload.errors import ConfigError, LLMLoadError
from llmload.metrics import RequestRecord
from llmload.providers import provider_class
from llmload.providers.base import Provider, ProviderSettings, validate_base_url
from llmload.recorder import Recorder
from llmload.results import BenchmarkScenario, RunResult
from llmload.secrets import install_log_redaction, read_secret

logger = logging.getLogger("llmload")

EXIT_CONFIG_ERROR = 2


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    # Added on the parser itself (not a group): only Locust's parser knows include_in_web_ui.
    group = parser
    group.add_argument("--provider", default="openai", help="openai, anthropic, bedrock, ollama or mock")
    group.add_argument("--model", default="", help="Model id (default: the provider's default model)")
    group.add_argument("--scenario", default="", help="Comma-separated scenario names from the scenarios file")
    group.add_argument("--scenarios-file", default="", help="Scenarios YAML (default: config/scenarios.yaml)")
    group.add_argument("--think-time", type=float, default=0.0, help="Seconds each user waits between requests")
    group.add_argument("--bedrock-api", default="converse", choices=["converse", "invoke"],
                       help="Bedrock chat API: Converse/ConverseStream, or InvokeModel[WithResponseStream] with an "
                       "Anthropic Messages body")
    group.add_argument(
        "--start-jitter", type=float, default=0.5, help="Each user waits a random 0..N s before its first request"
    )
    group.add_argument("--request-timeout", type=float, default=60.0, help="Per-read timeout of SDK calls, seconds")
    group.add_argument(
        "--emulator",
        default="auto",
        choices=["auto", "always", "never"],
        help="Use the embedded emulator: auto = when no --host and no credentials are set",
    )
    group.add_argument("--emulator-ttft-ms", type=float, default=200.0, help="Emulator time to first token (ms)")
    group.add_argument("--emulator-itl-ms", type=float, default=20.0, help="Emulator inter-token latency (ms)")
    group.add_argument("--emulator-output-tokens", type=int, default=64, help="Emulator tokens per answer")
    group.add_argument("--emulator-reasoning-tokens", type=int, default=0,
                       help="Emulator reasoning (thinking) tokens streamed before each answer, as a reasoning model")
    group.add_argument("--emulator-jitter", type=float, default=0.0, help="Emulator relative timing jitter")
    group.add_argument("--emulator-error-rate", type=float, default=0.0, help="Emulator failure probability")
    group.add_argument("--emulator-faults", default="", help="Fault weights, e.g. rate_limited=1,disconnect=1")
    group.add_argument("--emulator-seed", type=int, default=0, help="Emulator random seed")
    group.add_argument("--report-dir", default="reports", help="Where run folders (result.json, report.html) go")
    group.add_argument("--run-name", default="", help="Run folder name (default: timestamp and provider)")
    group.add_argument("--no-html", action="store_true", default=False, help="Write result.json but no HTML report")
    group.add_argument(
        "--exact-samples",
        type=int,
        default=EXACT_SAMPLES_DEFAULT,
        help="Latency samples kept exactly per distribution; past this, an HDR histogram (≤0.1%% error) keeps "
        "memory flat",
    )
    group.add_argument(
        "--llmload-target-url", default="", include_in_web_ui=False, help="(internal) resolved target URL"
    )


@dataclass
class Session:
    """What every user of one process shares: the resolved provider, model and scenarios."""

    provider_cls: type[Provider]
    settings: ProviderSettings
    model: str
    scenarios: list[BenchmarkScenario]
    think_time_s: float
    start_jitter_s: float = 0.0

    _provider: Provider | None = None

    @property
    def provider(self) -> Provider:
        """One SDK client per process, shared by every user: building a client costs ~25 ms of CPU (SSL context,
        pools), which would block the event loop mid-run and bunch users into lock-step if each user built its own.
        The SDK clients are safe to share and pool their connections."""
        if self._provider is None:
            self._provider = self.provider_cls(self.settings)
        return self._provider

    def close(self) -> None:
        if self._provider is not None:
            self._provider.close()
            self._provider = None

    def pick_scenario(self, rng: random.Random) -> BenchmarkScenario:
        if len(self.scenarios) == 1:
            return self.scenarios[0]
        return rng.choices(self.scenarios, weights=[s.weight for s in self.scenarios])[0]


class State:
    """Per-environment plugin state."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.recorder = Recorder(environment)
        self.emulator: EmulatorProcess | None = None
        self.run_started: float | None = None
        self.window_start: float | None = None
        self.finalized = True
        self.sessions: dict[str, Session] = {}
        self.run_dir: Path | None = None


def state(environment: Environment) -> State:
    existing = getattr(environment, "llmload_state", None)
    if existing is None:
        existing = State(environment)
        environment.llmload_state = existing  # type: ignore[attr-defined]
    return existing


def fail_run(environment: Environment, message: str) -> None:
    """Report a configuration error as one line and stop with exit code 2."""
    logger.error("llmload: %s", message)
    environment.process_exit_code = EXIT_CONFIG_ERROR
    runner = environment.runner
    if runner is not None:
        gevent.spawn_later(0, runner.quit)


def _options(environment: Environment) -> Any:
    if environment.parsed_options is None:
        raise ConfigError("llmload needs Locust's command-line options; run it with the locust command")
    return environment.parsed_options


def _mock_config(opts: Any) -> MockConfiguration:
    return MockConfiguration(
        ttft_ms=opts.emulator_ttft_ms,
        itl_ms=opts.emulator_itl_ms,
        output_tokens=opts.emulator_output_tokens,
        reasoning_tokens=opts.emulator_reasoning_tokens,
        jitter=opts.emulator_jitter,
        error_rate=opts.emulator_error_rate,
        fault_weights=parse_faults(opts.emulator_faults) if opts.emulator_faults else {"server_error": 1.0},
        seed=opts.emulator_seed,
        outage=resilience.parse_outage(getattr(opts, "emulator_outage", "")),
        quality=quality_options.emulator_quality(opts),
    )


def uses_emulator(environment: Environment) -> bool:
    opts = _options(environment)
    cls = provider_class(opts.provider)
    if cls.emulator_protocol is None:
        return False
    if opts.emulator == "always":
        return True
    if opts.emulator == "never":
        return False
    return not environment.host and not cls.has_credentials()


def ensure_target(environment: Environment) -> None:
    """On the master or a local runner: validate options and start the emulator if the target needs it."""
    opts = _options(environment)
    st = state(environment)
    cls = provider_class(opts.provider)
    load_and_select_scenarios(opts, "simple_query")
    if opts.think_time < 0 or opts.request_timeout <= 0:
        raise ConfigError("--think-time must be >= 0 and --request-timeout > 0")
    if environment.host:
        validate_base_url(environment.host, opts.provider)
    if uses_emulator(environment):
        config = _mock_config(opts)
        if st.emulator is None or st.emulator.config != config:
            if st.emulator is not None:
                st.emulator.stop()
            st.emulator = EmulatorProcess("all", config).start()
            logger.info("llmload: no credentials or --host for %s; using the embedded emulator at %s",
                        opts.provider, st.emulator.url)
        opts.llmload_target_url = cls.emulator_base_url(st.emulator.url)
    else:
        # Without this, the SDK would send a keyless request to the real service and fail on every request.
        if not environment.host and cls.api_key_env and not cls.has_credentials():
            raise ConfigError(
                f"provider '{opts.provider}' has no credentials: set {cls.api_key_env}, pass --host for a server "
                "that needs none, or drop --emulator never to use the embedded emulator"
            )
        opts.llmload_target_url = ""


def load_and_select_scenarios(opts: Any, default: str) -> list[BenchmarkScenario]:
    scenarios = quality_options.scenarios_with_tasks(load_scenarios(opts.scenarios_file or None), opts)
    return select_scenarios(scenarios, opts.scenario or default)


def session_for(environment: Environment, default_scenarios: str) -> Session:
    """The process-wide Session for a user class's default scenarios, built on first use."""
    st = state(environment)
    existing = st.sessions.get(default_scenarios)
    if existing is not None:
        return existing
    opts = _options(environment)
    cls = provider_class(opts.provider)
    target = opts.llmload_target_url or environment.host or None
    emulated = bool(opts.llmload_target_url)
    if environment.host and not emulated:
        target = validate_base_url(environment.host, opts.provider)
    api_key = None if emulated else (read_secret(cls.api_key_env) if cls.api_key_env else None)
    settings = ProviderSettings(
        base_url=target,
        api_key=api_key,
        timeout_s=opts.request_timeout,
        max_connections=max(64, environment.runner.target_user_count if environment.runner else 64),
        emulated=emulated,
        extra=_provider_extra(opts, cls),
    )
    scenarios = load_and_select_scenarios(opts, default_scenarios)
    # A chat model id would be rejected by an embeddings endpoint (and vice versa): default by what the run sends.
    embeddings_only = all(s.endpoint == "embeddings" for s in scenarios) and cls.default_embedding_model
    session = Session(
        provider_cls=cls,
        settings=settings,
        model=opts.model or (cls.default_embedding_model if embeddings_only else cls.default_model),
        scenarios=scenarios,
        think_time_s=opts.think_time,
        start_jitter_s=max(0.0, opts.start_jitter),
    )
    st.sessions[default_scenarios] = session
    return session


def _provider_extra(opts: Any, cls: type[Provider]) -> dict[str, Any]:
    """Provider-specific settings: the in-process mock takes the same --emulator-* knobs the emulator server
    would; Bedrock takes which of its APIs to call."""
    if cls.emulator_protocol is None:
        return {"mock_config": _mock_config(opts)}
    if opts.provider == "bedrock":
        return {"api": opts.bedrock_api}
    return {}


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    install_log_redaction()
    for noisy in ("httpx", "httpx2", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _environments.append(environment)
    st = state(environment)
    st.recorder.register_messages()
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return
    try:
        ensure_target(environment)
    except LLMLoadError as exc:
        logger.error("llmload: %s", exc, exc_info=resilience.debug_enabled(environment))
        sys.exit(EXIT_CONFIG_ERROR)


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    st = state(environment)
    close_sessions(st)
    if isinstance(environment.runner, WorkerRunner):
        return
    try:
        ensure_target(environment)
    except LLMLoadError as exc:
        fail_run(environment, str(exc))
        return
    st.run_started = time.time()
    st.window_start = None
    st.finalized = False
    opts = _options(environment)
    outage = _mock_config(opts).outage if st.emulator is not None else None
    aggregate = RunAccumulator(
        is_measured=lambda record: _is_measured(environment, record),
        exact_samples=max(1, opts.exact_samples),
        outage_end=st.emulator.started_at + outage[1] if st.emulator is not None and outage else None,
    )
    st.recorder.start_run(aggregate, _records_log_path(opts))


def _is_measured(environment: Environment, record: RequestRecord) -> bool:
    """Whether a record counts in the results: inside its level's window, or else after the ramp-up."""
    if shapes.tracker(environment).windows:
        return shapes.in_measured_window(environment, record)
    window_start = state(environment).window_start
    return window_start is not None and record.started_at >= window_start


def _records_log_path(opts: Any) -> Path:
    """Where the records log grows during the run; finalize moves it into the run folder."""
    return Path(opts.report_dir) / f".records-{os.getpid()}-{time.time_ns()}.jsonl.gz"


_environments: list[Environment] = []
"""Environments seen at init: Locust's spawning_complete event does not say which one spawned."""


@events.spawning_complete.add_listener
def on_spawning_complete(**_: Any) -> None:
    for environment in _environments:
        st = state(environment)
        if st.window_start is None:
            st.window_start = time.time()


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner) or state(environment).finalized:
        return
    if isinstance(runner, MasterRunner):
        still_running = [c.id for c in runner.clients.all if c.state in (STATE_RUNNING, STATE_SPAWNING)]
        if still_running:
            # MasterRunner.quit() (headless --run-time, end of a load shape) fires test_stop without stopping the
            # workers, then kills the master's message loop: their last records would arrive too late. Stop them
            # now and wait for their flush here, while the master still listens and before quit() goes on. A
            # stopped worker leaves runner.clients, so quit() would no longer tell it to quit: do that here.
            for client_id in still_running:
                runner.send_message("stop", client_id=client_id)
            _finalize_after_flush(environment)
            for client_id in still_running:
                runner.send_message("quit", client_id=client_id)
            return
        # Workers flush their last records right after they stop; wait for them off the runner's greenlet.
        gevent.spawn(_finalize_after_flush, environment)
    elif isinstance(runner, LocalRunner) or runner is None:
        finalize(environment)


def close_sessions(st: State) -> None:
    for session in st.sessions.values():
        session.close()
    st.sessions.clear()


def _finalize_after_flush(environment: Environment) -> None:
    state(environment).recorder.wait_for_workers(timeout_s=environment.stop_timeout + 10)
    finalize(environment)


@events.quitting.add_listener
def on_quitting(environment: Environment, **_: Any) -> None:
    st = state(environment)
    if not isinstance(environment.runner, WorkerRunner) and not st.finalized:
        finalize(environment, quitting=True)
    if st.emulator is not None:
        st.emulator.stop()
        st.emulator = None


def finalize(environment: Environment, *, partial: bool = False, quitting: bool = False) -> RunResult | None:
    """Turn the run's records into BenchmarkResults and write result.json and the HTML report."""
    st = state(environment)
    if st.finalized:
        return None
    st.finalized = True
    opts = _options(environment)
    recorder = st.recorder
    status = resilience.run_status(environment, st.run_started, quitting=quitting)
    log_path = recorder.close_log()
    if not recorder.records_total:
        logger.warning("llmload: no requests were recorded; nothing to write")
        if log_path is not None:
            log_path.unlink(missing_ok=True)
        return None
    run_id = opts.run_name or time.strftime("%Y%m%d-%H%M%S", time.localtime(st.run_started or time.time()))
    if not opts.run_name:
        run_id = f"{run_id}-{opts.provider}"
    run_dir = Path(opts.report_dir) / run_id
    levels = shapes.tracker(environment)
    results = recorder.aggregate.results(
        run_id=run_id,
        levels=shapes.level_loads(environment),
        load=_load_description(environment),
        price_for=quality_options.price_for(opts),
        partial=partial or status["partial"],
    )
    lag_warnings = openloop.lag_warnings(results)
    meta = {**run_metadata(environment, recorder.records_total), **status, **levels.meta()}
    meta["interrupted_requests"] = recorder.records_interrupted
    saturation.apply(environment, results, meta)
    if lag_warnings:
        meta["warnings"] = lag_warnings
    meta["partial"] = meta["partial"] or partial
    run = RunResult(run_id=run_id, meta=meta, results=results)
    run.save(run_dir / "result.json")
    if log_path is not None:
        log_path.replace(run_dir / "records.jsonl.gz")
    from llmload.export import write_csv  # pandas is slow to import; only pay for it when a run ends

    write_csv(run, run_dir / "result.csv")
    st.run_dir = run_dir
    logger.info("llmload: wrote %s", run_dir / "result.json")
    if not opts.no_html:
        from llmload.history import report_sections
        from llmload.report import write_report

        path = write_report([run], run_dir / "report.html", extra_sections=report_sections(opts, run))
        logger.info("llmload: wrote %s", path)
    monitor.store_history(environment, run)
    print_summary(run)
    for line in [*shapes.summary_lines(environment), *(f"WARNING: {w}" for w in lag_warnings)]:
        print(line, flush=True)
    return run


def _load_description(environment: Environment) -> dict[str, Any]:
    opts = environment.parsed_options
    runner = environment.runner
    return {
        "users": getattr(opts, "num_users", None),
        "spawn_rate": getattr(opts, "spawn_rate", None),
        "run_time_s": getattr(opts, "run_time", None),
        "workers": _worker_count(environment) if isinstance(runner, MasterRunner) else 0,
        "shape": type(environment.shape_class).__name__ if environment.shape_class else "constant_users",
    }


def _worker_count(environment: Environment) -> int:
    """Workers that took part: stopped workers leave runner.clients, so count those that sent records too."""
    recorder = state(environment).recorder
    connected = {c.id for c in environment.runner.clients.all} if environment.runner is not None else set()
    return len(connected | recorder.workers_seen | recorder.flushed_workers)


def run_metadata(environment: Environment, record_count: int) -> dict[str, Any]:
    """Everything needed to reproduce the run, and nothing secret."""
    opts = _options(environment)
    st = state(environment)
    target = "emulator" if opts.llmload_target_url else (environment.host or f"{opts.provider} (default endpoint)")
    return {
        "llmload_version": __version__,
        "locust_version": locust.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "started_at": st.run_started,
        "ended_at": time.time(),
        "window_start": st.window_start,
        "records": record_count,
        "provider": opts.provider,
        "model": opts.model or provider_class(opts.provider).default_model,
        "scenarios": opts.scenario,
        "target": target,
        "emulator": _mock_config(opts).to_dict() if opts.llmload_target_url else None,
        "load": _load_description(environment),
        "command": " ".join(_safe_argv()),
    }


def _safe_argv() -> list[str]:
    from llmload.secrets import redact

    return [redact(a) for a in sys.argv]


def print_summary(run: RunResult) -> None:
    header = f"{'provider:model:scenario':<44} {'reqs':>6} {'err%':>6} {'TTFT p50':>9} {'TTFT p95':>9} " \
             f"{'ITL p50':>8} {'e2e p50':>9} {'e2e p95':>9} {'req/s':>7} {'tok/s':>8}"
    lines = ["", f"llmload results ({run.run_id})", header, "-" * len(header)]

    def ms(metric: Any, field: str) -> str:
        return f"{getattr(metric, field):.1f}" if metric is not None else "-"

    for r in run.results:
        name = f"{r.provider}:{r.model}:{r.scenario}" + (f"@L{r.level}" if r.level is not None else "")
        lines.append(
            f"{name[:44]:<44} {r.requests_total:>6} {100 * r.error_rate:>5.1f}% {ms(r.ttft, 'p50'):>9} "
            f"{ms(r.ttft, 'p95'):>9} {ms(r.itl, 'p50'):>8} {ms(r.e2e, 'p50'):>9} {ms(r.e2e, 'p95'):>9} "
            f"{r.requests_per_s:>7.2f} {r.output_tokens_per_s:>8.1f}"
        )
    print("\n".join(lines), flush=True)
