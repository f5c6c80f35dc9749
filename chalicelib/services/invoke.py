"""One chat call through a connection, with its settings, rate limit, quotas and usage.

Hot path of a warm Lambda: one consistent GetItem for the connection, the rate-limit update
(when ``rate_limit_rpm`` is set), the provider call, one usage update. Decrypted secrets come
from a bounded in-memory cache (at most 5 minutes, keyed by what the sealed blob is bound to
and a digest of the blob itself, so a new, replaced or revoked key misses the cache on the
very next request); the provider catalogue is cached for a minute. No KMS call while the cache
is warm.

Failover: a connection's credential sets are tried in order; when one answers
``rate_limited``, ``quota_exhausted``, ``invalid_api_key`` or ``permission_denied`` the next is
tried within the same overall timeout, and the answer says which set answered. A set that
failed for auth is marked and skipped until it is tested again.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from chalicelib.data.models import ConnectionModel, ProviderModel
from chalicelib.data.usage_repo import UsageRepository, bucket_upper_ms
from chalicelib.errors import InvalidInput, RateLimited, Unprocessable, UpstreamFailure
from chalicelib.observability import logger
from chalicelib.providers.base import TestWarning
from chalicelib.services.audit import AuditService
from chalicelib.services.common import Caller, iso, utcnow
from chalicelib.services.connections import ConnectionService, endpoint_of
from chalicelib.services.credential_sets import (
    AUTH_CODES,
    FAILOVER_CODES,
    CredentialSet,
    CredentialSetService,
    failover_order,
)
from chalicelib.services.providers import ProviderService
from chalicelib.services.testing import TestingService
from chalicelib.services.validation import Strict, parse
from chalicelib.settings import Settings

if TYPE_CHECKING:
    from chalicelib.providers.base import ProviderError

# Provider error code -> our HTTP status for an invoke.
UPSTREAM_STATUS = {
    "invalid_api_key": 424,
    "permission_denied": 424,
    "model_not_available": 422,
    "rate_limited": 429,
    "quota_exhausted": 429,
    "timeout": 504,
    "network_error": 502,
    "provider_unavailable": 503,
    "bad_response": 502,
    "blocked_endpoint": 422,
    "provider_disabled": 422,
}


def _not_blank(value: str) -> str:
    # Anthropic and Bedrock refuse whitespace-only text: a 400 here, not their 400 as our 502.
    if not value.strip():
        raise ValueError("must contain more than whitespace")
    return value


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(min_length=1, max_length=200_000), AfterValidator(_not_blank)]


class InvokeRequest(Strict):
    messages: Annotated[list[Message], Field(min_length=1, max_length=200)]
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=5)] | None = None
    stream: bool = False

    @field_validator("messages")
    @classmethod
    def _has_a_turn(cls, messages: list[Message]) -> list[Message]:
        # System text alone is no conversation: Anthropic, Bedrock and Gemini reject it.
        if all(m.role == "system" for m in messages):
            raise ValueError("at least one user or assistant message is required")
        return messages


@dataclass(frozen=True)
class EventStream:
    """A streamed invoke's answer in the one event format of every provider: ``delta``
    events (``{"text"}``) in order, then ``end`` (finish reason, usage, latency) or, when the
    provider's stream broke after it began, ``error`` (code, message, remediation, and the
    same usage and latency)."""

    events: list[tuple[str, dict[str, Any]]]


class TTLCache:
    """A small thread-safe LRU with per-entry expiry."""

    def __init__(self, capacity: int, ttl_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._data: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._capacity = capacity
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if hit[0] < self._clock():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return hit[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = (self._clock() + self._ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self._capacity:
                self._data.popitem(last=False)

    def drop_prefix(self, first: Any) -> None:
        with self._lock:
            for key in [k for k in self._data if k[0] == first]:
                del self._data[key]

    def __len__(self) -> int:
        return len(self._data)


ACTIVITY_EVERY_SECONDS = 60.0
# Below this much of the overall timeout left, a failed set is the answer: no next set.
MIN_FAILOVER_SECONDS = 1.0


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def _hist_percentile(hist: dict[int, int], pct: float) -> int | None:
    """Nearest-rank percentile of the latency histogram, walking the bucket counts (one
    sample per request would be millions of values for a busy connection)."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, -(-total * pct // 100))
    seen = 0
    for bucket, count in sorted(hist.items()):
        seen += count
        if seen >= rank:
            return bucket_upper_ms(bucket)
    return bucket_upper_ms(max(hist))


class InvokeService:
    def __init__(self, connections: ConnectionService, providers: ProviderService,
                 testing: TestingService, usage: UsageRepository, audit: AuditService,
                 settings: Settings, credential_sets: CredentialSetService) -> None:
        self._connections = connections
        self._sets = credential_sets
        self._providers = providers
        self._testing = testing
        self._usage = usage
        self._audit = audit
        self._settings = settings
        self.secrets = TTLCache(capacity=512, ttl_seconds=min(300, settings.invoke_cache_seconds))
        self._activity_written: dict[str, float] = {}
        self._provider_of: dict[str, str] = {}

    def _read(self, caller: Caller, connection_id: str
              ) -> tuple[ConnectionModel, ProviderModel | None]:
        """The connection and its provider, never cached: an admin disabling or deleting a
        provider, or changing its URL, holds from the next request in every warm Lambda.
        Warm (the provider this connection had last time is known), both come in one
        strongly consistent read; cold, or after its provider changed, in two."""
        hint = self._provider_of.get(connection_id)
        if hint is not None:
            item, provider = self._connections.get_with_provider(caller, connection_id, hint)
            if item.provider != hint:
                provider = self._provider(item.provider)
        else:
            item = self._connections.get(caller, connection_id)
            provider = self._provider(item.provider)
        if len(self._provider_of) >= 4096:
            self._provider_of.clear()
        self._provider_of[connection_id] = item.provider
        return item, provider

    def _provider(self, provider_id: str) -> ProviderModel | None:
        return self._providers.get_model(provider_id, consistent=True)

    def _secrets(self, item: ConnectionModel, cs: CredentialSet,
                 provider: ProviderModel) -> dict[str, str]:
        # Keyed on everything the blob is bound to and on the blob itself: an edited owner,
        # provider or base URL, or a replaced or revoked blob, is a miss (a real decrypt,
        # which the binding then refuses or the missing blob never reaches).
        key = (item.id, cs.name, cs.digest(), item.owner, item.provider, item.base_url or "",
               endpoint_of(item.base_url, provider), provider.base_url_changed_at or "")
        cached = self.secrets.get(key)
        if cached is not None:
            return dict(cached)
        values = self._sets.open(item, cs, provider)
        if self._settings.invoke_cache_seconds > 0:
            self.secrets.put(key, dict(values))
        return values

    def invoke(self, caller: Caller, connection_id: str,
               body: dict[str, Any]) -> dict[str, Any] | EventStream:
        """One chat call; with ``"stream": true`` the answer as an ``EventStream``."""
        from chalicelib.providers.base import ChatMessage, ProviderError
        from chalicelib.providers.runner import invoke_target, run_sync, stream_target

        req = parse(InvokeRequest, body)
        item, provider = self._read(caller, connection_id)
        if item.owner != caller.user_id:
            # An admin spending another user's credentials and quota: say so in the trail.
            self._audit.record(caller, "connection.invoke", f"connection:{item.id}",
                               target_owner=item.owner)
        if item.needs_credentials or item.sealed is None:
            raise Unprocessable("this connection has no credentials yet; supply them first",
                                field="credentials", code="needs_credentials")
        if provider is None or not provider.enabled:
            raise Unprocessable(f"provider {item.provider!r} is disabled",
                                field="provider", code="provider_disabled")
        conn_settings = item.settings or {}
        defaults = provider.default_settings or {}
        model = req.model or item.default_model
        if not model:
            raise InvalidInput("model is required: the connection has no default model",
                               field="model")
        temperature = req.temperature if req.temperature is not None else conn_settings.get(
            "temperature")
        lo = float(defaults.get("temperature_min", 0.0))
        hi = float(defaults.get("temperature_max", 2.0))
        if temperature is not None and not lo <= float(temperature) <= hi:
            raise InvalidInput(f"temperature must be between {lo} and {hi} for provider "
                               f"{provider.id!r}", field="temperature")
        max_tokens = req.max_tokens or conn_settings.get("max_tokens")

        now = utcnow()
        self._gate(item, conn_settings, now)
        messages = [ChatMessage(m.role, m.content) for m in req.messages]
        started = time.monotonic()
        order = failover_order(item)
        budget = float(conn_settings.get("timeout_seconds")
                       or (provider.default_settings or {}).get("timeout_seconds", 30))
        # Within what a request through the API may take (API Gateway ends it at 29 s).
        capped = budget > self._settings.api_call_seconds
        budget = min(budget, float(self._settings.api_call_seconds))
        tried: list[str] = []
        for index, cs in enumerate(order):
            remaining = budget - (time.monotonic() - started)
            secrets = self._secrets(item, cs, provider)
            target = dataclasses.replace(self._testing.target(
                provider, base_url=item.base_url,
                credentials={**(item.credentials_public or {}), **secrets},
                default_model=model, settings=conn_settings),
                timeout_seconds=max(0.1, remaining),
                final_codes=FAILOVER_CODES if index + 1 < len(order) else frozenset())
            tried.append(cs.name)
            try:
                if req.stream:
                    streamed = run_sync(stream_target(target, messages, model=model,
                                                      max_tokens=max_tokens,
                                                      temperature=temperature))
                else:
                    outcome = run_sync(invoke_target(target, messages, model=model,
                                                     max_tokens=max_tokens,
                                                     temperature=temperature))
                break
            except ProviderError as err:
                if err.code in AUTH_CODES:
                    self._sets.mark_auth_failed(item, cs.name)
                more_time = budget - (time.monotonic() - started) >= MIN_FAILOVER_SECONDS
                if err.code in FAILOVER_CODES and index + 1 < len(order) and more_time:
                    logger.info("invoke fails over to the next credential set", extra={
                        "connection_id": item.id, "credential_set": cs.name,
                        "error_code": err.code})
                    continue
                raise self._failed(item, now, started, err, cs.name, tried) from None
        used: dict[str, Any] = {"credential_set": tried[-1], "failover_from": tried[:-1]}
        if capped:
            used["timeout_capped_at"] = self._settings.api_call_seconds
        if req.stream:
            failure = streamed.error
            self._record(item, now, streamed.latency_ms, streamed.input_tokens,
                         streamed.output_tokens, failure.code if failure else None, tried[-1])
            self._count_tokens(item, conn_settings, now,
                               streamed.input_tokens + streamed.output_tokens)
            events: list[tuple[str, dict[str, Any]]] = [
                ("delta", {"text": text}) for text in streamed.deltas]
            if failure is None:
                events.append(("end", {**streamed.final(), **used}))
            else:
                events.append(("error", {**failure.to_dict(), **streamed.final(), **used}))
            return EventStream(events)
        self._record(item, now, outcome.latency_ms, outcome.input_tokens, outcome.output_tokens,
                     None, tried[-1])
        self._count_tokens(item, conn_settings, now,
                           outcome.input_tokens + outcome.output_tokens)
        return {**outcome.to_dict(), **used}

    def _failed(self, item: ConnectionModel, now: datetime, started: float,
                err: ProviderError, credential_set: str, tried: list[str]) -> UpstreamFailure:
        """A provider failure before any answer: recorded, and mapped to our HTTP error."""
        from chalicelib.providers.base import REMEDIATION

        latency = round((time.monotonic() - started) * 1000)
        self._record(item, now, latency, 0, 0, err.code, credential_set)
        retry_after = max(1, math.ceil(err.retry_after)) if err.retry_after else None
        if err.code == "rate_limited" and retry_after is None:
            retry_after = 1
        return UpstreamFailure(err.message, code=err.code,
                               http_status=UPSTREAM_STATUS.get(err.code, 502),
                               remediation=list(REMEDIATION[err.code]),
                               retry_after=retry_after)

    def _count_tokens(self, item: ConnectionModel, conn_settings: dict[str, Any],
                      now: datetime, tokens: int) -> None:
        if conn_settings.get("monthly_token_quota"):
            self._usage.add_month_tokens(item.id, now.strftime("%Y-%m"), tokens,
                                         _epoch(now + timedelta(days=62)))

    def _gate(self, item: ConnectionModel, conn_settings: dict[str, Any], now: datetime) -> None:
        """Rate limit and monthly quotas, enforced in DynamoDB across all Lambdas."""
        rpm = conn_settings.get("rate_limit_rpm")
        if rpm:
            wait = self._usage.take_rate_slot(item.id, now, int(rpm))
            if wait is not None:
                raise RateLimited(f"rate limit of {rpm} requests per minute reached",
                                  retry_after=wait, code="rate_limited")
        rq = conn_settings.get("monthly_request_quota")
        tq = conn_settings.get("monthly_token_quota")
        if not (rq or tq):
            return
        totals = self._usage.take_quota(item.id, now.strftime("%Y-%m"), request_quota=rq,
                                        token_quota=tq, ttl=_epoch(now + timedelta(days=62)))
        if totals is None:
            first = (now.replace(day=1) + timedelta(days=32)).replace(
                day=1, hour=0, minute=0, second=0, microsecond=0)
            self._set_quota_status(item, "error", {
                "code": "quota_exhausted",
                "message": f"The connection's monthly quota is used up until "
                           f"{first.strftime('%Y-%m-%d')}.",
                "remediation": ["Raise the connection's monthly quota, or wait for the next "
                                "month.", "Use another connection meanwhile."]})
            raise RateLimited("monthly quota of this connection is used up",
                              retry_after=int((first - now).total_seconds()),
                              code="quota_exceeded")
        used = max((totals.get("requests", 0) / rq) if rq else 0,
                   (totals.get("tokens", 0) / tq) if tq else 0)
        if used >= 0.8:
            self._set_quota_status(item, "warning", TestWarning(
                "quota_warning", f"{int(used * 100)}% of the monthly quota is used.").to_dict())

    def _set_quota_status(self, item: ConnectionModel, status: str,
                          hint: dict[str, Any]) -> None:
        if item.status == status and item.status_message == hint["message"]:
            return
        try:
            self._connections.set_status(item, status, hint)
        except Exception:  # noqa: BLE001 - a status hint must never fail the call
            logger.exception("could not record the quota status")

    def _record(self, item: ConnectionModel, now: datetime, latency_ms: int, tin: int,
                tout: int, error_code: str | None, credential_set: str) -> None:
        try:
            self._usage.record(item.id, item.owner, now.strftime("%Y-%m-%d"),
                               latency_ms=latency_ms, input_tokens=tin, output_tokens=tout,
                               error_code=error_code, ttl=_epoch(now + timedelta(days=400)),
                               credential_set=credential_set)
        except Exception:  # noqa: BLE001 - losing one usage sample must not fail the call
            logger.exception("usage not recorded", extra={"connection_id": item.id})
        self._touch_activity(item, now, error_code)

    def _touch_activity(self, item: ConnectionModel, now: datetime,
                        error_code: str | None) -> None:
        """Keep a small "recent activity" summary on the connection for the list view.
        Written at most once a minute per connection and warm Lambda, so the usual warm
        invoke stays at one read and one usage write."""
        last = self._activity_written.get(item.id)
        clock = time.monotonic()
        if last is not None and clock - last < ACTIVITY_EVERY_SECONDS:
            return
        self._activity_written[item.id] = clock
        if len(self._activity_written) > 4096:
            self._activity_written.clear()
        try:
            self._connections.set_activity(item, {
                "last_invoked_at": iso(now),
                "last_invoke_ok": error_code is None,
                "last_error_code": error_code,
            })
        except Exception:  # noqa: BLE001 - a summary must never fail the call
            logger.exception("activity not recorded", extra={"connection_id": item.id})

    # statistics ----------------------------------------------------------------------

    def stats(self, item: ConnectionModel) -> dict[str, Any]:
        now = utcnow()
        days = self._usage.days(item.id, (now - timedelta(days=29)).strftime("%Y-%m-%d"))
        out: dict[str, Any] = {}
        for label, span in (("7d", 7), ("30d", 30)):
            since = (now - timedelta(days=span - 1)).strftime("%Y-%m-%d")
            window = [d for d in days if str(d["sk"])[4:] >= since]
            hist: dict[int, int] = {}
            errors: dict[str, int] = {}
            for d in window:
                for k, v in d.items():
                    if k.startswith("h") and k[1:].isdigit():
                        hist[int(k[1:])] = hist.get(int(k[1:]), 0) + int(v)
                    elif k.startswith("err_"):
                        errors[k[4:]] = errors.get(k[4:], 0) + int(v)
            out[label] = {
                "requests": sum(int(d.get("requests", 0)) for d in window),
                "errors": sum(int(d.get("errors", 0)) for d in window),
                "errors_by_code": errors,
                "input_tokens": sum(int(d.get("input_tokens", 0)) for d in window),
                "output_tokens": sum(int(d.get("output_tokens", 0)) for d in window),
                "latency_p50_ms": _hist_percentile(hist, 50),
                "latency_p95_ms": _hist_percentile(hist, 95),
            }
        out["daily"] = [{"day": str(d["sk"])[4:], "requests": d.get("requests", 0),
                         "errors": d.get("errors", 0),
                         "input_tokens": d.get("input_tokens", 0),
                         "output_tokens": d.get("output_tokens", 0)} for d in days]
        return out

    def usage_for_owner(self, caller: Caller, owner: str | None, *, cursor: str | None = None,
                        limit: int = 50) -> dict[str, Any]:
        from chalicelib.errors import Forbidden

        if not caller.is_admin:
            raise Forbidden("only administrators may see usage across users")
        if not owner:
            raise InvalidInput("owner is required", field="owner")
        page = self._connections.owner_page(owner, cursor=cursor, limit=limit)
        items = []
        for conn in page.items:
            s = self.stats(conn)
            items.append({"connection_id": conn.id, "name": conn.name,
                          "provider": conn.provider, "7d": s["7d"], "30d": s["30d"]})
        self._audit.record(caller, "usage.read", f"owner:{owner}", target_owner=owner)
        return {"owner": owner, "items": items, "next_cursor": page.next_cursor}
