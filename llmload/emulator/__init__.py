"""Protocol-faithful emulators of the providers' HTTP APIs, for offline load tests and conformance checks."""

from __future__ import annotations

from llmload.emulator.anthropic import AnthropicProtocol
from llmload.emulator.bedrock import BedrockProtocol
from llmload.emulator.config import MockConfiguration
from llmload.emulator.core import Protocol
from llmload.emulator.ollama import OllamaProtocol
from llmload.emulator.openai import OpenAIProtocol
from llmload.emulator.server import EmulatorProcess

PROTOCOLS: dict[str, type[Protocol]] = {
    OpenAIProtocol.name: OpenAIProtocol,
    BedrockProtocol.name: BedrockProtocol,
    AnthropicProtocol.name: AnthropicProtocol,
    OllamaProtocol.name: OllamaProtocol,
}

__all__ = ["PROTOCOLS", "EmulatorProcess", "MockConfiguration", "Protocol"]
