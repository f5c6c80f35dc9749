"""Shared pieces of error classification: status defaults, messages, retry hints, headroom.

Each adapter classifies a provider's error body first (``openai.classify`` etc.) and falls back
to ``by_status`` for what the body does not settle.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.providers.base import ProviderError

_MAX_MESSAGE = 500


@dataclass(frozen=True)
class ErrorResponse:
    """A non-2xx answer, as an adapter's classifier sees it."""

    status: int
    body: Any  # parsed JSON, or None when the body was not JSON
    headers: Mapping[str, str]
    model_call: bool  # the request named a model (lookup or generation)


def body_message(body: Any) -> str | None:
    """The human message in the usual error body shapes."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
        for key in ("message", "detail", "Message"):
            value = body.get(key)
            if isinstance(value, str):
                return value
    return None


def provider_message(resp: ErrorResponse, fallback: str | None = None) -> str:
    """A short message for the user: the provider's own words where it gave any."""
    text = body_message(resp.body) or fallback or f"The provider answered HTTP {resp.status}."
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _parse_seconds(value: str) -> float | None:
    """Seconds from a number or an HTTP date; None when neither."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if parsed.tzinfo is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    ms = _parse_seconds((headers.get("retry-after-ms") or "").strip())
    if ms is not None:
        return ms / 1000.0
    return _parse_seconds((headers.get("retry-after") or "").strip())


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def duration_seconds(value: Any) -> float | None:
    """A protobuf JSON duration such as ``"41s"`` or ``"1.5s"``."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1))
    return None


# A message saying the requested model does not exist or cannot be used, in the words servers
# use: OpenAI/Groq "The model `x` does not exist", vLLM "The model `x` does not exist.",
# Ollama "model 'x' not found, try pulling it first", LiteLLM "Invalid model name passed in
# model=x", Mistral "Invalid model: x", DeepSeek "Model Not Exist", OpenRouter "x is not a
# valid model ID", Together "Unable to access model x". The gap after "model" stops at a
# sentence end, so "'max_tokens' is not supported with this model. Use ..." is not one.
_MISSING_MODEL = re.compile(
    r"\bmodel\b(?:(?!\.\s).){0,80}?"
    r"(?:not found|does not exist|doesn't exist|not exist|no longer exists|is not available"
    r"|not available|is invalid|not valid)"
    r"|\b(?:invalid|unknown|no such)\s+model\b"
    r"|not a valid model"
    r"|unable to access model",
    re.IGNORECASE,
)
_MODEL_STATUSES = (400, 404, 422)


def names_missing_model(resp: ErrorResponse) -> bool:
    """A 400/404/422 answer to a call that named a model, saying that model is unusable.

    OpenAI-shaped bodies that name another parameter (``error.param``) are about that
    parameter, whatever the message says.
    """
    if not resp.model_call or resp.status not in _MODEL_STATUSES:
        return False
    err = resp.body.get("error") if isinstance(resp.body, dict) else None
    param = err.get("param") if isinstance(err, dict) else None
    if isinstance(resp.body, dict) and param is None:
        param = resp.body.get("param")  # vLLM's older flat shape
    if isinstance(param, str) and param.strip().lower() not in ("", "none", "null"):
        return param.strip().lower() == "model"
    message = body_message(resp.body)
    return message is not None and _MISSING_MODEL.search(message) is not None


def _should_retry_override(headers: Mapping[str, str]) -> bool | None:
    value = (headers.get("x-should-retry") or "").strip().lower()
    return {"true": True, "false": False}.get(value)


def by_status(resp: ErrorResponse, message: str | None = None) -> ProviderError:
    """The default mapping of an HTTP status to an error code.

    404 on a model call means the model is missing, and so does a 400 or 422 whose message
    says so (``names_missing_model``); a 404 on a listing means the base URL does not point at
    the API, which the user fixes like an unavailable provider.
    """
    status = resp.status
    text = message or provider_message(resp)
    retry_after = retry_after_seconds(resp.headers)
    if 300 <= status < 400:
        code = "blocked_endpoint"
        text = "The provider answered with a redirect; redirects are never followed."
    elif status in (401, 498):
        code = "invalid_api_key"
    elif status == 402:
        code = "quota_exhausted"
    elif status == 403:
        code = "permission_denied"
    elif names_missing_model(resp):
        code = "model_not_available"
    elif status == 404:
        if resp.model_call:
            code = "model_not_available"
        else:
            code = "provider_unavailable"
            text = f"The API was not found at this base URL (HTTP 404): {text}"
            return ProviderError(code, text, http_status=status, retryable=False)
    elif status == 408:
        code = "timeout"
    elif status == 429:
        code = "rate_limited"
    elif status >= 500:
        code = "provider_unavailable"
    else:
        code = "bad_response"
        text = f"The provider rejected the request (HTTP {status}): {text}"
    retryable = (
        _should_retry_override(resp.headers)
        if code in ("rate_limited", "provider_unavailable", "timeout")
        else None
    )
    return ProviderError(
        code, text, http_status=status, retry_after=retry_after, retryable=retryable
    )


def error(code: str, resp: ErrorResponse, message: str | None = None, **kw: Any) -> ProviderError:
    """A ProviderError for ``resp`` with ``code``, the provider's message and retry hint."""
    kw.setdefault("retry_after", retry_after_seconds(resp.headers))
    return ProviderError(code, message or provider_message(resp), http_status=resp.status, **kw)


@dataclass(frozen=True)
class Headroom:
    ratio: float
    remaining: float
    limit: float
    header: str

    def describe(self) -> str:
        return (
            f"Rate-limit headroom is low: {self.remaining:g} of {self.limit:g} left "
            f"({self.header})."
        )


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def headroom(headers: Mapping[str, str]) -> Headroom | None:
    """The tightest remaining/limit pair among rate-limit headers, if the provider sent any.

    Pairs a ``...remaining...`` header with the same name saying ``limit`` instead:
    OpenAI/Azure ``x-ratelimit-remaining-requests`` / ``x-ratelimit-limit-requests``,
    Anthropic ``anthropic-ratelimit-tokens-remaining`` / ``...-tokens-limit``, Cohere trial
    ``x-trial-endpoint-call-remaining`` / ``...-limit``.
    """
    best: Headroom | None = None
    for name in headers:
        lname = name.lower()
        if "remaining" not in lname:
            continue
        remaining = _number(headers.get(name))
        limit = _number(headers.get(lname.replace("remaining", "limit")))
        if remaining is None or limit is None or limit <= 0:
            continue
        found = Headroom(max(0.0, remaining) / limit, remaining, limit, lname)
        if best is None or found.ratio < best.ratio:
            best = found
    return best


def has_account_rate_headers(headers: Mapping[str, str]) -> bool:
    """Whether a response carries per-account rate-limit headers.

    Providers compute these only for an identified account, so a 429 carrying them proves
    the credentials were accepted.
    """
    return headroom(headers) is not None
