"""Shared fixtures: emulators in subprocesses on free 127.0.0.1 ports, and the repo root for subprocess runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmload.emulator import EmulatorProcess, MockConfiguration

# Importing locust monkey-patches threading with gevent; inside a pytest-xdist worker, whose execnet threads already
# run, that deadlocks the worker (gevent LoopExit). Import it once here without the patch, then drop the variable so
# every locust subprocess a test starts patches as usual, whatever environment it is given.
os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
import locust  # noqa: F401

del os.environ["LOCUST_SKIP_MONKEY_PATCH"]

REPO = Path(__file__).resolve().parent.parent
LOCUST = str(Path(sys.executable).parent / "locust")


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """An all-protocol emulator with fast, fixed timing (TTFT 50 ms, ITL 5 ms, 12 tokens)."""
    with EmulatorProcess("all", MockConfiguration(ttft_ms=50, itl_ms=5, output_tokens=12)) as emu:
        yield emu


def locust_env() -> dict[str, str]:
    """Environment for locust subprocesses: no provider credentials leak in from the developer's shell."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_BASE_URL")) and not k.startswith("AWS_") and k != "LOCUST_SKIP_MONKEY_PATCH"
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env
