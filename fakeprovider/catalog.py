"""What the fake providers know: models, deployments, the Bedrock secret and URL prefixes.

Everything here is plain data so that tests can import it without starting a server.

Under the ``404`` fault a key "only sees the legacy models": listings return the ``*_DECOY``
entries instead of the catalog, so any catalog model the client asks for is missing and every
model-specific call on it answers the provider's not-found error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The one secret the fake knows for every Bedrock access key id starting with AKIAFAKE.
FAKE_BEDROCK_SECRET = "fake/bedrock/secret/key/EXAMPLE0000000000000000"
FAKE_BEDROCK_ACCESS_KEY_PREFIX = "AKIAFAKE"

# Adapter name -> path prefix on the fake server. A connection's base_url points at the prefix.
PREFIXES: dict[str, str] = {
    "openai": "/openai/v1",
    "anthropic": "/anthropic",
    "azure_openai": "/azure",
    "bedrock": "/bedrock",
    "google": "/google/v1beta",
    "cohere": "/cohere",
}
_ADAPTER_ALIASES: dict[str, str] = {
    "openai_compatible": "openai",
    "azure": "azure_openai",
    "gemini": "google",
}


def base_url_for(adapter: str, server_base: str) -> str:
    """Return the base URL a connection of ``adapter`` uses against the fake server.

    ``server_base`` is the server root, e.g. ``http://127.0.0.1:8765``.
    """
    name = _ADAPTER_ALIASES.get(adapter, adapter)
    if name not in PREFIXES:
        raise ValueError(f"unknown adapter {adapter!r}; expected one of {sorted(PREFIXES)}")
    return server_base.rstrip("/") + PREFIXES[name]


# ---------------------------------------------------------------- OpenAI


@dataclass(frozen=True)
class OpenAIModel:
    id: str
    created: int
    owned_by: str = "system"
    chat: bool = True


OPENAI_CATALOG: tuple[OpenAIModel, ...] = (
    OpenAIModel("gpt-4o", 1715367049),
    OpenAIModel("gpt-4o-mini", 1721172741),
    OpenAIModel("gpt-4.1", 1744316542),
    OpenAIModel("gpt-4.1-mini", 1744318173),
    OpenAIModel("gpt-4.1-nano", 1744321707),
    OpenAIModel("o3-mini", 1737146383),
    OpenAIModel("o4-mini", 1744225351),
    OpenAIModel("gpt-5", 1754425777),
    OpenAIModel("gpt-5-mini", 1754425928),
    OpenAIModel("gpt-3.5-turbo", 1677610602, owned_by="openai"),
    OpenAIModel("text-embedding-3-small", 1705948997, chat=False),
    OpenAIModel("text-embedding-3-large", 1705953180, chat=False),
    OpenAIModel("whisper-1", 1677532384, owned_by="openai-internal", chat=False),
    OpenAIModel("dall-e-3", 1698785189, chat=False),
)
OPENAI_DECOY: tuple[OpenAIModel, ...] = (
    OpenAIModel("davinci-002", 1692634301),
    OpenAIModel("babbage-002", 1692634615),
)

# ---------------------------------------------------------------- Anthropic


@dataclass(frozen=True)
class AnthropicModel:
    id: str
    display_name: str
    created_at: str


# Newest first, as the real API lists them.
ANTHROPIC_CATALOG: tuple[AnthropicModel, ...] = (
    AnthropicModel("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
    AnthropicModel("claude-sonnet-4-5", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    AnthropicModel("claude-opus-4-1", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
    AnthropicModel("claude-opus-4-0", "Claude Opus 4", "2025-05-22T00:00:00Z"),
    AnthropicModel("claude-sonnet-4-0", "Claude Sonnet 4", "2025-05-22T00:00:00Z"),
    AnthropicModel("claude-3-7-sonnet-20250219", "Claude Sonnet 3.7", "2025-02-24T00:00:00Z"),
    AnthropicModel("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z"),
    AnthropicModel("claude-3-haiku-20240307", "Claude Haiku 3", "2024-03-07T00:00:00Z"),
)
ANTHROPIC_DECOY: tuple[AnthropicModel, ...] = (
    AnthropicModel("claude-2.1", "Claude 2.1", "2023-11-21T00:00:00Z"),
)

# ---------------------------------------------------------------- Azure OpenAI


@dataclass(frozen=True)
class AzureModel:
    id: str
    created_at: int
    chat: bool = True
    lifecycle_status: str = "generally-available"


# What the resource may deploy (GET /openai/models), not the deployments.
AZURE_CATALOG: tuple[AzureModel, ...] = (
    AzureModel("gpt-4o", 1715558400),
    AzureModel("gpt-4o-mini", 1721260800),
    AzureModel("gpt-4.1", 1744588800),
    AzureModel("o3-mini", 1738281600),
    AzureModel("text-embedding-3-small", 1706140800, chat=False),
)
AZURE_DECOY: tuple[AzureModel, ...] = (
    AzureModel("gpt-35-turbo", 1678320000, lifecycle_status="deprecated"),
)
# Deployment name -> model. A user's "model" on Azure is a deployment name.
AZURE_DEPLOYMENTS: dict[str, str] = {
    "gpt-4o-prod": "gpt-4o",
    "gpt-4o-mini": "gpt-4o-mini",
    "gpt-41-eval": "gpt-4.1",
    "embedding-small": "text-embedding-3-small",
}
AZURE_DECOY_DEPLOYMENTS: dict[str, str] = {"legacy-gpt35": "gpt-35-turbo"}

# ---------------------------------------------------------------- Bedrock


@dataclass(frozen=True)
class BedrockModel:
    model_id: str
    name: str
    provider: str
    input_modalities: tuple[str, ...] = ("TEXT",)
    output_modalities: tuple[str, ...] = ("TEXT",)
    lifecycle: str = "ACTIVE"
    authorized: bool = True
    streaming: bool = True


_TEXT_IMAGE = ("TEXT", "IMAGE")
BEDROCK_CATALOG: tuple[BedrockModel, ...] = (
    BedrockModel(
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "Claude 3.5 Sonnet",
        "Anthropic",
        input_modalities=("TEXT", "IMAGE"),
    ),
    BedrockModel(
        "anthropic.claude-3-haiku-20240307-v1:0",
        "Claude 3 Haiku",
        "Anthropic",
        input_modalities=("TEXT", "IMAGE"),
    ),
    # Listed, but the account has not been granted access: NOT_AUTHORIZED.
    BedrockModel(
        "anthropic.claude-3-opus-20240229-v1:0",
        "Claude 3 Opus",
        "Anthropic",
        input_modalities=("TEXT", "IMAGE"),
        authorized=False,
    ),
    BedrockModel("amazon.titan-text-express-v1", "Titan Text G1 - Express", "Amazon"),
    BedrockModel("amazon.titan-text-lite-v1", "Titan Text G1 - Lite", "Amazon", lifecycle="LEGACY"),
    BedrockModel(
        "amazon.titan-embed-text-v2:0",
        "Titan Text Embeddings V2",
        "Amazon",
        output_modalities=("EMBEDDING",),
        streaming=False,
    ),
    BedrockModel("amazon.nova-pro-v1:0", "Nova Pro", "Amazon", input_modalities=_TEXT_IMAGE),
    BedrockModel("amazon.nova-lite-v1:0", "Nova Lite", "Amazon", input_modalities=_TEXT_IMAGE),
    BedrockModel("meta.llama3-70b-instruct-v1:0", "Llama 3 70B Instruct", "Meta"),
    BedrockModel("meta.llama3-8b-instruct-v1:0", "Llama 3 8B Instruct", "Meta"),
    BedrockModel("mistral.mistral-large-2402-v1:0", "Mistral Large (24.02)", "Mistral AI"),
    BedrockModel("cohere.command-r-plus-v1:0", "Command R+", "Cohere"),
)
BEDROCK_DECOY: tuple[BedrockModel, ...] = (
    BedrockModel("ai21.j2-ultra-v1", "Jurassic-2 Ultra", "AI21 Labs", lifecycle="LEGACY"),
)

# ---------------------------------------------------------------- Google Gemini

_GEN_METHODS = ("generateContent", "countTokens", "createCachedContent", "batchGenerateContent")


@dataclass(frozen=True)
class GoogleModel:
    name: str
    display_name: str
    version: str
    input_token_limit: int
    output_token_limit: int
    methods: tuple[str, ...] = _GEN_METHODS


GOOGLE_CATALOG: tuple[GoogleModel, ...] = (
    GoogleModel("models/gemini-2.5-pro", "Gemini 2.5 Pro", "2.5", 1048576, 65536),
    GoogleModel("models/gemini-2.5-flash", "Gemini 2.5 Flash", "001", 1048576, 65536),
    GoogleModel("models/gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", "001", 1048576, 65536),
    GoogleModel("models/gemini-2.0-flash", "Gemini 2.0 Flash", "2.0", 1048576, 8192),
    GoogleModel("models/gemini-2.0-flash-lite", "Gemini 2.0 Flash-Lite", "2.0", 1048576, 8192),
    GoogleModel("models/gemini-flash-latest", "Gemini Flash Latest", "latest", 1048576, 65536),
    GoogleModel(
        "models/gemma-3-27b-it",
        "Gemma 3 27B",
        "001",
        131072,
        8192,
        methods=("generateContent", "countTokens"),
    ),
    GoogleModel(
        "models/text-embedding-004", "Text Embedding 004", "004", 2048, 1, methods=("embedContent",)
    ),
    GoogleModel(
        "models/gemini-embedding-001",
        "Gemini Embedding 001",
        "001",
        2048,
        1,
        methods=("embedContent", "countTextTokens", "countTokens"),
    ),
)
GOOGLE_DECOY: tuple[GoogleModel, ...] = (
    GoogleModel("models/gemini-1.0-pro", "Gemini 1.0 Pro", "001", 30720, 2048),
)
GOOGLE_DEFAULT_PAGE_SIZE = 4  # small on purpose: a full listing needs several pages

# ---------------------------------------------------------------- Cohere

_CHAT_ENDPOINTS = ("generate", "chat", "summarize")


@dataclass(frozen=True)
class CohereModel:
    name: str
    endpoints: tuple[str, ...]
    context_length: int
    default_endpoints: tuple[str, ...] = field(default=())
    is_deprecated: bool = False


COHERE_CATALOG: tuple[CohereModel, ...] = (
    CohereModel("command-a-03-2025", _CHAT_ENDPOINTS, 256000, default_endpoints=("chat",)),
    CohereModel("command-r-plus-08-2024", _CHAT_ENDPOINTS, 128000),
    CohereModel("command-r-08-2024", _CHAT_ENDPOINTS, 128000),
    CohereModel("command-r7b-12-2024", _CHAT_ENDPOINTS, 128000),
    CohereModel("command-r-plus", _CHAT_ENDPOINTS, 128000),
    CohereModel("command-r", _CHAT_ENDPOINTS, 128000),
    CohereModel("c4ai-aya-expanse-32b", ("chat",), 128000),
    CohereModel("embed-v4.0", ("embed",), 128000, default_endpoints=("embed",)),
    CohereModel("embed-english-v3.0", ("embed", "classify"), 512),
    CohereModel("embed-multilingual-v3.0", ("embed", "classify"), 512),
    CohereModel("rerank-v3.5", ("rerank",), 4096, default_endpoints=("rerank",)),
)
COHERE_DECOY: tuple[CohereModel, ...] = (
    CohereModel("command-light", _CHAT_ENDPOINTS, 4096, is_deprecated=True),
)
COHERE_DEFAULT_PAGE_SIZE = 20

# ---------------------------------------------------------------- Plain id lists for tests

OPENAI_MODELS: tuple[str, ...] = tuple(m.id for m in OPENAI_CATALOG)
ANTHROPIC_MODELS: tuple[str, ...] = tuple(m.id for m in ANTHROPIC_CATALOG)
AZURE_MODELS: tuple[str, ...] = tuple(m.id for m in AZURE_CATALOG)
BEDROCK_MODELS: tuple[str, ...] = tuple(m.model_id for m in BEDROCK_CATALOG)
BEDROCK_NOT_AUTHORIZED: tuple[str, ...] = tuple(
    m.model_id for m in BEDROCK_CATALOG if not m.authorized
)
GOOGLE_MODELS: tuple[str, ...] = tuple(m.name for m in GOOGLE_CATALOG)
COHERE_MODELS: tuple[str, ...] = tuple(m.name for m in COHERE_CATALOG)

# Adapter -> the model ids its listing returns (Azure: the deployment names a user would pick).
MODELS: dict[str, tuple[str, ...]] = {
    "openai": OPENAI_MODELS,
    "anthropic": ANTHROPIC_MODELS,
    "azure_openai": tuple(AZURE_DEPLOYMENTS),
    "bedrock": BEDROCK_MODELS,
    "google": GOOGLE_MODELS,
    "cohere": COHERE_MODELS,
}

# A model (Azure: deployment) per adapter that lists, answers and generates when healthy.
DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "azure_openai": "gpt-4o-mini",
    "bedrock": "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "google": "models/gemini-2.5-flash",
    "cohere": "command-a-03-2025",
}

# The deterministic reply every generation returns (cut to max_tokens words).
REPLY_TEXT = "Hello from fakeprovider. This is a deterministic test reply."
REPLY_WORDS: tuple[str, ...] = tuple(REPLY_TEXT.split())

_KEY_PREFIXES: dict[str, str] = {
    "openai": "sk-fake-",
    "anthropic": "sk-ant-fake-",
    "azure_openai": "azfake",
    "bedrock": FAKE_BEDROCK_ACCESS_KEY_PREFIX,
    "google": "AIzaFake",
    "cohere": "co-fake-",
}


def make_key(adapter: str, directive: str | None = None, tag: str = "") -> str:
    """Build a plausible fake credential for ``adapter`` carrying ``directive`` (``fk_<d>``).

    For Bedrock this is the access key id; sign with ``FAKE_BEDROCK_SECRET``. ``tag`` makes
    the key unique, so that counted faults (``429x1``) of different tests do not share a counter.
    """
    name = _ADAPTER_ALIASES.get(adapter, adapter)
    key = _KEY_PREFIXES[name] + (tag or "key")
    if name == "bedrock":
        key = key.ljust(16, "0")  # an access key id has 16 characters at least
    if directive and directive != "ok":
        # An AWS access key id is letters, digits and underscores (the catalogue's pattern).
        key += f"{'_' if name == 'bedrock' else '-'}fk_{directive}"
    return key
