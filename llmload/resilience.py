"""Interruptions and injected outages: what the Locust plugin needs to write honest partial results.

* Signals: Locust's headless ``shutdown`` fires ``quitting`` on SIGTERM (gevent handler) and after a
  KeyboardInterrupt (SIGINT), *before* it stops the runner. A run that is still unfinalized at ``quitting`` did not
  reach its planned end, so the plugin finalizes it as partial. The signal handlers here only remember which
  signal it was, then hand over to Locust's own handling.
* A headless master still waiting for ``--expect-workers`` handles SIGINT/SIGTERM itself: one line, the workers
  that did connect told to quit, exit code 128 + the signal number (130, 143).
* Lost workers: the master polls its workers' heartbeat state; a worker that goes missing is logged once, left
  out of the final flush wait, and recorded in ``meta["lost_workers"]``; the run goes on without it.
* Options: ``--emulator-outage START,END`` (an injected outage window) and ``--llmload-debug`` (tracebacks on
  configuration errors).
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import STATE_INIT, MasterRunner

from llmload.reliability import parse_outage

logger = logging.getLogger("llmload")

WORKER_POLL_S = 1.0
RUN_TIME_TOLERANCE_S = 0.5
LOOPBACK = "127.0.0.1"

__all__ = ["parse_outage"]


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    # Locust's web UI listens on every interface by default, unauthenticated: anyone on the network could start
    # load against a paid API with the user's key. Bind to loopback unless --web-host (or a config file) says so.
    parser.set_defaults(web_host=LOOPBACK)
    parser.add_argument(
        "--emulator-outage",
        default="",
        help="Injected emulator outage window START,END in seconds since the emulator started, e.g. 5,10",
    )
    parser.add_argument(
        "--llmload-debug",
        action="store_true",
        default=False,
        include_in_web_ui=False,
        help="Show tracebacks for llmload configuration errors",
    )


def debug_enabled(environment: Environment) -> bool:
    return bool(getattr(environment.parsed_options, "llmload_debug", False))


@dataclass
class RunWatch:
    """What happened to a run besides its requests: a stopping signal, workers lost on the way."""

    interrupted_by: str | None = None
    stopped: bool = False
    """Whether Locust's test_stop fired: a run quit before it was interrupted, not finished."""
    quitting_unstarted: bool = False
    """Whether a signal already ended this master while it waited for workers (a second signal does nothing)."""
    lost_workers: list[str] = field(default_factory=list)
    monitor: gevent.Greenlet | None = None


_watches: dict[int, RunWatch] = {}


def watch(environment: Environment) -> RunWatch:
    return _watches.setdefault(id(environment), RunWatch())


def _remember_signal(environment: Environment, name: str) -> None:
    current = watch(environment)
    if current.interrupted_by is None:
        current.interrupted_by = name


def _waiting_for_workers(environment: Environment) -> bool:
    """Whether a headless master is still waiting for ``--expect-workers``: Locust handles no signal there (its
    SIGTERM handler is not installed yet, and a KeyboardInterrupt escapes as a traceback), and the workers that
    did connect would be left running."""
    runner = environment.runner
    opts = environment.parsed_options
    return isinstance(runner, MasterRunner) and runner.state == STATE_INIT and bool(getattr(opts, "headless", False))


def _quit_while_waiting(environment: Environment, signum: int) -> None:
    """End a master that is still waiting for workers: one line, connected workers told to quit, exit 128+signum."""
    runner = environment.runner
    assert isinstance(runner, MasterRunner)
    current = watch(environment)
    if current.quitting_unstarted:
        return
    current.quitting_unstarted = True
    name = signal.Signals(signum).name
    logger.error(
        "llmload: %s while waiting for workers (%d of %d connected); no request was sent, no result written",
        name, len(runner.clients.ready), getattr(environment.parsed_options, "expect_workers", 0),
    )
    runner.quit()
    # Stops the embedded emulator; finalize has nothing to write, the run never started.
    environment.events.quitting.fire(environment=environment, reverse=True)
    raise SystemExit(128 + signum)


def _on_sigterm(environment: Environment) -> None:
    _remember_signal(environment, "SIGTERM")
    if _waiting_for_workers(environment):
        _quit_while_waiting(environment, signal.SIGTERM)
    shape = getattr(environment.runner, "shape_greenlet", None)
    if shape is not None and not shape.dead:
        # With a load shape, headless Locust blocks in shape_greenlet.join() *before* installing its own SIGTERM
        # handler, so nothing else would act on the signal: end the shape, and Locust stops the run as if the
        # shape had completed (test_stop, then quitting), which finalizes the run as partial.
        shape.kill(block=False)


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    # A second watcher on SIGTERM: gevent runs every watcher, so Locust's own shutdown handler still runs.
    gevent.signal_handler(signal.SIGTERM, _on_sigterm, environment)
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        _remember_signal(environment, "SIGINT")
        if _waiting_for_workers(environment):
            # The handler may run in gevent's hub, which must not block: quit from a greenlet of its own.
            gevent.spawn(_quit_while_waiting, environment, signum)
            return
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    current = watch(environment)
    current.interrupted_by = None
    current.stopped = False
    current.lost_workers = []
    if isinstance(environment.runner, MasterRunner) and current.monitor is None:
        current.monitor = gevent.spawn(_monitor_workers, environment)


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_: Any) -> None:
    watch(environment).stopped = True


def _monitor_workers(environment: Environment) -> None:
    runner = environment.runner
    assert isinstance(runner, MasterRunner)
    current = watch(environment)
    while True:
        for client in runner.clients.missing:
            if client.id not in current.lost_workers:
                current.lost_workers.append(client.id)
                remaining = len(runner.clients.all) - len(runner.clients.missing)
                logger.warning(
                    "llmload: worker %s stopped sending heartbeats; its unsent records are lost, the run goes on "
                    "with %d worker(s)",
                    client.id,
                    remaining,
                )
                recorder = getattr(getattr(environment, "llmload_state", None), "recorder", None)
                if recorder is not None:
                    recorder.flushed_workers.add(client.id)
        gevent.sleep(WORKER_POLL_S)


def run_status(environment: Environment, run_started: float | None, *, quitting: bool) -> dict[str, Any]:
    """``partial``, ``interrupted_by`` and ``lost_workers`` for the run's metadata.

    A run is partial when it was stopped by a signal, finalized at ``quitting`` (Locust quit before the run's
    own stop), ended before its ``--run-time``, or lost a worker on the way.
    """
    current = watch(environment)
    run_time = getattr(environment.parsed_options, "run_time", None)
    ended_early = bool(run_time and run_started and time.time() - run_started < run_time - RUN_TIME_TOLERANCE_S)
    interrupted_by = current.interrupted_by or ("quit" if quitting and not current.stopped else None)
    if interrupted_by is None and ended_early:
        interrupted_by = "stopped before --run-time"
    partial = interrupted_by is not None or bool(current.lost_workers)
    if partial:
        logger.warning(
            "llmload: the run did not reach its planned end (%s); writing the results measured so far as partial",
            interrupted_by or f"lost workers {current.lost_workers}",
        )
    return {"partial": partial, "interrupted_by": interrupted_by, "lost_workers": list(current.lost_workers)}


