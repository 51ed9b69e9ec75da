"""Locust User classes that drive provider SDKs and report every request through Locust's events.

For each request a user fires, on ``environment.events.request``:

* one entry for the whole request (``request_type`` = endpoint, response time = e2e latency), carrying the exact
  :class:`~llmload.metrics.RequestRecord` in ``context`` for llmload's recorder;
* for streamed calls, one ``TTFT`` entry (response time = TTFT) and one ``ITL`` entry (response time = the
  request's mean inter-token gap), so Locust's own UI, CSV and distributed stats show them too.

Locust rounds response times in its stats tables; llmload's reported percentiles come from the exact records.
"""

from __future__ import annotations

import random
import time
from typing import Any, ClassVar

import gevent
from locust import User, task
from locust.env import Environment

from llmload import openloop, plugin, shapes
from llmload.errors import ErrorKind, LLMLoadError
from llmload.metrics import RequestRecord, clock
from llmload.recorder import CONTEXT_KEY
from llmload.workload import execute


class RequestFailure(Exception):
    """What Locust's failure table shows: the error kind and status, never secrets or unbounded text."""


def report(environment: Environment, record: RequestRecord) -> None:
    """Fire the Locust events for one measured request."""
    name = f"{record.provider}:{record.model}:{record.scenario}"
    failure = None
    if not record.ok:
        status = f" (HTTP {record.status_code})" if record.status_code else ""
        failure = RequestFailure(f"{record.error_kind}{status}")
    fire = environment.events.request.fire
    fire(
        request_type=record.endpoint,
        name=name,
        response_time=record.e2e_ms,
        response_length=record.output_tokens,
        exception=failure,
        context={CONTEXT_KEY: record},
    )
    if record.ok and record.ttft_ms is not None:
        fire(request_type="TTFT", name=name, response_time=record.ttft_ms, response_length=0, context={})
        if record.itl_ms:
            mean_itl = sum(record.itl_ms) / len(record.itl_ms)
            fire(request_type="ITL", name=name, response_time=mean_itl, response_length=0, context={})


class LLMUser(User):
    """A closed-loop user: sends a scenario request, waits ``--think-time``, repeats."""

    abstract = True
    default_scenarios: ClassVar[str] = "simple_query"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.rng = random.Random()
        self.session: plugin.Session | None = None
        self.provider: Any = None

    def wait_time(self) -> float:
        # Open-loop users wait for their next arrival inside the task instead.
        if self.session is None or openloop.schedule_for(self.environment) is not None:
            return 0.0
        return self.session.think_time_s

    def on_start(self) -> None:
        try:
            self.session = plugin.session_for(self.environment, self.default_scenarios)
            self.provider = self.session.provider
        except LLMLoadError as exc:
            plugin.fail_run(self.environment, str(exc))
            raise
        self.rng.seed(id(self))
        # Users that start together and meet identical latencies stay in lock-step forever, and then every
        # request queues behind the others' client-side work. A random start offset (outside any measurement)
        # spreads them the way independent clients are spread.
        gevent.sleep(self.rng.uniform(0.0, self.session.start_jitter_s))

    @task
    def call(self) -> None:
        assert self.session is not None
        scenario = self.session.pick_scenario(self.rng)
        arrivals = openloop.schedule_for(self.environment)
        scheduled_at = None
        if arrivals is not None:
            scheduled_at = arrivals.take()
            gevent.sleep(max(0.0, scheduled_at - clock()))
        level = shapes.current_level(self.environment)
        started_at, started = time.time(), clock()
        try:
            record = execute(self.provider, scenario, self.session.model, self.rng, scheduled_at=scheduled_at,
                             level=level)
        except gevent.GreenletExit:
            # The stop (after --stop-timeout) cut this request off; its outcome is unknown, so it is neither a
            # success nor a target failure. It goes to the recorder only (records.jsonl.gz, meta
            # "interrupted_requests"), not to Locust's failure table or llmload's statistics.
            plugin.state(self.environment).recorder.add(RequestRecord(
                provider=self.provider.name, model=self.session.model, scenario=scenario.name,
                endpoint=scenario.endpoint, started_at=started_at, ok=False, e2e_ms=(clock() - started) * 1000.0,
                error_kind=ErrorKind.INTERRUPTED.value, error_message="stopped while in flight", level=level,
            ))
            raise
        report(self.environment, record)
