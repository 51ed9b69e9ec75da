"""Protocol-faithful emulators of the providers' HTTP APIs, for offline load tests and conformance checks."""

from __future__ import annotations

from llmload.emulator.config import MockConfiguration
from llmload.emulator.core import Protocol
from llmload.emulator.openai import OpenAIProtocol
from llmload.emulator.server import EmulatorProcess

PROTOCOLS: dict[str, type[Protocol]] = {
    OpenAIProtocol.name: OpenAIProtocol,
}

__all__ = ["PROTOCOLS", "EmulatorProcess", "MockConfiguration", "Protocol"]
