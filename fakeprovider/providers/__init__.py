"""The six wire formats, each mounted under its own path prefix."""

from __future__ import annotations

from fakeprovider.providers.anthropic import AnthropicProvider
from fakeprovider.providers.azure import AzureOpenAIProvider
from fakeprovider.providers.base import ERROR_FAULTS, Provider
from fakeprovider.providers.bedrock import BedrockProvider
from fakeprovider.providers.cohere import CohereProvider
from fakeprovider.providers.google import GoogleProvider
from fakeprovider.providers.openai import OpenAIProvider

PROVIDERS: tuple[Provider, ...] = (
    OpenAIProvider(),
    AnthropicProvider(),
    AzureOpenAIProvider(),
    BedrockProvider(),
    GoogleProvider(),
    CohereProvider(),
)


def provider_for(path: str) -> Provider | None:
    """The provider whose prefix ``path`` (percent-decoded) starts with."""
    for provider in PROVIDERS:
        if path == provider.prefix or path.startswith(provider.prefix + "/"):
            return provider
    return None


__all__ = ["ERROR_FAULTS", "PROVIDERS", "Provider", "provider_for"]
