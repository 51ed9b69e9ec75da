"""Token prices (``config/pricing.yaml``) and the cost of a result's token usage.

Prices are USD per 1M tokens. ``input_tokens`` as providers report it includes the cached part (OpenAI's
``prompt_tokens`` does; Anthropic's adapter reports the sum), so the uncached part is priced at ``input`` and the
cached part at ``cached_input``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmload.config import config_path, read_yaml
from llmload.errors import ConfigError
from llmload.results import TokenUsage

PER_TOKENS = 1_000_000


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One model's list price, USD per 1M tokens, as of a date the user should re-check."""

    provider: str
    model: str
    input: float
    output: float
    cached_input: float
    as_of: dt.date

    def cost(self, usage: TokenUsage) -> float:
        """USD for ``usage``: uncached input, cached input and output each at their own price."""
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        return (
            (usage.input_tokens - cached) * self.input
            + cached * self.cached_input
            + usage.output_tokens * self.output
        ) / PER_TOKENS


class PriceTable:
    """All prices of one pricing file; ``price_for`` is what ``build_results`` takes."""

    def __init__(self, prices: dict[tuple[str, str], ModelPrice], source: Path | None = None) -> None:
        self.prices = prices
        self.source = source

    def price_for(self, provider: str, model: str) -> ModelPrice | None:
        return self.prices.get((provider, model))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where} must be a number >= 0 (USD per 1M tokens), got {value!r}")
    return float(value)


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{where} must be a date YYYY-MM-DD, got {value!r}") from None


_ENTRY_KEYS = {"input", "output", "cached_input", "as_of"}


def parse_pricing(data: Any, source: str) -> PriceTable:
    """Validate a parsed pricing document; every problem is a one-line ConfigError naming the entry."""
    if not isinstance(data, dict) or not isinstance(data.get("pricing"), dict):
        raise ConfigError(f"{source}: expected a top-level 'pricing:' mapping of provider -> model -> prices")
    prices: dict[tuple[str, str], ModelPrice] = {}
    for provider, models in data["pricing"].items():
        if not isinstance(models, dict):
            raise ConfigError(f"{source}: pricing.{provider} must be a mapping of model -> prices")
        for model, entry in models.items():
            where = f"{source}: pricing.{provider}.{model}"
            if not isinstance(entry, dict):
                raise ConfigError(f"{where} must be a mapping with input, output, as_of")
            unknown = set(entry) - _ENTRY_KEYS
            if unknown:
                raise ConfigError(f"{where}.{sorted(unknown)[0]} is not a price field; known: input, output, "
                                  "cached_input, as_of")
            for required in ("input", "output", "as_of"):
                if required not in entry:
                    raise ConfigError(f"{where}.{required} is missing")
            input_price = _number(entry["input"], f"{where}.input")
            prices[(str(provider), str(model))] = ModelPrice(
                provider=str(provider),
                model=str(model),
                input=input_price,
                output=_number(entry["output"], f"{where}.output"),
                cached_input=_number(entry.get("cached_input", input_price), f"{where}.cached_input"),
                as_of=_date(entry["as_of"], f"{where}.as_of"),
            )
    return PriceTable(prices)


def load_pricing(path: str | Path | None = None) -> PriceTable:
    """Read ``pricing.yaml``: the explicit path, else ``config/pricing.yaml``, else the bundled snapshot."""
    file = config_path("pricing.yaml", path)
    table = parse_pricing(read_yaml(file), str(file))
    table.source = file
    return table
