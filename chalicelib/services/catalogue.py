"""The seed catalogue: providers every deployment starts with. Pure data; admins add more
through ``POST /providers`` without a code change (the OpenAI-compatible services below are
examples of exactly that: nothing but data)."""

from __future__ import annotations

from typing import Any

# Printable ASCII without spaces: catches pasted whitespace and line breaks, accepts any vendor's
# key format (vendors change prefixes; a strict prefix check would reject valid new keys).
KEY_PATTERN = r"^[\x21-\x7e]{8,512}$"
AWS_REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$"


def _api_key(label: str = "API key", help_text: str = "") -> dict[str, Any]:
    return {"name": "api_key", "label": label, "secret": True, "required": True,
            "pattern": KEY_PATTERN, "help": help_text or "Paste the key exactly as issued."}


def _settings(timeout: int = 30, temp_max: float = 2.0, slow_ms: int = 5000) -> dict[str, Any]:
    return {"timeout_seconds": timeout, "max_retries": 3, "slow_threshold_ms": slow_ms,
            "temperature_min": 0.0, "temperature_max": temp_max}


def _openai_compatible(pid: str, name: str, base_url: str, models: list[str]) -> dict[str, Any]:
    return {
        "id": pid, "name": name, "adapter": "openai", "base_url": base_url,
        "base_url_required": False, "credential_fields": [_api_key()],
        "default_settings": _settings(), "known_models": models, "enabled": True,
        "description": f"{name} (OpenAI-compatible API)",
    }


SEED_PROVIDERS: list[dict[str, Any]] = [
    {
        "id": "openai", "name": "OpenAI", "adapter": "openai",
        "base_url": "https://api.openai.com/v1", "base_url_required": False,
        "description": "GPT models from OpenAI",
        "credential_fields": [
            _api_key(help_text="Create one at platform.openai.com under API keys."),
            {"name": "organization_id", "label": "Organization ID", "secret": False,
             "required": False, "pattern": r"^org-[A-Za-z0-9]{4,64}$",
             "help": "Only for organization billing (org-...)."},
            {"name": "project_id", "label": "Project ID", "secret": False, "required": False,
             "pattern": r"^proj_[A-Za-z0-9]{4,64}$", "help": "Optional OpenAI project."},
        ],
        "default_settings": _settings(), "enabled": True,
        "known_models": ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini"],
    },
    {
        "id": "anthropic", "name": "Anthropic", "adapter": "anthropic",
        "base_url": "https://api.anthropic.com", "base_url_required": False,
        "description": "Claude models from Anthropic",
        "credential_fields": [_api_key(help_text="Create one in the Anthropic console.")],
        "default_settings": _settings(temp_max=1.0), "enabled": True,
        "known_models": ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"],
    },
    {
        "id": "bedrock", "name": "AWS Bedrock", "adapter": "bedrock",
        "base_url": None, "base_url_required": False,
        "description": "Foundation models on Amazon Bedrock (SigV4 with your IAM keys)",
        "credential_fields": [
            {"name": "access_key_id", "label": "Access key ID", "secret": True,
             "required": True, "pattern": r"^[A-Z0-9][A-Za-z0-9_]{15,127}$",
             "help": "IAM access key with bedrock:ListFoundationModels and InvokeModel."},
            {"name": "secret_access_key", "label": "Secret access key", "secret": True,
             "required": True, "pattern": r"^[A-Za-z0-9/+=]{16,128}$", "help": ""},
            {"name": "session_token", "label": "Session token", "secret": True,
             "required": False, "pattern": r"^[A-Za-z0-9/+=]{16,4096}$",
             "help": "Only for temporary credentials."},
            {"name": "region", "label": "Region", "secret": False, "required": True,
             "pattern": AWS_REGION_PATTERN, "help": "e.g. us-east-1"},
        ],
        "default_settings": _settings(timeout=60, temp_max=1.0, slow_ms=8000),
        "enabled": True,
        "known_models": ["anthropic.claude-3-5-sonnet-20240620-v1:0",
                         "amazon.titan-text-express-v1"],
    },
    {
        "id": "azure_openai", "name": "Azure OpenAI", "adapter": "azure_openai",
        "base_url": None, "base_url_required": True,
        "description": "OpenAI models hosted in your Azure resource; the model is a deployment",
        "credential_fields": [
            _api_key(help_text="Keys and Endpoint page of your Azure OpenAI resource."),
            {"name": "api_version", "label": "API version", "secret": False,
             "required": False, "pattern": r"^\d{4}-\d{2}-\d{2}(-preview)?$",
             "help": "Defaults to 2024-10-21."},
        ],
        "default_settings": _settings(), "enabled": True, "known_models": [],
    },
    {
        "id": "google", "name": "Google AI (Gemini API)", "adapter": "google",
        "base_url": "https://generativelanguage.googleapis.com/v1beta",
        "base_url_required": False, "description": "Gemini models through the Gemini API",
        "credential_fields": [_api_key(help_text="Create one in Google AI Studio.")],
        "default_settings": _settings(), "enabled": True,
        "known_models": ["gemini-2.5-pro", "gemini-2.5-flash"],
    },
    {
        "id": "cohere", "name": "Cohere", "adapter": "cohere",
        "base_url": "https://api.cohere.com", "base_url_required": False,
        "description": "Command models from Cohere",
        "credential_fields": [_api_key(help_text="Create one in the Cohere dashboard.")],
        "default_settings": _settings(temp_max=1.0), "enabled": True,
        "known_models": ["command-a-03-2025", "command-r-plus"],
    },
    {
        "id": "custom", "name": "Custom (OpenAI-compatible)", "adapter": "openai",
        "base_url": None, "base_url_required": True,
        "description": "Any service that speaks the OpenAI API; give its base URL",
        "credential_fields": [_api_key()], "default_settings": _settings(),
        "enabled": True, "known_models": [],
    },
    _openai_compatible("mistral", "Mistral AI", "https://api.mistral.ai/v1",
                       ["mistral-large-latest", "mistral-small-latest"]),
    _openai_compatible("groq", "Groq", "https://api.groq.com/openai/v1",
                       ["llama-3.3-70b-versatile"]),
    _openai_compatible("deepseek", "DeepSeek", "https://api.deepseek.com/v1",
                       ["deepseek-chat", "deepseek-reasoner"]),
    _openai_compatible("openrouter", "OpenRouter", "https://openrouter.ai/api/v1",
                       ["openai/gpt-4o", "anthropic/claude-sonnet-4.5"]),
    _openai_compatible("together", "Together AI", "https://api.together.xyz/v1",
                       ["meta-llama/Llama-3.3-70B-Instruct-Turbo"]),
]
