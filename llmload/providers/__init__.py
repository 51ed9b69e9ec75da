"""Provider adapters, one module per provider, each the same shape (see ``llmload.providers.base``)."""

from __future__ import annotations

import importlib

from llmload.errors import ProviderSetupError
from llmload.providers.base import Provider, ProviderSettings

PROVIDERS: dict[str, str] = {
    "openai": "llmload.providers.openai:OpenAIProvider",
    "openai-fast": "llmload.providers.openai_fast:OpenAIFastProvider",
    "bedrock": "llmload.providers.bedrock:BedrockProvider",
    "anthropic": "llmload.providers.anthropic:AnthropicProvider",
    "ollama": "llmload.providers.ollama:OllamaProvider",
    "mock": "llmload.providers.mock:MockProvider",
}
"""Provider name -> ``module:Class``. Modules are imported on first use so an unused SDK costs nothing."""


def provider_class(name: str) -> type[Provider]:
    try:
        target = PROVIDERS[name]
    except KeyError:
        raise ProviderSetupError(f"unknown provider {name!r}; choose one of: {', '.join(PROVIDERS)}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["PROVIDERS", "Provider", "ProviderSettings", "provider_class"]
