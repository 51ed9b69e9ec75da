"""Response quality checks, applied to every response under load, and the emulator's answer knowledge.

A scenario's ``checks`` is a list of mappings, each one check:

* ``{"exact": "4"}``: the stripped answer equals the text (case-insensitive).
* ``{"contains": "Paris"}``: the answer contains the text (case-insensitive).
* ``{"regex": "^\\d+$"}``: the answer matches the regular expression.
* ``{"json": true}``: the answer parses as JSON.
* ``{"tool_call": "get_weather"}``: a tool call of that name was made with JSON-object arguments.

The emulator's quality knob uses :func:`answer_for`: prompts that carry a known question get the right answer with
probability ``quality`` and a wrong one otherwise, so the pipeline is tested against known truth.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from typing import Any

from llmload.errors import ConfigError

KNOWN_ANSWERS: dict[str, tuple[str, str]] = {
    "What is 2 + 2? Answer with the number only.": ("4", "5"),
    "What is the capital of France? Answer with one word.": ("Paris", "Lyon"),
    "How many days are in a week? Answer with the number only.": ("7", "6"),
}
"""Built-in questions: prompt -> (correct answer, wrong answer)."""

CHECK_KINDS = ("exact", "contains", "regex", "json", "tool_call")


def answer_for(prompt: str, rng: random.Random, quality: float) -> str | None:
    """The emulator's answer to a known question: right with probability ``quality``; None if unknown."""
    known = KNOWN_ANSWERS.get(prompt.strip())
    if known is None:
        return None
    return known[0] if rng.random() < quality else known[1]


def validate_checks(checks: Iterable[dict[str, Any]], where: str) -> tuple[dict[str, Any], ...]:
    """Check the shape of a scenario's ``checks`` list; raises ConfigError naming the bad entry."""
    out = []
    for index, check in enumerate(checks):
        if not isinstance(check, dict) or len(check) != 1 or next(iter(check)) not in CHECK_KINDS:
            raise ConfigError(f"{where}.checks[{index}] must be one of {', '.join(CHECK_KINDS)} (a one-key mapping)")
        kind, value = next(iter(check.items()))
        if kind == "regex":
            try:
                re.compile(str(value))
            except re.error as exc:
                raise ConfigError(f"{where}.checks[{index}].regex is not a valid regular expression: {exc}") from None
        out.append(dict(check))
    return tuple(out)


def check_response(text: str, tool_calls: list[dict[str, Any]], checks: Iterable[dict[str, Any]]) -> bool:
    """True when the response passes every check."""
    answer = text.strip()
    for check in checks:
        kind, value = next(iter(check.items()))
        if kind == "exact" and answer.lower() != str(value).strip().lower():
            return False
        if kind == "contains" and str(value).lower() not in answer.lower():
            return False
        if kind == "regex" and re.search(str(value), answer) is None:
            return False
        if kind == "json" and value and not _is_json(answer):
            return False
        if kind == "tool_call" and not any(
            call.get("name") == value and _is_json_object(call.get("arguments", "")) for call in tool_calls
        ):
            return False
    return True


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
