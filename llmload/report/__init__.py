"""HTML comparison reports: one self-contained file from one or more runs."""

from __future__ import annotations

from llmload.report.html import write_report

__all__ = ["write_report"]
