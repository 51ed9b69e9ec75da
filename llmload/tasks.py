"""Question sets with known answers, run as scenarios so accuracy is measured under load beside latency.

* ``builtin_qa``: llmload's own short questions (``llmload/data/tasks.yaml``); the emulator knows their answers,
  so its quality knob gives a known true accuracy.
* ``--task-file PATH --task-format mmlu|hellaswag|arc``: a local copy of a standard benchmark in its usual file
  format (nothing is downloaded). The scenario is named after the format (``--scenario mmlu``).
* ``consistency``: one open prompt repeated; the answers' mutual similarity is the result's ``consistency``.

Multiple-choice items become a prompt listing the choices as letters and asking for the letter only.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

from llmload.errors import ConfigError
from llmload.results import BenchmarkScenario

TASK_FORMATS = ("mmlu", "hellaswag", "arc")
LETTERS = "ABCDEFGH"
BUILTIN_QA = "builtin_qa"
CONSISTENCY = "consistency"
CONSISTENCY_PROMPT = "In two sentences, explain what a load test measures and why percentiles matter."
TASK_MAX_TOKENS = 16


@dataclass(frozen=True, slots=True)
class Task:
    """One question: the prompt sent, the answer that counts as right, and (built-in only) a plausible miss."""

    prompt: str
    answer: str
    wrong: str | None = None


def _builtin_file() -> Path:
    from llmload.config import bundled_config

    return bundled_config("tasks.yaml")


@lru_cache(maxsize=1)
def builtin_tasks() -> tuple[Task, ...]:
    """The bundled question set, read once per process."""
    from llmload.config import read_yaml

    file = _builtin_file()
    data = read_yaml(file)
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list) or not data["tasks"]:
        raise ConfigError(f"{file}: expected a top-level 'tasks:' list")
    tasks = []
    for index, item in enumerate(data["tasks"]):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("question", "answer")):
            raise ConfigError(f"{file}: tasks[{index}] needs string 'question' and 'answer'")
        tasks.append(Task(item["question"], item["answer"], item.get("wrong")))
    return tuple(tasks)


def multiple_choice_prompt(question: str, choices: list[str], intro: str = "") -> str:
    lines = [intro] if intro else []
    lines.append(question.strip())
    lines += [f"{LETTERS[i]}. {choice.strip()}" for i, choice in enumerate(choices)]
    lines.append("Answer with the letter only.")
    return "\n".join(lines)


def load_mmlu(path: Path) -> list[Task]:
    """MMLU's CSV: ``question,A,B,C,D,answer`` per row, no header (a header row is tolerated)."""
    tasks = []
    with _open(path) as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or (line_no == 1 and row[0].strip().lower() == "question"):
                continue
            if len(row) != 6:
                raise ConfigError(f"{path}:{line_no}: an MMLU row needs 6 columns (question,A,B,C,D,answer), "
                                  f"got {len(row)}")
            answer = row[5].strip().upper()
            if answer not in LETTERS[:4]:
                raise ConfigError(f"{path}:{line_no}: MMLU answer must be A, B, C or D, got {row[5]!r}")
            tasks.append(Task(multiple_choice_prompt(row[0], row[1:5]), answer))
    return tasks


def _jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    with _open(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(item, dict):
                raise ConfigError(f"{path}:{line_no}: expected a JSON object per line")
            rows.append((line_no, item))
    return rows


def load_hellaswag(path: Path) -> list[Task]:
    """HellaSwag's JSONL: ``ctx`` (the context), ``endings`` (candidate continuations), ``label`` (right index)."""
    tasks = []
    for line_no, item in _jsonl(path):
        endings, ctx = item.get("endings"), item.get("ctx")
        if not isinstance(ctx, str) or not isinstance(endings, list) or not 2 <= len(endings) <= len(LETTERS):
            raise ConfigError(f"{path}:{line_no}: a HellaSwag line needs 'ctx' (string) and 'endings' (2-8 strings)")
        try:
            label = int(item.get("label"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"{path}:{line_no}: HellaSwag 'label' must be an ending index") from None
        if not 0 <= label < len(endings):
            raise ConfigError(f"{path}:{line_no}: HellaSwag 'label' {label} is outside the {len(endings)} endings")
        prompt = multiple_choice_prompt(ctx, [str(e) for e in endings], "Which ending continues the text best?")
        tasks.append(Task(prompt, LETTERS[label]))
    return tasks


def load_arc(path: Path) -> list[Task]:
    """ARC's JSONL: ``question.stem``, ``question.choices`` (``{label, text}``) and ``answerKey`` (a label)."""
    tasks = []
    for line_no, item in _jsonl(path):
        question = item.get("question")
        stem = question.get("stem") if isinstance(question, dict) else None
        choices = question.get("choices") if isinstance(question, dict) else None
        if not isinstance(stem, str) or not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
            raise ConfigError(f"{path}:{line_no}: an ARC line needs question.stem and question.choices (2-8)")
        labels = [str(c.get("label")) if isinstance(c, dict) else "" for c in choices]
        key = str(item.get("answerKey", ""))
        if key not in labels:
            raise ConfigError(f"{path}:{line_no}: ARC answerKey {key!r} is not one of the choice labels {labels}")
        # ARC labels are A-E or 1-5; renaming them to letters keeps one answer format for every task file.
        texts = [str(c.get("text", "")) for c in choices]
        tasks.append(Task(multiple_choice_prompt(stem, texts), LETTERS[labels.index(key)]))
    return tasks


_LOADERS = {"mmlu": load_mmlu, "hellaswag": load_hellaswag, "arc": load_arc}


def load_task_file(path: str | Path, task_format: str) -> list[Task]:
    """Read a local benchmark file in its standard format; every problem is a one-line ConfigError."""
    if task_format not in _LOADERS:
        raise ConfigError(f"--task-format must be one of {', '.join(TASK_FORMATS)}, got {task_format!r}")
    tasks = _LOADERS[task_format](Path(path))
    if not tasks:
        raise ConfigError(f"{path}: no {task_format} questions found")
    return tasks


def _open(path: Path) -> TextIO:
    try:
        return path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: task file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read task file ({exc.strerror})") from None


def task_scenario(name: str, tasks: list[Task] | tuple[Task, ...], description: str) -> BenchmarkScenario:
    """A scenario sending each task's prompt, judged against that prompt's own answer."""
    return BenchmarkScenario(
        name=name,
        description=description,
        prompts=tuple(t.prompt for t in tasks),
        max_tokens=TASK_MAX_TOKENS,
        checks=({"answer_key": {t.prompt: t.answer for t in tasks}},),
    )


def consistency_scenario(prompt: str = CONSISTENCY_PROMPT) -> BenchmarkScenario:
    return BenchmarkScenario(
        name=CONSISTENCY,
        description="One prompt repeated; the answers' mutual similarity is recorded as consistency.",
        prompts=(prompt,),
        max_tokens=128,
        checks=({"consistency": True},),
    )


def with_task_scenarios(
    scenarios: dict[str, BenchmarkScenario], task_file: str = "", task_format: str = ""
) -> dict[str, BenchmarkScenario]:
    """``scenarios`` plus ``builtin_qa``, ``consistency`` and the ``--task-file`` scenario; the file's own win."""
    extra = {
        BUILTIN_QA: task_scenario(BUILTIN_QA, builtin_tasks(), "llmload's built-in questions with exact answers"),
        CONSISTENCY: consistency_scenario(),
    }
    if task_file:
        if not task_format:
            raise ConfigError(f"--task-file needs --task-format ({', '.join(TASK_FORMATS)})")
        extra[task_format] = task_scenario(task_format, load_task_file(task_file, task_format),
                                           f"{task_format} questions from {Path(task_file).name}")
    elif task_format:
        raise ConfigError("--task-format needs --task-file PATH")
    return {**extra, **scenarios}
