"""llmload: Locust-based load testing and benchmarking for LLM providers."""

from __future__ import annotations

__version__ = "0.1.0"


def load_results(*paths: str) -> "pandas.DataFrame":  # type: ignore[name-defined]  # noqa: F821, UP037
    """Load one or more run folders (or result.json files) into a DataFrame, one row per BenchmarkResult."""
    from llmload.export import load_results as _load

    return _load(*paths)


__all__ = ["__version__", "load_results"]
