"""Collecting request records through Locust's own events, across processes.

Producers (User classes) fire ``events.request`` with ``context={"llmload": record}``; the :class:`Recorder`
listens to that event like any other Locust listener, so Locust's UI, CSV and stats see the same requests.

In distributed mode each worker's recorder ships the records it has not sent yet inside Locust's periodic worker
report (``report_to_master``), and flushes the rest with a custom message when its test stops, so the master holds
every exact sample and computes percentiles as one process would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from llmload.metrics import RequestRecord

logger = logging.getLogger(__name__)

CONTEXT_KEY = "llmload"
REPORT_KEY = "llmload_records"
FLUSH_MESSAGE = "llmload_flush"

Listener = Callable[[RequestRecord], None]


class Recorder:
    """Holds the exact records of the current run on this process (on the master: of all workers)."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.records: list[RequestRecord] = []
        self._unsent: list[RequestRecord] = []
        self._lock = threading.Lock()
        self.listeners: list[Listener] = []
        """Called with each record as it is recorded (live monitoring, alerting)."""
        self.flushed_workers: set[str] = set()
        self.workers_seen: set[str] = set()
        events = environment.events
        events.request.add_listener(self._on_request)
        events.report_to_master.add_listener(self._on_report_to_master)
        events.worker_report.add_listener(self._on_worker_report)
        events.test_start.add_listener(self._on_test_start)
        events.test_stop.add_listener(self._on_test_stop)

    def register_messages(self) -> None:
        """Register the flush message handler once the runner exists."""
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            runner.register_message(FLUSH_MESSAGE, self._on_flush_message)

    def _on_request(self, context: dict[str, Any] | None = None, **_: Any) -> None:
        record = (context or {}).get(CONTEXT_KEY)
        if not isinstance(record, RequestRecord):
            return
        self.add(record)

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self.records.append(record)
            if isinstance(self.environment.runner, WorkerRunner):
                self._unsent.append(record)
        for listener in self.listeners:
            listener(record)

    def _take_unsent(self) -> list[dict[str, Any]]:
        with self._lock:
            batch, self._unsent = self._unsent, []
        return [r.to_dict() for r in batch]

    def _on_report_to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        batch = self._take_unsent()
        if batch:
            data[REPORT_KEY] = batch

    def _ingest(self, client_id: str, rows: list[dict[str, Any]]) -> None:
        self.workers_seen.add(client_id)
        for row in rows:
            record = RequestRecord.from_dict(row)
            with self._lock:
                self.records.append(record)
            for listener in self.listeners:
                listener(record)

    def _on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        rows = data.get(REPORT_KEY)
        if rows:
            self._ingest(client_id, rows)

    def _on_flush_message(self, msg: Any, **_: Any) -> None:
        data = msg.data or {}
        self._ingest(msg.node_id, data.get("records", []))
        self.flushed_workers.add(msg.node_id)

    def _on_test_start(self, **_: Any) -> None:
        if isinstance(self.environment.runner, WorkerRunner):
            return
        with self._lock:
            self.records = []
            self._unsent = []
        self.flushed_workers = set()
        self.workers_seen = set()

    def _on_test_stop(self, **_: Any) -> None:
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.send_message(FLUSH_MESSAGE, {"records": self._take_unsent()})

    def wait_for_workers(self, timeout_s: float) -> bool:
        """On the master: wait until every connected worker has flushed (or the timeout passes)."""
        import gevent

        runner = self.environment.runner
        if not isinstance(runner, MasterRunner):
            return True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            expected = {c.id for c in runner.clients.all} | self.workers_seen
            if expected <= self.flushed_workers:
                return True
            gevent.sleep(0.1)
        missing = ({c.id for c in runner.clients.all} | self.workers_seen) - self.flushed_workers
        if missing:
            logger.warning("llmload: %d worker(s) did not flush their last records: %s", len(missing), sorted(missing))
        return False

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self.records)
