"""The contract every provider adapter implements, and helpers they share."""

from __future__ import annotations

import json
import math
import string
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from chalicelib.providers.base import ChatMessage, ProviderError, Target
from chalicelib.providers.session import ProviderSession

DEFAULT_MAX_TOKENS = 1024  # for providers that require a limit (Anthropic) when none is given


@dataclass(frozen=True)
class ModelCheck:
    ok: bool | None
    detail: str | None = None


@dataclass(frozen=True)
class GenerationRequest:
    model: str
    messages: Sequence[ChatMessage]
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    finish_reason: str  # "stop" | "length" | "content_filter" | "other"
    input_tokens: int
    output_tokens: int
    request_id: str | None


@dataclass(frozen=True)
class StreamPiece:
    """A part of a streamed answer: text, and what the provider says along the way."""

    text: str = ""
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    model: str | None = None
    request_id: str | None = None


class Adapter(ABC):
    """One provider protocol family.

    ``list_models`` doubles as the authentication check (the free call every provider has);
    ``check_model`` says whether the default model is usable without spending tokens, where the
    provider allows that; ``generate`` makes one chat completion.
    """

    name: ClassVar[str]
    default_base_url: ClassVar[str] = ""

    def base_url(self, target: Target) -> str:
        base = (target.base_url or self.default_base_url).strip().rstrip("/")
        if not base:
            raise ProviderError("blocked_endpoint", "The connection has no base URL.")
        return base

    @abstractmethod
    async def list_models(self, s: ProviderSession) -> list[str]: ...

    async def check_model(self, s: ProviderSession, model: str, listed: list[str]) -> ModelCheck:
        """Listed, or found by a single-model lookup; missing when the lookup says not found."""
        if model in listed:
            return ModelCheck(True, "Listed by the provider.")
        try:
            found = await self.lookup_model(s, model)
        except ProviderError as err:
            if err.code != "model_not_available":
                raise
            found = False
        if found:
            return ModelCheck(True, "Found by a model lookup.")
        return ModelCheck(False, f"The model '{model}' is not available to these credentials.")

    async def lookup_model(self, s: ProviderSession, model: str) -> bool:
        """GET one model; providers without such a call rely on the listing alone."""
        return False

    @abstractmethod
    async def generate(self, s: ProviderSession, req: GenerationRequest) -> Completion: ...

    def stream(self, s: ProviderSession, req: GenerationRequest) -> AsyncIterator[StreamPiece]:
        """The same generation, streamed in the provider's own format."""
        raise ProviderError("provider_disabled", f"{self.name} does not stream answers.")


def secret(target: Target, name: str, label: str | None = None) -> str:
    """A required credential field, trimmed; invalid_api_key when missing or not header-safe."""
    value = (target.credentials.get(name) or "").strip()
    label = label or name.replace("_", " ")
    if not value:
        raise ProviderError("invalid_api_key", f"The connection has no {label}.")
    if any(ch not in string.printable or ch in "\r\n\t\x0b\x0c" for ch in value):
        raise ProviderError("invalid_api_key", f"The {label} contains invalid characters.")
    return value


def segment(value: str) -> str:
    """``value`` as one URL path segment (a model or deployment name)."""
    if value in ("", ".", ".."):
        raise ProviderError("model_not_available", f"'{value}' is not a valid model name.")
    return quote(value, safe="")


def bad_shape(what: str) -> ProviderError:
    return ProviderError(
        "bad_response", f"The provider's answer has an unexpected shape ({what}).", retryable=False
    )


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_shape(what)
    return value


def as_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise bad_shape(what)
    return value


def as_int(value: Any) -> int:
    """A token count from JSON: ints and whole floats; anything else counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value) if math.isfinite(value) else 0


def names(
    items: list[Any], key: str, what: str, keep: Callable[[dict[str, Any]], bool]
) -> list[str]:
    """The ``key`` field of each dict in ``items`` that ``keep`` accepts."""
    out: list[str] = []
    for item in items:
        entry = as_dict(item, what)
        value = entry.get(key)
        if not isinstance(value, str):
            raise bad_shape(what)
        if keep(entry):
            out.append(value)
    return out


def split_system(messages: Sequence[ChatMessage]) -> tuple[str | None, list[ChatMessage]]:
    """System messages joined (for providers with a top-level system field), and the rest."""
    system = [m.content for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    return ("\n\n".join(system) if system else None), rest


def unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


# What a model listing may keep: it is stored on the connection and in each history item
# (DynamoDB items stop at 400 KB) and a hostile provider chooses its size.
MAX_MODELS = 1000
MAX_MODEL_ID_CHARS = 200
MAX_MODELS_CHARS = 64 * 1024


def cap_models(values: list[str]) -> list[str]:
    """Unique model ids, ids over ``MAX_MODEL_ID_CHARS`` dropped, at most ``MAX_MODELS`` of
    them and ``MAX_MODELS_CHARS`` characters in all (the first ones, in the provider's order)."""
    out: list[str] = []
    total = 0
    for value in unique(values):
        if len(value) > MAX_MODEL_ID_CHARS:
            continue
        if len(out) >= MAX_MODELS or total + len(value) > MAX_MODELS_CHARS:
            break
        out.append(value)
        total += len(value)
    return out


PageFetcher = Callable[[str | None], Awaitable[tuple[list[str], str | None]]]


async def paginate(s: ProviderSession, fetch_page: PageFetcher) -> list[str]:
    """Follow page tokens (cursor in, cursor out) up to ``max_list_pages`` pages, and no
    further once the listing holds more than is kept (see ``cap_models``)."""
    models: list[str] = []
    token: str | None = None
    seen: set[str] = set()
    chars = 0
    for _ in range(max(1, s.target.max_list_pages)):
        page, token = await fetch_page(token)
        models.extend(page)
        chars += sum(len(m) for m in page)
        if not token or token in seen or len(models) >= MAX_MODELS or chars > MAX_MODELS_CHARS:
            break
        seen.add(token)
    return cap_models(models)


def sub_dict(obj: dict[str, Any], key: str) -> dict[str, Any]:
    """``obj[key]`` when it is an object, else empty (for optional parts of an answer)."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def sub_list(obj: dict[str, Any], key: str) -> list[Any]:
    """``obj[key]`` when it is an array, else empty."""
    value = obj.get(key)
    return value if isinstance(value, list) else []


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events from text lines: ``(event name or "message", data)``.

    Comments and unknown fields are skipped; multi-line data is joined with newlines.
    """
    event = ""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield event or "message", "\n".join(data)


def json_event(data: str, what: str) -> dict[str, Any]:
    """One event's data as a JSON object."""
    try:
        value = json.loads(data)
    except ValueError:
        raise bad_shape(what) from None
    return as_dict(value, what)
