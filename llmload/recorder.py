"""Collecting request records through Locust's own events, across processes, in bounded memory.

Producers (User classes) fire ``events.request`` with ``context={"llmload": record}``; the :class:`Recorder`
listens to that event like any other Locust listener, so Locust's UI, CSV and stats see the same requests.

In distributed mode each worker's recorder ships the records it has not sent yet inside Locust's periodic worker
report (``report_to_master``), and flushes the rest with a custom message when its test stops; a worker keeps
nothing once sent. The master (or the single local process) does two things with every record as it arrives: it
appends the exact record to the run's records log (``records.jsonl.gz``, written as the run goes), and folds it
into ``llmload.aggregate.RunAccumulator``, from which the results are built. No list of records is kept, so a soak
run's memory does not grow with its request count.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from llmload.aggregate import RunAccumulator
from llmload.errors import ErrorKind
from llmload.metrics import RequestRecord

logger = logging.getLogger(__name__)

CONTEXT_KEY = "llmload"
REPORT_KEY = "llmload_records"
FLUSH_MESSAGE = "llmload_flush"

Listener = Callable[[RequestRecord], None]


class RecordsLog:
    """The run's exact records, one JSON object a line, gzip-compressed, appended as they arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = gzip.open(path, "wt", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Recorder:
    """This process's share of the current run: on the master (or local runner), every worker's records."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.aggregate = RunAccumulator()
        self.records_total = 0
        self.records_interrupted = 0
        self._log: RecordsLog | None = None
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
        events.test_stop.add_listener(self._on_test_stop)

    def start_run(self, aggregate: RunAccumulator, log_path: Path | None) -> None:
        """Begin a run on the master or local runner: fresh aggregates, and a records log at ``log_path``."""
        self.close_log()
        self.aggregate = aggregate
        self._log = RecordsLog(log_path) if log_path is not None else None
        self.records_total = 0
        self.records_interrupted = 0
        with self._lock:
            self._unsent = []
        self.flushed_workers = set()
        self.workers_seen = set()

    def close_log(self) -> Path | None:
        """Finish the records log; its path, or None when there was none."""
        if self._log is None:
            return None
        self._log.close()
        path, self._log = self._log.path, None
        return path

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
        if isinstance(self.environment.runner, WorkerRunner):
            with self._lock:
                self._unsent.append(record)
            for listener in self.listeners:
                listener(record)
            return
        self._keep(record, record.to_dict())

    def _keep(self, record: RequestRecord, row: dict[str, Any]) -> None:
        """Log and aggregate one record (master or local runner). Interrupted requests are logged and counted only:
        a request cut off by the stop has no outcome to measure."""
        self.records_total += 1
        if self._log is not None:
            self._log.write(row)
        if record.error_kind == ErrorKind.INTERRUPTED:
            self.records_interrupted += 1
        else:
            self.aggregate.add(record)
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
            self._keep(RequestRecord.from_dict(row), row)

    def _on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        rows = data.get(REPORT_KEY)
        if rows:
            self._ingest(client_id, rows)

    def _on_flush_message(self, msg: Any, **_: Any) -> None:
        data = msg.data or {}
        self._ingest(msg.node_id, data.get("records", []))
        self.flushed_workers.add(msg.node_id)

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
