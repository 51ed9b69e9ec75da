"""Reliability metrics computed from a run's request records: uptime, error rate, MTBF, MTTR, outage recovery.

The run's window is cut into fixed buckets (by request completion time, aligned to the Unix clock). A bucket is
*up* when at least one request completed successfully in it; an *incident* is a maximal stretch of consecutive
buckets that are not up and hold at least one failed request (a stretch with no traffic at all says nothing about
the target, so it is neither up nor an incident and is left out of uptime). From those:

uptime_pct
    Up buckets / buckets that saw any request, in percent.
mtbf_s
    Mean time between failures: up time / number of incidents (None without incidents).
mttr_s
    Mean time to recovery: mean incident length, from the first failure of the incident to the first success
    after it (request-level, not rounded to buckets). An incident still open at the end of the run has no
    recovery and is reported as ``open_incident``.
outage_recovery_s
    With an injected outage window (``MockConfiguration.outage``), the time from the outage's end to the first
    successful completion after it.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right, insort
from collections.abc import Iterable
from typing import Any

from llmload.errors import ConfigError
from llmload.metrics import RequestRecord

DEFAULT_BUCKET_S = 1.0
MAX_LISTED_INCIDENTS = 50


def _completed_at(rec: RequestRecord) -> float:
    return rec.started_at + rec.e2e_ms / 1000.0


class ReliabilityTracker:
    """Folds records in one at a time, in any order, and keeps only what the metrics need.

    Buckets are aligned to multiples of ``bucket_s`` on the Unix clock. Memory: one entry per bucket that saw a
    request (first and last success in it) and the completion time of each failure; never a record.
    """

    def __init__(self, bucket_s: float = DEFAULT_BUCKET_S, outage_end: float | None = None) -> None:
        self.bucket_s = bucket_s
        self.outage_end = outage_end
        self.total = 0
        self.start = math.inf
        self.buckets: dict[int, list[float]] = {}
        """Bucket index -> [first success, last success] completion times (NaN while the bucket has none)."""
        self.failures: array[float] = array("d")
        """Completion times of failed requests, sorted."""
        self.first_ok_after_outage: float | None = None

    def _bucket(self, at: float) -> int:
        return int(at // self.bucket_s)

    def add(self, rec: RequestRecord) -> None:
        done = _completed_at(rec)
        self.total += 1
        self.start = min(self.start, rec.started_at)
        slot = self.buckets.setdefault(self._bucket(done), [math.nan, math.nan])
        if not rec.ok:
            insort(self.failures, done)
            return
        if not done >= slot[0]:
            slot[0] = done
        if not done <= slot[1]:
            slot[1] = done
        if self.outage_end is not None and done >= self.outage_end:
            if self.first_ok_after_outage is None or done < self.first_ok_after_outage:
                self.first_ok_after_outage = done

    def summary(self) -> dict[str, Any]:
        """Uptime, error rate, MTBF and MTTR (see the module docstring)."""
        if not self.total:
            return {}
        up_buckets = sorted(b for b, (first_ok, _) in self.buckets.items() if not math.isnan(first_ok))
        incidents: list[tuple[float, float]] = []
        open_incident = False
        previous_last_ok = -math.inf
        previous_up: int | None = None
        # Between two consecutive successes there is at most one request-level incident: from the first failure
        # after the earlier success to the later success. It counts only when some bucket in it had no success.
        for up in [*up_buckets, None]:
            next_ok = self.buckets[up][0] if up is not None else None
            index = bisect_right(self.failures, previous_last_ok)
            if index < len(self.failures) and (next_ok is None or self.failures[index] < next_ok):
                failed_at = self.failures[index]
                if next_ok is None:
                    open_incident = True
                else:
                    first_down = self._bucket(failed_at) if previous_up is None else max(
                        self._bucket(failed_at), previous_up + 1
                    )
                    if first_down <= up - 1:  # type: ignore[operator]
                        incidents.append((failed_at, next_ok))
            if up is not None:
                previous_last_ok = self.buckets[up][1]
                previous_up = up
        up = len(up_buckets)
        active = len(self.buckets)
        durations = [end - start for start, end in incidents]
        result = {
            "bucket_s": self.bucket_s,
            "uptime_pct": 100.0 * up / active if active else None,
            "error_rate": len(self.failures) / self.total,
            "incidents": len(incidents),
            "mtbf_s": up * self.bucket_s / len(incidents) if incidents else None,
            "mttr_s": sum(durations) / len(durations) if durations else None,
            "longest_incident_s": max(durations, default=None),
            "open_incident": open_incident,
            "incident_windows": [
                [round(start - self.start, 3), round(end - self.start, 3)]
                for start, end in incidents[:MAX_LISTED_INCIDENTS]
            ],
        }
        if self.outage_end is not None:
            result["outage_recovery_s"] = (
                self.first_ok_after_outage - self.outage_end if self.first_ok_after_outage is not None else None
            )
        return result


def reliability_metrics(
    records: Iterable[RequestRecord], bucket_s: float = DEFAULT_BUCKET_S, outage_end: float | None = None
) -> dict[str, Any]:
    """Uptime, error rate, MTBF and MTTR of one group of records (see the module docstring)."""
    tracker = ReliabilityTracker(bucket_s, outage_end=outage_end)
    for rec in records:
        tracker.add(rec)
    return tracker.summary()


def parse_outage(spec: str) -> tuple[float, float] | None:
    """``"5,10"`` -> ``(5.0, 10.0)``; empty -> None."""
    if not spec.strip():
        return None
    parts = spec.split(",")
    try:
        start, end = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--emulator-outage must be START,END in seconds like 5,10, got {spec!r}") from None
    if not 0 <= start < end:
        raise ConfigError(f"--emulator-outage needs 0 <= START < END, got {spec!r}")
    return (start, end)
