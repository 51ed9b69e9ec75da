"""The web UI side of live monitoring: an "LLM" tab in Locust's UI, a standalone /llm page, JSON and /metrics.

The tab uses Locust's own extension points: ``extended_tabs``/``extended_tables`` template arguments declare it,
and the rows ride along in ``/stats/requests`` (which the UI polls every ~2 s) under ``extended_stats``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request
from locust.env import Environment
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from llmload.live import Monitor

TAB_KEY = "llm"

_COLUMNS = [
    {"key": "name", "title": "Provider:model"},
    {"key": "requests", "title": "Requests (window)"},
    {"key": "ttft_p95_ms", "title": "TTFT p95 (ms)"},
    {"key": "itl_p50_ms", "title": "ITL p50 (ms)"},
    {"key": "output_tokens_per_s", "title": "Output tokens/s"},
    {"key": "error_rate", "title": "Error rate"},
]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>llmload live</title>
<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}td:first-child{text-align:left}
.alert{color:#cf222e}</style></head>
<body><h1>llmload live (<span id="window"></span> s window)</h1>
<table><thead><tr><th>Provider:model</th><th>Requests</th><th>TTFT p95 ms</th><th>ITL p50 ms</th>
<th>Output tok/s</th><th>Error rate</th></tr></thead><tbody id="rows"><tr><td colspan="6">waiting for requests
</td></tr></tbody></table><h2>Alerts</h2><ul id="alerts"></ul>
<script>
function fmt(v, d) { return v === null || v === undefined ? "-" : Number(v).toFixed(d); }
function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
async function refresh() {
  try {
    const data = await (await fetch("llm/stats", {cache: "no-store"})).json();
    document.getElementById("window").textContent = data.window_s;
    const rows = document.getElementById("rows");
    rows.replaceChildren(...data.stats.map(s => {
      const tr = document.createElement("tr");
      tr.className = "llm-row";
      [s.provider + ":" + s.model, s.requests, fmt(s.ttft_p95_ms, 1), fmt(s.itl_p50_ms, 1),
       fmt(s.output_tokens_per_s, 1), fmt(s.error_rate, 4)].forEach(v => tr.appendChild(cell(v)));
      return tr;
    }));
    const alerts = document.getElementById("alerts");
    alerts.replaceChildren(...data.alerts.map(a => {
      const li = document.createElement("li"); li.className = "alert"; li.textContent = a.message; return li;
    }));
  } catch (e) { /* the run may be restarting; the next poll retries */ }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""


def _table_rows(monitor: Monitor) -> list[dict[str, Any]]:
    rows = []
    for s in monitor.snapshot():
        row: dict[str, Any] = {"name": f"{s.provider}:{s.model}", "safe_name": f"{s.provider}:{s.model}",
                               "requests": s.requests}
        for key in ("ttft_p95_ms", "itl_p50_ms", "output_tokens_per_s"):
            value = s.value(key)
            row[key] = "-" if value is None else round(value, 1)
        row["error_rate"] = round(s.error_rate, 4)
        rows.append(row)
    return rows


def install_web_ui(environment: Environment, monitor: Monitor, registry: CollectorRegistry) -> None:
    web_ui = environment.web_ui
    assert web_ui is not None
    app = web_ui.app
    web_ui.template_args["extended_tabs"] = [{"title": "LLM", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [{"key": TAB_KEY, "structure": _COLUMNS}]

    @app.route("/llm", endpoint="llmload_page")
    @web_ui.auth_required_if_enabled
    def llm_page() -> Response:
        return Response(PAGE, mimetype="text/html")

    @app.route("/llm/stats", endpoint="llmload_stats")
    @web_ui.auth_required_if_enabled
    def llm_stats() -> Response:
        return Response(json.dumps(monitor.payload()), mimetype="application/json")

    @app.route("/metrics", endpoint="llmload_metrics")
    @web_ui.auth_required_if_enabled
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.after_request
    def add_llm_rows(response: Response) -> Response:
        if request.path != "/stats/requests" or not response.is_json:
            return response
        data = response.get_json()
        data["extended_stats"] = [*data.get("extended_stats", []), {"key": TAB_KEY, "data": _table_rows(monitor)}]
        response.set_data(json.dumps(data))
        return response
