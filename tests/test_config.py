"""Scenario YAML loading: valid files load, each kind of mistake is a one-line error naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmload.config import bundled_config, load_scenarios, select_scenarios
from llmload.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenarios.yaml"
    path.write_text(text)
    return path


def test_shipped_scenarios_load_and_match_the_bundled_copy() -> None:
    scenarios = load_scenarios(REPO / "config" / "scenarios.yaml")
    assert {"simple_query", "complex_query", "tool_calling", "embedding_generation"} <= set(scenarios)
    assert (REPO / "config" / "scenarios.yaml").read_text() == bundled_config("scenarios.yaml").read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("scenarios: {a: {prompts: [x]}\n", "broken YAML at line 2"),
        ("nothing: here\n", "expected a top-level 'scenarios:'"),
        ("scenarios: {a: {prompts: [x], max_tokens: -3}}\n", "scenarios.yaml: scenario 'a': max_tokens must be > 0"),
        ("scenarios: {a: {prompts: [x], colour: red}}\n", "scenarios.a.colour is not a scenario setting"),
        ("scenarios: {a: {prompts: [x], max_tokens: lots}}\n", "scenarios.a.max_tokens has the wrong type"),
        ("scenarios: {a: {prompts: []}}\n", "scenarios.a.prompts must be a non-empty list"),
        ("scenarios: {a: {prompts: [x], endpoint: fax}}\n", "endpoint must be chat, tools or embeddings"),
        ("scenarios: {a: {prompts: [x], checks: [{sounds: good}]}}\n", "scenarios.a.checks[0] must be one of"),
        ("scenarios: {a: {prompts: [x], checks: [{regex: '('}]}}\n", "checks[0].regex is not a valid regular"),
    ],
)
def test_mistakes_are_one_line_errors_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_scenarios(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_unknown_scenario(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_scenarios(tmp_path / "nope.yaml")
    scenarios = load_scenarios(write(tmp_path, "scenarios: {a: {prompt: hello}}\n"))
    assert scenarios["a"].prompts == ("hello",)
    with pytest.raises(ConfigError, match="unknown scenario 'b'; known: a"):
        select_scenarios(scenarios, "a,b")
