"""Loading the YAML configuration files (scenarios, and the shared YAML reader the other files use).

Every error is a ``ConfigError`` whose one line names the file and the field to fix.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from llmload.errors import ConfigError, ValidationError
from llmload.quality import validate_checks
from llmload.results import BenchmarkScenario

DEFAULT_CONFIG_DIR = Path("config")


def read_yaml(path: Path | str) -> Any:
    """Parse a YAML file; a missing file or a syntax error becomes a one-line ConfigError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: broken YAML{where}: {problem}") from None


def bundled_config(name: str) -> Path:
    """A config file shipped with the package, used when ``config/<name>`` is absent from the working directory."""
    return Path(str(resources.files("llmload") / "data" / name))


def config_path(name: str, explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit)
    local = DEFAULT_CONFIG_DIR / name
    return local if local.exists() else bundled_config(name)


_SCENARIO_FIELDS = {
    "endpoint": str,
    "description": str,
    "prompts": list,
    "prompt": str,
    "system": str,
    "max_tokens": int,
    "temperature": (int, float),
    "stream": bool,
    "tools": list,
    "checks": list,
    "weight": int,
    "dimensions": int,
    "encoding_format": str,
}


def load_scenarios(path: Path | str | None = None) -> dict[str, BenchmarkScenario]:
    """Read ``scenarios.yaml`` (a mapping ``scenarios: {name: {...}}``) into validated BenchmarkScenarios."""
    file = config_path("scenarios.yaml", path)
    data = read_yaml(file)
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), dict) or not data["scenarios"]:
        raise ConfigError(f"{file}: expected a top-level 'scenarios:' mapping of name -> settings")
    scenarios = {}
    for name, raw in data["scenarios"].items():
        # Names end up in one-line errors, logs and report headings: no control characters.
        if not str(name).strip() or not str(name).isprintable():
            raise ConfigError(f"{file}: scenario name {str(name)!r} must be a non-empty single-line string")
        where = f"{file}: scenarios.{name}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a mapping of settings")
        for key, value in raw.items():
            expected = _SCENARIO_FIELDS.get(key)
            if expected is None:
                raise ConfigError(f"{where}.{key} is not a scenario setting; known: {', '.join(_SCENARIO_FIELDS)}")
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(f"{where}.{key} has the wrong type ({type(value).__name__})")
        prompts = list(raw.get("prompts") or ([raw["prompt"]] if "prompt" in raw else []))
        if not prompts or not all(isinstance(p, str) and p for p in prompts):
            raise ConfigError(f"{where}.prompts must be a non-empty list of strings")
        try:
            scenarios[str(name)] = BenchmarkScenario(
                name=str(name),
                endpoint=raw.get("endpoint", "chat"),
                description=raw.get("description", ""),
                prompts=tuple(prompts),
                system=raw.get("system"),
                max_tokens=raw.get("max_tokens", 128),
                temperature=raw.get("temperature"),
                stream=raw.get("stream", True),
                tools=tuple(raw.get("tools") or ()),
                checks=validate_checks(raw.get("checks") or (), where),
                weight=raw.get("weight", 1),
                dimensions=raw.get("dimensions"),
                encoding_format=raw.get("encoding_format", "float"),
            )
        except ValidationError as exc:
            raise ConfigError(f"{file}: {exc}") from None
    return scenarios


def select_scenarios(all_scenarios: dict[str, BenchmarkScenario], names: str) -> list[BenchmarkScenario]:
    """Pick scenarios by a comma-separated list of names; an unknown name is a ConfigError listing known ones."""
    chosen = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        if name not in all_scenarios:
            raise ConfigError(f"unknown scenario {name!r}; known: {', '.join(sorted(all_scenarios))}")
        chosen.append(all_scenarios[name])
    if not chosen:
        raise ConfigError("--scenario must name at least one scenario")
    return chosen
