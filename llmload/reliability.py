"""Reliability metrics computed from a run's request records: uptime, error rate, MTBF, MTTR, outage recovery.

The run's window is cut into fixed buckets (by request completion time). A bucket is *up* when at least one request
completed successfully in it; an *incident* is a maximal stretch of consecutive buckets that are not up and hold at
least one failed request (a stretch with no traffic at all says nothing about the target, so it is neither up nor an
incident and is left out of uptime). From those:

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
from collections.abc import Sequence
from typing import Any

from llmload.errors import ConfigError
from llmload.metrics import RequestRecord

DEFAULT_BUCKET_S = 1.0


def _completed_at(rec: RequestRecord) -> float:
    return rec.started_at + rec.e2e_ms / 1000.0


def reliability_metrics(records: Sequence[RequestRecord], bucket_s: float = DEFAULT_BUCKET_S) -> dict[str, Any]:
    """Uptime, error rate, MTBF and MTTR of one group of records (see the module docstring)."""
    if not records:
        return {}
    ordered = sorted(records, key=_completed_at)
    start = min(r.started_at for r in ordered)
    end = _completed_at(ordered[-1])
    bucket_count = max(1, math.ceil((end - start) / bucket_s))
    ok_in = [False] * bucket_count
    failed_in = [False] * bucket_count
    for rec in ordered:
        index = min(bucket_count - 1, int((_completed_at(rec) - start) // bucket_s))
        if rec.ok:
            ok_in[index] = True
        else:
            failed_in[index] = True
    active = sum(1 for ok, failed in zip(ok_in, failed_in, strict=True) if ok or failed)
    up = sum(ok_in)

    incidents: list[dict[str, Any]] = []
    open_since: float | None = None
    for rec in ordered:
        done = _completed_at(rec)
        if not rec.ok and open_since is None:
            open_since = done
        elif rec.ok and open_since is not None:
            incidents.append({"start": open_since, "end": done, "duration_s": done - open_since})
            open_since = None
    # Request-level incidents shorter than a bucket are noise under random errors (a bucket still had a success).
    incidents = [i for i in incidents if _spans_a_down_bucket(i, start, bucket_s, ok_in)]
    failed_total = sum(1 for r in ordered if not r.ok)
    up_time = up * bucket_s
    return {
        "bucket_s": bucket_s,
        "uptime_pct": 100.0 * up / active if active else None,
        "error_rate": failed_total / len(ordered),
        "incidents": len(incidents),
        "mtbf_s": up_time / len(incidents) if incidents else None,
        "mttr_s": sum(i["duration_s"] for i in incidents) / len(incidents) if incidents else None,
        "longest_incident_s": max((i["duration_s"] for i in incidents), default=None),
        "open_incident": open_since is not None,
        "incident_windows": [[round(i["start"] - start, 3), round(i["end"] - start, 3)] for i in incidents[:50]],
    }


def _spans_a_down_bucket(incident: dict[str, Any], start: float, bucket_s: float, ok_in: list[bool]) -> bool:
    first = int((incident["start"] - start) // bucket_s)
    last = min(len(ok_in) - 1, int((incident["end"] - start) // bucket_s))
    return any(not ok_in[i] for i in range(first, last + 1))


def outage_recovery(records: Sequence[RequestRecord], outage_end: float) -> float | None:
    """Seconds from ``outage_end`` (Unix time) to the first successful completion after it; None if none."""
    after = [_completed_at(r) for r in records if r.ok and _completed_at(r) >= outage_end]
    return min(after) - outage_end if after else None


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
