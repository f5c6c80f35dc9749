"""Connection tests and invocations: the provider layer's entry points.

Status rules of ``test_target``:

* ``error``: anything failed; ``error`` holds code, scrubbed message and remediation.
* ``warning``: it works, but
  - the test took longer than ``slow_threshold_ms`` (time spent in our own backoff between
    retries is not counted: it says nothing about the provider's speed);
  - the default model is missing while other models are accessible (``model_access`` is
    ``ok: False`` with a detail, ``error`` stays null); with no model accessible at all it is
    an ``error`` (model_not_available);
  - a rate-limit header pair shows under 10 % headroom;
  - a 429 persisted after retries while the credentials are known to be valid: an earlier
    call of the same test was accepted, or the 429 carried the provider's per-account
    rate-limit headers (``x-ratelimit-*``, ``anthropic-ratelimit-*``), which a provider can
    only compute after identifying the account. A bare 429 on the first call may come from an
    edge throttle that never looked at the key, so it stays an ``error``.
* ``active``: everything passed in good time.

A test never raises for provider failures. ``invoke_target`` raises ProviderError.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from chalicelib.observability import logger
from chalicelib.providers.adapter import Adapter, GenerationRequest, ModelCheck, cap_models
from chalicelib.providers.base import (
    ChatMessage,
    Check,
    InvokeOutcome,
    ProviderError,
    Target,
    TestOutcome,
    TestWarning,
)
from chalicelib.providers.netguard import guarded_client
from chalicelib.providers.registry import get_adapter
from chalicelib.providers.retry import SYSTEM_CLOCK, Clock
from chalicelib.providers.session import ProviderSession

T = TypeVar("T")


GRACE_SECONDS = 0.5  # the outer guard fires this long after the budget if a layer below missed it
HEADROOM_WARNING = 0.10
PROBE_MESSAGES = (ChatMessage("user", "hi"),)
ROLES = frozenset({"system", "user", "assistant"})
_AUTH_FAILURES = frozenset({"invalid_api_key", "permission_denied"})
# Raised by adapter code on provider data it did not expect; reported as bad_response.
_PARSE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from synchronous code (Lambda routes)."""
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def _http_client(
    target: Target, client: httpx.AsyncClient | None
) -> AsyncIterator[httpx.AsyncClient | None]:
    if client is not None:
        yield client
    elif target.adapter == "bedrock":
        yield None  # boto3 makes its own connections
    else:
        async with guarded_client(
            allow_hosts=target.allow_hosts, allow_http=target.allow_http
        ) as own:
            yield own


@dataclass
class _Progress:
    models: list[str] | None = None  # set once the listing (the auth check) succeeded
    model_check: ModelCheck | None = None
    probe_ms: int | None = None


async def _checks(adapter: Adapter, s: ProviderSession, progress: _Progress, probe: bool) -> None:
    progress.models = await adapter.list_models(s)
    model = s.target.default_model
    if not model:
        return
    progress.model_check = await adapter.check_model(s, model, progress.models)
    if not probe or progress.model_check.ok is False:
        return
    started = s.clock.monotonic()
    try:
        await adapter.generate(s, GenerationRequest(model, PROBE_MESSAGES, max_tokens=1))
    except ProviderError as err:
        if err.code != "model_not_available":
            raise
        progress.model_check = ModelCheck(False, err.message)
    else:
        progress.model_check = ModelCheck(True, "A 1-token test generation succeeded.")
    progress.probe_ms = round((s.clock.monotonic() - started) * 1000)


async def _guarded(s: ProviderSession, work: Coroutine[Any, Any, T]) -> T:
    """``work`` under the outer time guard; every failure leaves as a scrubbed ProviderError."""
    try:
        async with asyncio.timeout(s.target.timeout_seconds + GRACE_SECONDS):
            return await work
    except ProviderError as err:
        raise s.scrub_error(err) from None
    except TimeoutError:
        raise s.budget.exhausted_error() from None
    except _PARSE_ERRORS:
        # The redacting service logger: a traceback may quote provider text.
        logger.exception("unexpected provider answer", extra={"adapter": s.target.adapter})
        raise ProviderError(
            "bad_response", "The provider's answer could not be understood.", retryable=False
        ) from None


async def test_target(
    target: Target,
    *,
    probe_model: bool = False,
    client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
) -> TestOutcome:
    """Test a connection: connectivity, authentication, model access, performance.

    ``probe_model`` adds a 1-token generation with the default model (it costs money; only
    for connections that opted in). ``client`` lets a batch share one AsyncClient (build it
    with ``netguard.guarded_client``). ``clock`` is for tests.
    """
    clock = clock or SYSTEM_CLOCK
    progress = _Progress()
    async with _http_client(target, client) as http:
        session = ProviderSession(target, client=http, clock=clock)
        err: ProviderError | None = None
        try:
            adapter = _checked_adapter(target, session)
            await _guarded(session, _checks(adapter, session, progress, probe_model))
        except ProviderError as exc:
            err = session.scrub_error(exc)
            session.note_failure(err)
    return _outcome(target, session, progress, err)


def _outcome(
    target: Target, s: ProviderSession, progress: _Progress, err: ProviderError | None
) -> TestOutcome:
    obs = s.obs
    latency_ms = max(0, round((s.budget.elapsed() - s.budget.slept) * 1000))
    warnings: list[TestWarning] = []

    if err is not None and err.code == "rate_limited" and obs.auth_proven:
        warnings.append(TestWarning(
            "rate_limited",
            "The provider is rate limiting these credentials (HTTP 429); they are valid, "
            f"but requests may fail until the limit resets. {err.message}"
        ))
        err = None

    connectivity = Check(obs.connected, obs.connectivity_ms if obs.connected else None)

    authentication = _authentication(progress, obs.auth_proven, err)

    models = cap_models([s.scrub(m) for m in progress.models or []])
    check = progress.model_check
    if not target.default_model:
        model_access = Check(None, detail="No default model is set.")
    elif err is not None and err.code in _AUTH_FAILURES:
        # After an accepted listing, a 403 on the lookup or probe is about the model; after a
        # 401 nothing is known about it.
        denied = err.code == "permission_denied" and progress.models is not None
        model_access = Check(False, detail=err.message) if denied else Check(None)
    elif check is None:
        model_access = Check(None)
    else:
        model_access = Check(check.ok, progress.probe_ms, s.scrub.optional(check.detail))
        if check.ok is False and err is None:
            if models:
                warnings.append(TestWarning(
                    "model_not_available",
                    f"The default model '{target.default_model}' is not available to these "
                    f"credentials; {len(models)} other models are."
                ))
            else:
                err = ProviderError("model_not_available", check.detail or "No model available.")

    if err is None:
        performance = Check(latency_ms <= target.slow_threshold_ms, latency_ms)
        if not performance.ok:
            warnings.append(TestWarning(
                "slow_response",
                f"Slow responses: the test took {latency_ms} ms "
                f"(threshold {target.slow_threshold_ms} ms)."
            ))
        if obs.headroom is not None and obs.headroom.ratio < HEADROOM_WARNING:
            warnings.append(TestWarning("rate_limit_headroom", obs.headroom.describe()))
    else:
        performance = Check(None, latency_ms)

    return TestOutcome(
        status="error" if err is not None else ("warning" if warnings else "active"),
        checks={
            "connectivity": connectivity,
            "authentication": authentication,
            "model_access": model_access,
            "performance": performance,
        },
        latency_ms=latency_ms,
        available_models=models,
        error=s.scrub_error(err).to_dict() if err is not None else None,
        warnings=[TestWarning(w.code, s.scrub(w.message)) for w in warnings],
    )


def _authentication(progress: _Progress, auth_proven: bool, err: ProviderError | None) -> Check:
    """The authentication check, never contradicting the error code.

    A rejected key (401) fails it wherever it happened, even after a listing succeeded (a
    gateway that lists models without checking the key, or a key revoked mid-test). A 403
    fails it only when nothing was accepted before: after an accepted listing, a 403 on the
    model is about the model, not the credentials.
    """
    if err is not None and (
        err.code == "invalid_api_key" or (err.code in _AUTH_FAILURES and progress.models is None)
    ):
        return Check(False, detail=err.message)
    if progress.models is not None or auth_proven:
        return Check(True)
    return Check(None)


def _checked_adapter(target: Target, session: ProviderSession) -> Any:
    """The target's adapter, once its base URL passed the outbound guard (Bedrock's endpoint
    is checked by its own client)."""
    adapter = get_adapter(target.adapter)
    if target.adapter != "bedrock":
        session.check_url(adapter.base_url(target))
    return adapter


def _generation(target: Target, session: ProviderSession, model: str | None,
                messages: Sequence[ChatMessage], max_tokens: int | None,
                temperature: float | None) -> tuple[Any, GenerationRequest]:
    """The adapter and request of one generation, invoked or streamed."""
    if not model:
        raise ProviderError(
            "model_not_available",
            "No model was given and the connection has no default model.",
        )
    adapter = _checked_adapter(target, session)
    return adapter, GenerationRequest(model, list(messages), max_tokens, temperature)


def _validate(messages: Sequence[ChatMessage], max_tokens: int | None) -> None:
    if not messages:
        raise ValueError("messages must not be empty")
    for message in messages:
        if message.role not in ROLES or not isinstance(message.content, str):
            raise ValueError(f"unsupported message role {message.role!r}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError("max_tokens must be positive")


async def invoke_target(
    target: Target,
    messages: list[ChatMessage],
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
) -> InvokeOutcome:
    """One chat generation; ``model`` defaults to the target's default model.

    Raises ProviderError (scrubbed) for provider failures, ValueError for malformed input.
    ``latency_ms`` is the caller's wall time, retries included.
    """
    _validate(messages, max_tokens)
    clock = clock or SYSTEM_CLOCK
    chosen = model or target.default_model
    async with _http_client(target, client) as http:
        s = ProviderSession(target, client=http, clock=clock)
        try:
            adapter, request = _generation(target, s, chosen, messages, max_tokens, temperature)
            completion = await _guarded(s, adapter.generate(s, request))
        except ProviderError as err:
            raise s.scrub_error(err) from None
    return InvokeOutcome(
        output_text=s.scrub(completion.text),
        model=s.scrub(completion.model),
        finish_reason=completion.finish_reason,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        latency_ms=max(0, round(s.budget.elapsed() * 1000)),
        provider_request_id=s.scrub.optional(completion.request_id),
    )


@dataclass
class StreamOutcome:
    """A streamed generation as received: the text deltas in order, then either the final
    facts (finish reason, usage) or the error that broke the stream after it began."""

    deltas: list[str]
    model: str
    finish_reason: str | None
    input_tokens: int
    output_tokens: int
    latency_ms: int
    first_token_ms: int | None
    provider_request_id: str | None
    error: ProviderError | None = None

    def final(self) -> dict[str, Any]:
        """What the last event carries: usage and latency, on success and failure alike."""
        return {
            "model": self.model,
            "finish_reason": self.finish_reason,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
            "latency_ms": self.latency_ms,
            "first_token_ms": self.first_token_ms,
            "provider_request_id": self.provider_request_id,
        }


@dataclass
class _StreamState:
    started: float
    model: str
    deltas: list[str]
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    first_token_at: float | None = None
    request_id: str | None = None


async def _collect(
    adapter: Adapter, s: ProviderSession, request: GenerationRequest, state: _StreamState
) -> None:
    async for piece in adapter.stream(s, request):
        if piece.text:
            if state.first_token_at is None:
                state.first_token_at = s.clock.monotonic()
            state.deltas.append(piece.text)
        if piece.finish_reason is not None:
            state.finish_reason = piece.finish_reason
        if piece.input_tokens is not None:
            state.input_tokens = piece.input_tokens
        if piece.output_tokens is not None:
            state.output_tokens = piece.output_tokens
        if piece.model:
            state.model = piece.model
        if piece.request_id:
            state.request_id = piece.request_id
    if state.finish_reason is None:
        raise ProviderError(
            "bad_response",
            "The provider's stream ended before the answer was finished.",
            retryable=False,
        )


async def stream_target(
    target: Target,
    messages: list[ChatMessage],
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
) -> StreamOutcome:
    """One chat generation, streamed from the provider in its own format.

    The same limits, budget and error mapping as ``invoke_target``; retries happen only
    before the first byte of the answer. A failure before any text raises ProviderError
    (scrubbed); a failure after text arrived is returned in ``error`` with what came before.
    """
    _validate(messages, max_tokens)
    clock = clock or SYSTEM_CLOCK
    chosen = model or target.default_model
    async with _http_client(target, client) as http:
        s = ProviderSession(target, client=http, clock=clock)
        state = _StreamState(started=clock.monotonic(), model=chosen or "", deltas=[])
        failure: ProviderError | None = None
        try:
            adapter, request = _generation(target, s, chosen, messages, max_tokens, temperature)
            await _guarded(s, _collect(adapter, s, request, state))
        except ProviderError as err:
            if not state.deltas:
                raise s.scrub_error(err) from None
            failure = s.scrub_error(err)
    first = state.first_token_at
    return StreamOutcome(
        # As one text: a key the provider streams in small pieces is still caught.
        deltas=s.scrub.pieces(list(state.deltas)),
        model=s.scrub(state.model),
        finish_reason=state.finish_reason if failure is None else None,
        input_tokens=state.input_tokens,
        output_tokens=state.output_tokens,
        latency_ms=max(0, round(s.budget.elapsed() * 1000)),
        first_token_ms=None if first is None else max(0, round((first - state.started) * 1000)),
        provider_request_id=s.scrub.optional(state.request_id),
        error=failure,
    )


# Keep pytest from collecting the imported function as a test in callers' test modules.
test_target.__test__ = False  # type: ignore[attr-defined]
