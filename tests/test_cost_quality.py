"""Cost (pricing file and math), quality check kinds, task-file loaders and consistency scoring."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from llmload.cli import main
from llmload.consistency import (
    consistency_score,
    embedding_consistency,
    jaccard,
    measure_consistency,
    provider_embedder,
    rouge_l,
)
from llmload.emulator import EmulatorProcess, MockConfiguration
from llmload.errors import ConfigError
from llmload.pricing import load_pricing, parse_pricing
from llmload.providers import PROVIDERS, provider_class
from llmload.providers.base import ProviderSettings
from llmload.quality import answer_for, check_response, is_judged, matches_answer, validate_checks, wilson_interval
from llmload.results import TokenUsage
from llmload.tasks import builtin_tasks, load_task_file, with_task_scenarios

DATA = Path(__file__).parent / "data"


# --- pricing -------------------------------------------------------------------------------------------------------

def _table(entry: dict) -> dict:
    return {"pricing": {"openai": {"m": entry}}}


def test_cost_prices_uncached_cached_and_output_separately() -> None:
    price = parse_pricing(_table({"input": 2.0, "output": 8.0, "cached_input": 0.5, "as_of": "2025-01-15"}),
                          "p.yaml").price_for("openai", "m")
    assert price is not None
    usage = TokenUsage(input_tokens=1_000_000, output_tokens=250_000, total_tokens=1_250_000,
                       cached_input_tokens=400_000)
    # 600k uncached at $2 + 400k cached at $0.5 + 250k output at $8
    assert price.cost(usage) == pytest.approx(1.2 + 0.2 + 2.0)


def test_cached_input_defaults_to_the_input_price() -> None:
    price = parse_pricing(_table({"input": 3.0, "output": 0.0, "as_of": "2025-01-15"}), "p").price_for("openai", "m")
    assert price is not None and price.cached_input == 3.0
    assert price.cost(TokenUsage(1000, 0, 1000, cached_input_tokens=1000)) == pytest.approx(0.003)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"input": 1.0, "output": 1.0}, "pricing.openai.m.as_of is missing"),
        ({"input": -1.0, "output": 1.0, "as_of": "2025-01-01"}, "pricing.openai.m.input must be a number >= 0"),
        ({"input": "cheap", "output": 1.0, "as_of": "2025-01-01"}, "pricing.openai.m.input must be a number"),
        ({"input": 1.0, "output": 1.0, "as_of": "last week"}, "pricing.openai.m.as_of must be a date"),
        ({"input": 1.0, "output": 1.0, "as_of": "2025-01-01", "discount": 1}, "pricing.openai.m.discount is not"),
    ],
)
def test_bad_pricing_entries_are_one_line_errors(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_pricing(_table(entry), "p.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_pricing_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "pricing.yaml"
    bad.write_text("prices: {}\n")
    with pytest.raises(ConfigError, match=r"pricing.yaml: expected a top-level 'pricing:'"):
        load_pricing(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_pricing(tmp_path / "missing.yaml")


def test_shipped_pricing_covers_the_default_models() -> None:
    table = load_pricing()
    for provider in PROVIDERS:
        cls = provider_class(provider)
        for model in filter(None, (cls.default_model, cls.default_embedding_model)):
            assert table.price_for(provider, model) is not None, (provider, model)
    assert table.price_for("openai", "no-such-model") is None


# --- check kinds ---------------------------------------------------------------------------------------------------

WEATHER_TOOL = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
}


def test_json_schema_check() -> None:
    checks = validate_checks([{"json_schema": {"type": "object", "required": ["n"],
                                               "properties": {"n": {"type": "integer"}}}}], "s")
    assert check_response('{"n": 3}', [], checks)
    assert not check_response('{"n": "three"}', [], checks)
    assert not check_response("not json", [], checks)


def test_invalid_json_schema_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"s.checks\[0\].json_schema is not a valid JSON Schema"):
        validate_checks([{"json_schema": {"type": "no-such-type"}}], "s")


def test_tool_args_validate_against_the_tools_parameters() -> None:
    checks = validate_checks([{"tool_args": "get_weather"}], "s")
    good = [{"name": "get_weather", "arguments": json.dumps({"city": "Oslo", "unit": "celsius"})}]
    missing_city = [{"name": "get_weather", "arguments": json.dumps({"unit": "celsius"})}]
    bad_enum = [{"name": "get_weather", "arguments": json.dumps({"city": "Oslo", "unit": "kelvin"})}]
    assert check_response("", good, checks, tools=[WEATHER_TOOL])
    assert not check_response("", missing_city, checks, tools=[WEATHER_TOOL])
    assert not check_response("", bad_enum, checks, tools=[WEATHER_TOOL])
    # OpenAI-style {"type": "function", "function": {...}} tool entries work the same.
    assert check_response("", good, checks, tools=[{"type": "function", "function": WEATHER_TOOL}])
    # A tool the scenario did not declare cannot be validated, so it fails.
    assert not check_response("", good, checks, tools=[])


def test_answer_key_uses_the_sent_prompts_answer() -> None:
    checks = validate_checks([{"answer_key": {"q1": "Paris", "q2": "B"}}], "s")
    assert check_response("paris.", [], checks, prompt="q1")
    assert not check_response("Lyon", [], checks, prompt="q1")
    assert check_response("(B) the second one", [], checks, prompt="q2")
    assert not check_response("Because", [], checks, prompt="q2")
    assert not check_response("Paris", [], checks, prompt="unknown prompt")
    with pytest.raises(ConfigError, match="answer_key must map prompt strings"):
        validate_checks([{"answer_key": ["Paris"]}], "s")


def test_consistency_check_is_not_judged() -> None:
    assert not is_judged([{"consistency": True}])
    assert is_judged([{"consistency": True}, {"exact": "4"}])


def test_matches_answer_letters() -> None:
    assert matches_answer("B", "b") and matches_answer("B) Queue", "B") and not matches_answer("A", "B")


def test_wilson_interval_contains_the_rate() -> None:
    lo, hi = wilson_interval(70, 100)
    assert lo < 0.7 < hi and 0.05 < hi - lo < 0.25
    assert wilson_interval(0, 10)[0] == 0.0


# --- task sets -----------------------------------------------------------------------------------------------------

def test_builtin_tasks_and_emulator_knowledge() -> None:
    tasks = builtin_tasks()
    assert len(tasks) >= 20 and len({t.prompt for t in tasks}) == len(tasks)
    rng = random.Random(1)
    for task in tasks:
        assert task.wrong and not matches_answer(task.wrong, task.answer)
        assert answer_for(task.prompt, rng, 1.0) == task.answer
        assert answer_for(task.prompt, rng, 0.0) == task.wrong
    assert answer_for("an unknown prompt", rng, 1.0) is None


def test_builtin_qa_scenario_judges_each_prompt_by_its_answer() -> None:
    scenario = with_task_scenarios({})["builtin_qa"]
    first, second = builtin_tasks()[:2]
    assert check_response(first.answer, [], scenario.checks, prompt=first.prompt)
    assert not check_response(second.answer, [], scenario.checks, prompt=first.prompt)


def test_mmlu_loader() -> None:
    tasks = load_task_file(DATA / "sample_mmlu.csv", "mmlu")
    assert [t.answer for t in tasks] == ["B", "B", "C"]
    assert "B. Queue" in tasks[0].prompt and tasks[0].prompt.endswith("Answer with the letter only.")


def test_hellaswag_loader() -> None:
    tasks = load_task_file(DATA / "sample_hellaswag.jsonl", "hellaswag")
    assert [t.answer for t in tasks] == ["B", "C"]
    assert "She fills the kettle" in tasks[0].prompt and "D. reads it a bedtime story." in tasks[0].prompt


def test_arc_loader_maps_numeric_labels_to_letters() -> None:
    tasks = load_task_file(DATA / "sample_arc.jsonl", "arc")
    assert [t.answer for t in tasks] == ["B", "C"]
    assert "C. Earth's magnetic field" in tasks[1].prompt


def test_task_file_becomes_a_scenario_named_after_its_format() -> None:
    scenarios = with_task_scenarios({}, str(DATA / "sample_arc.jsonl"), "arc")
    assert len(scenarios["arc"].prompts) == 2
    with pytest.raises(ConfigError, match="--task-file needs --task-format"):
        with_task_scenarios({}, str(DATA / "sample_arc.jsonl"), "")


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        ("q,a,b,c,d,E\n", "mmlu", ":1: MMLU answer must be A, B, C or D"),
        ("q,a,b\n", "mmlu", ":1: an MMLU row needs 6 columns"),
        ('{"ctx": "x", "endings": ["a", "b"], "label": 5}\n', "hellaswag", ":1: HellaSwag 'label' 5 is outside"),
        ("{broken\n", "arc", ":1: not valid JSON"),
        ('{"question": {"stem": "s", "choices": [{"label": "A", "text": "a"}, {"label": "B", "text": "b"}]},'
         ' "answerKey": "Z"}\n', "arc", "ARC answerKey 'Z' is not one of"),
    ],
)
def test_bad_task_files_are_one_line_errors(tmp_path: Path, content: str, fmt: str, message: str) -> None:
    path = tmp_path / "tasks.txt"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_task_file(path, fmt)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unknown_task_format() -> None:
    with pytest.raises(ConfigError, match="--task-format must be one of mmlu, hellaswag, arc"):
        load_task_file(DATA / "sample_arc.jsonl", "squad")


# --- consistency ---------------------------------------------------------------------------------------------------

def test_similarity_measures() -> None:
    assert jaccard("the cat sat", "The cat sat.") == 1.0
    assert jaccard("alpha beta", "gamma delta") == 0.0
    # LCS of (a b c d) and (a c d e) is (a c d): 2*3 / (4+4)
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert consistency_score(["same answer"] * 5) == 1.0
    assert consistency_score(["one", "two", "three"]) == 0.0
    assert consistency_score(["only one"]) is None


def test_consistency_of_a_mixture_matches_the_pair_agreement() -> None:
    # 6 "x" and 4 "y": agreeing pairs are C(6,2)+C(4,2) = 21 of C(10,2) = 45.
    assert consistency_score(["x"] * 6 + ["y"] * 4) == pytest.approx(21 / 45)


def test_embedding_consistency() -> None:
    assert embedding_consistency([[1.0, 0.0], [2.0, 0.0]]) == pytest.approx(1.0)
    assert embedding_consistency([[1.0, 0.0], [0.0, 1.0]]) == pytest.approx(0.0)


def test_measure_consistency_against_the_emulator() -> None:
    """Real OpenAI SDK against the emulator: a known question at quality 1 gives identical answers (score 1), and
    the embeddings variant reads real vectors back from the emulator's embeddings endpoint."""
    prompt = builtin_tasks()[0].prompt
    config = MockConfiguration(ttft_ms=5, itl_ms=1, output_tokens=8, quality=1.0)
    with EmulatorProcess("openai", config) as emu:
        cls = provider_class("openai")
        provider = cls(ProviderSettings(base_url=f"{emu.url}/v1", api_key=None, timeout_s=10, emulated=True))
        try:
            text = measure_consistency(provider, "gpt-4o-mini", prompt, repeats=4)
            embedded = measure_consistency(provider, "gpt-4o-mini", prompt, repeats=3,
                                           embedder=provider_embedder(provider, "text-embedding-3-small"))
        finally:
            provider.close()
    assert text == {"consistency": 1.0, "method": "token_jaccard_rouge_l", "answers": 4, "failed": 0}
    assert embedded["method"] == "embedding_cosine" and embedded["answers"] == 3
    assert embedded["consistency"] == pytest.approx(1.0, abs=1e-6)


def test_consistency_command_uses_the_emulator_without_credentials(capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    prompt = builtin_tasks()[1].prompt
    assert main(["consistency", "--repeats", "3", "--prompt", prompt]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "consistency": 1.0, "method": "token_jaccard_rouge_l", "answers": 3, "failed": 0}
    assert main(["consistency", "--repeats", "1"]) == 2
    assert "--repeats must be >= 2" in capsys.readouterr().err
