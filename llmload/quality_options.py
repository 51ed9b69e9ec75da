"""Locust options for cost and quality: ``--pricing-file``, ``--emulator-quality``, ``--task-file``/``--task-format``.

``llmload.plugin`` imports this module (so the options exist) and calls its helpers where prices, the emulator's
quality and the scenario list are needed. A bad pricing or task file stops the run at start with exit code 2, not
after the load has been spent.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from llmload.errors import LLMLoadError
from llmload.pricing import ModelPrice, PriceTable, load_pricing
from llmload.results import BenchmarkScenario
from llmload.tasks import TASK_FORMATS, with_task_scenarios

logger = logging.getLogger("llmload")


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--pricing-file", default="", help="Token prices YAML (default: config/pricing.yaml, else the bundled one)"
    )
    parser.add_argument(
        "--emulator-quality", type=float, default=1.0, help="Emulator probability of a right answer to known questions"
    )
    parser.add_argument("--task-file", default="", help="Local benchmark file to run as a scenario (no download)")
    parser.add_argument("--task-format", default="", help=f"Format of --task-file: {', '.join(TASK_FORMATS)}")


_tables: dict[str, PriceTable] = {}


def price_table(opts: Any) -> PriceTable:
    path = getattr(opts, "pricing_file", "") or ""
    if path not in _tables:
        _tables[path] = load_pricing(path or None)
    return _tables[path]


def price_for(opts: Any) -> Callable[[str, str], ModelPrice | None]:
    """The ``price_for(provider, model)`` callable ``build_results`` takes."""
    table = price_table(opts)

    def lookup(provider: str, model: str) -> ModelPrice | None:
        return table.price_for(provider, model)

    return lookup


def emulator_quality(opts: Any) -> float:
    return float(getattr(opts, "emulator_quality", 1.0))


def scenarios_with_tasks(scenarios: dict[str, BenchmarkScenario], opts: Any) -> dict[str, BenchmarkScenario]:
    return with_task_scenarios(scenarios, getattr(opts, "task_file", ""), getattr(opts, "task_format", ""))


@events.init.add_listener
def check_files(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return
    try:
        price_table(environment.parsed_options)
    except LLMLoadError as exc:
        logger.error("llmload: %s", exc)
        sys.exit(2)
