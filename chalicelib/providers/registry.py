"""Adapter lookup by ``Target.adapter``; adapter modules are imported on first use."""

from __future__ import annotations

import importlib

from chalicelib.providers.adapter import Adapter
from chalicelib.providers.base import ProviderError

# name -> (module, class). Imported lazily so that e.g. boto3 loads only for Bedrock.
_ADAPTERS: dict[str, tuple[str, str]] = {
    "openai": ("chalicelib.providers.openai", "OpenAIAdapter"),
    "anthropic": ("chalicelib.providers.anthropic", "AnthropicAdapter"),
    "azure_openai": ("chalicelib.providers.azure_openai", "AzureOpenAIAdapter"),
    "bedrock": ("chalicelib.providers.bedrock", "BedrockAdapter"),
    "google": ("chalicelib.providers.google", "GoogleAdapter"),
    "cohere": ("chalicelib.providers.cohere", "CohereAdapter"),
}

ADAPTER_NAMES: tuple[str, ...] = tuple(_ADAPTERS)


def get_adapter(name: str) -> Adapter:
    """A fresh adapter for ``name`` (adapters may keep per-call state, e.g. AWS clients)."""
    try:
        module_name, class_name = _ADAPTERS[name]
    except KeyError:
        raise ProviderError(
            "provider_disabled", f"The provider type '{name}' is not supported."
        ) from None
    cls = getattr(importlib.import_module(module_name), class_name)
    adapter: Adapter = cls()
    return adapter
