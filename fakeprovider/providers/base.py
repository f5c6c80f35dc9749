"""What every provider emulation shares: the interface, generation and request helpers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from fakeprovider.catalog import REPLY_WORDS
from fakeprovider.wire import Call, HTTPError, Request, Response

# Fault kinds that become an error response in the provider's own format.
ERROR_FAULTS = frozenset({"401", "403", "429", "quota", "498", "500", "503", "529", "echo"})

# Nominal limits in rate-limit headers; ``headroom`` reports 5% of them remaining.
REQUEST_LIMIT = 10_000
TOKEN_LIMIT = 2_000_000


def remaining(call: Call, limit: int, status: int) -> int:
    if status == 429:
        return 0
    if call.plan.headroom:
        return limit // 20
    return limit - 1


class Provider(ABC):
    """One provider's wire format, mounted under ``prefix``."""

    name: ClassVar[str]
    prefix: ClassVar[str]

    @abstractmethod
    def credential(self, req: Request) -> str | None:
        """The key the request carries (Bedrock: the access key id), or None."""

    def preflight(self, call: Call) -> Response | None:
        """Checks done before any fault: signatures, mandatory headers. None = go on."""
        return None

    @abstractmethod
    def route(self, call: Call) -> Response:
        """Answer a healthy request (may raise HTTPError)."""

    @abstractmethod
    def error(self, kind: str, call: Call, message: str | None = None) -> Response:
        """An error response in the provider's format.

        ``kind`` is a fault kind (``401``, ``429``, ``quota``, ``echo`` ...) or one of
        ``missing_key``, ``not_found`` (a model; ``message`` names it), ``bad_request``
        (``message`` says why) and ``no_route``.
        """

    def fault(self, kind: str, call: Call) -> Response:
        """The answer to an error fault (``401``, ``429``...); most providers just error."""
        return self.error(kind, call)

    def response_headers(self, call: Call, status: int) -> dict[str, str]:
        """Headers added to every response (request ids, rate limits)."""
        return {}

    def fail(self, kind: str, call: Call, message: str | None = None) -> HTTPError:
        return HTTPError(self.error(kind, call, message))

    def finalize(self, call: Call, resp: Response) -> Response:
        for name, value in self.response_headers(call, resp.status).items():
            resp.headers.setdefault(name, value)
        return resp


# -------------------------------------------------------------------- generation


@dataclass(frozen=True)
class Generation:
    text: str
    input_tokens: int
    output_tokens: int
    truncated: bool  # cut by max_tokens


def generate(input_texts: Iterable[str], max_tokens: int | None) -> Generation:
    """The deterministic reply; tokens are words, so usage follows from the request."""
    words = list(REPLY_WORDS)
    truncated = max_tokens is not None and max_tokens < len(words)
    if truncated and max_tokens is not None:
        words = words[:max_tokens]
    input_tokens = sum(len(t.split()) for t in input_texts)
    return Generation(" ".join(words), input_tokens, len(words), truncated)


def text_of(content: Any) -> list[str]:
    """Texts of a message content: a string, or a list of parts/blocks with ``text``."""
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
    return out


def positive_int(value: Any) -> int | None:
    """``value`` as a positive int, None if absent; ValueError if present and invalid."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(value)
    return value


def query_int(req: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; ValueError otherwise."""
    raw = req.query.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw)
    if not low <= value <= high:
        raise ValueError(raw)
    return value
