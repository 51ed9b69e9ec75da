"""Response quality checks, applied to every response under load, and the emulator's answer knowledge.

A scenario's ``checks`` is a list of mappings, each one check:

* ``{"exact": "4"}``: the stripped answer equals the text (case-insensitive).
* ``{"contains": "Paris"}``: the answer contains the text (case-insensitive).
* ``{"regex": "^\\d+$"}``: the answer matches the regular expression.
* ``{"json": true}``: the answer parses as JSON.
* ``{"tool_call": "get_weather"}``: a tool call of that name was made with JSON-object arguments.
* ``{"json_schema": {...}}``: the answer parses as JSON and is valid against the JSON Schema (draft 2020-12).
* ``{"tool_args": "get_weather"}``: a call of that tool was made whose arguments are valid against the tool's own
  ``parameters`` schema in the scenario's ``tools``.
* ``{"answer_key": {prompt: answer, ...}}``: the answer equals the sent prompt's own answer (case-insensitive,
  a trailing full stop ignored; a one-letter key also accepts "B) ..." / "(B)" forms). Task sets use this.
* ``{"consistency": true}``: not pass/fail; keeps each answer so the result reports how similar the repeated
  answers are (``llmload.consistency``).

The emulator's quality knob uses :func:`answer_for`: prompts that carry a known question get the right answer with
probability ``quality`` and a wrong one otherwise, so the pipeline is tested against known truth.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from llmload.errors import ConfigError

KNOWN_ANSWERS: dict[str, tuple[str, str]] = {
    "What is 2 + 2? Answer with the number only.": ("4", "5"),
    "What is the capital of France? Answer with one word.": ("Paris", "Lyon"),
    "How many days are in a week? Answer with the number only.": ("7", "6"),
}
"""Built-in questions: prompt -> (correct answer, wrong answer)."""

CHECK_KINDS = ("exact", "contains", "regex", "json", "tool_call", "json_schema", "tool_args", "answer_key",
               "consistency")
JUDGED_KINDS = frozenset(CHECK_KINDS) - {"consistency"}
"""Check kinds that decide pass/fail; ``consistency`` only asks for the answer to be kept."""


@lru_cache(maxsize=1)
def _all_known_answers() -> dict[str, tuple[str, str]]:
    from llmload.tasks import builtin_tasks

    known = {t.prompt: (t.answer, t.wrong or f"not {t.answer}") for t in builtin_tasks()}
    return {**known, **KNOWN_ANSWERS}


def answer_for(prompt: str, rng: random.Random, quality: float) -> str | None:
    """The emulator's answer to a known question: right with probability ``quality``; None if unknown."""
    known = _all_known_answers().get(prompt.strip())
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
        if kind == "json_schema":
            _check_schema(value, f"{where}.checks[{index}].json_schema")
        if kind == "answer_key" and not (
            isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            raise ConfigError(f"{where}.checks[{index}].answer_key must map prompt strings to answer strings")
        out.append(dict(check))
    return tuple(out)


def is_judged(checks: Iterable[dict[str, Any]]) -> bool:
    """Whether any of ``checks`` decides pass/fail (a consistency-only scenario has no accuracy)."""
    return any(next(iter(check)) in JUDGED_KINDS for check in checks)


def wants_answer_kept(checks: Iterable[dict[str, Any]]) -> bool:
    return any(next(iter(check)) == "consistency" for check in checks)


def check_response(
    text: str,
    tool_calls: list[dict[str, Any]],
    checks: Iterable[dict[str, Any]],
    *,
    prompt: str = "",
    tools: Iterable[dict[str, Any]] = (),
) -> bool:
    """True when the response passes every check. ``prompt`` and ``tools`` are what the request sent."""
    answer = text.strip()
    for check in checks:
        kind, value = next(iter(check.items()))
        if kind == "json_schema" and not _valid_json(answer, value):
            return False
        if kind == "tool_args" and not any(
            call.get("name") == value and _valid_json(call.get("arguments", ""), _tool_parameters(tools, value))
            for call in tool_calls
        ):
            return False
        if kind == "answer_key" and not matches_answer(answer, value.get(prompt.strip(), value.get(prompt))):
            return False
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


def matches_answer(answer: str, expected: str | None) -> bool:
    """Case-insensitive equality ignoring a trailing full stop; a one-letter key also accepts "B)", "(B) ..."."""
    if expected is None:
        return False
    got, want = answer.strip().rstrip(".").strip().lower(), expected.strip().rstrip(".").strip().lower()
    if got == want:
        return True
    if len(want) == 1 and want.isalpha():
        first = re.match(r"^\(?([a-z])\b", got)
        return first is not None and first.group(1) == want
    return False


def _check_schema(schema: Any, where: str) -> None:
    import jsonschema

    if not isinstance(schema, dict):
        raise ConfigError(f"{where} must be a JSON Schema mapping")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"{where} is not a valid JSON Schema: {exc.message}") from None


def _valid_json(text: str, schema: dict[str, Any] | None) -> bool:
    """Whether ``text`` is JSON valid against ``schema``; False when there is no schema to judge by."""
    import jsonschema

    if schema is None:
        return False
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def _tool_parameters(tools: Iterable[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for tool in tools:
        spec = tool.get("function", tool)
        if spec.get("name") == name:
            parameters = spec.get("parameters") or spec.get("input_schema")
            return parameters if isinstance(parameters, dict) else {"type": "object"}
    return None


def wilson_interval(passed: int, total: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy: sound at small counts and near 0 or 1, unlike the normal one."""
    if total <= 0:
        return (0.0, 1.0)
    p = passed / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * ((p * (1 - p) / total + z * z / (4 * total * total)) ** 0.5) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))
