"""The provider layer's public types: targets, outcomes, errors and their remediation.

Nothing here does I/O. ``runner.test_target`` and ``runner.invoke_target`` take a ``Target`` and
return a ``TestOutcome`` / ``InvokeOutcome``; every provider failure is a ``ProviderError`` whose
``code`` is one of ``ERROR_CODES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

ERROR_CODES: tuple[str, ...] = (
    "invalid_api_key",
    "permission_denied",
    "model_not_available",
    "rate_limited",
    "quota_exhausted",
    "timeout",
    "network_error",
    "provider_unavailable",
    "bad_response",
    "blocked_endpoint",
    "provider_disabled",
)

# Steps a user can take, per error code. The first four follow the product guide's
# troubleshooting section ("Invalid API Key", "Connection Timeout", "Model Not Available",
# "Rate Limit Exceeded").
REMEDIATION: dict[str, list[str]] = {
    "invalid_api_key": [
        "Verify the API key is correct and complete (no missing characters or extra spaces).",
        "Check whether the key has expired or been revoked.",
        "Ensure the key has the permissions this connection needs.",
        "Try regenerating the API key and updating the connection.",
    ],
    "permission_denied": [
        "Check that the credentials are allowed to call this API (roles, scopes or IAM policy).",
        "Verify the organization, project or region settings match the credentials.",
        "Ask the account administrator to grant the missing permission.",
    ],
    "model_not_available": [
        "Check the model's availability in your region.",
        "Verify your account has access to the model (some models must be enabled first).",
        "Update the connection to a supported model name (for Azure, the deployment name).",
        "Contact the provider's support for access.",
    ],
    "rate_limited": [
        "Reduce the request frequency and try again later.",
        "Implement request queuing for bursts of traffic.",
        "Upgrade the account's rate limits with the provider.",
        "Distribute the load across multiple connections.",
    ],
    "quota_exhausted": [
        "Check the account's billing status, credit balance and spend limits.",
        "Add credit or raise the spend limit with the provider.",
        "Use another connection until the quota resets.",
    ],
    "timeout": [
        "Check internet connectivity.",
        "Increase the connection's timeout value.",
        "Verify the provider's service status.",
        "Test again from a different network.",
    ],
    "network_error": [
        "Check the base URL and that the provider's host name resolves.",
        "Check internet connectivity and firewall rules.",
        "Verify the provider's service status and test again.",
    ],
    "provider_unavailable": [
        "Check the provider's status page for an outage.",
        "Try again in a few minutes.",
        "Verify the base URL points at the provider's API.",
    ],
    "bad_response": [
        "Verify the base URL points at the provider's API and not at a web page or proxy.",
        "Check that the provider type matches the service behind the URL.",
        "Try again later; contact the provider if the problem persists.",
    ],
    "blocked_endpoint": [
        "Use the provider's public HTTPS endpoint.",
        "Private, internal and metadata addresses are not allowed, and redirects are not "
        "followed: enter the final URL.",
    ],
    "provider_disabled": [
        "Contact your administrator: this provider is disabled or not supported.",
        "Use a connection with another provider meanwhile.",
    ],
}

# A warning means "it works, but": the status stays ``warning`` and each one carries a code, so
# a client (the console's troubleshooting panel) can show its title and remediation.
WARNING_REMEDIATION: dict[str, list[str]] = {
    "slow_response": [
        "Check the provider's status page for degraded performance.",
        "Increase the connection's timeout if slow answers are expected for this model.",
        "Try a smaller or faster model, or another region or endpoint.",
    ],
    "model_not_available": [
        "Pick one of the models the test found as the default model.",
        "Verify your account has access to the model (some models must be enabled first).",
        "For Azure, use the deployment name, not the model name.",
    ],
    "rate_limit_headroom": [
        "Reduce the request frequency or spread bursts over time.",
        "Set a rate limit on the connection to stay under the provider's limit.",
        "Distribute the load across multiple connections.",
    ],
    "rate_limited": [
        "The credentials are valid; wait for the provider's limit to reset.",
        "Reduce the request frequency and implement request queuing for bursts.",
        "Upgrade the account's rate limits with the provider.",
    ],
    "quota_warning": [
        "Raise the connection's monthly quota if the usage is expected.",
        "Check which prompts use this connection (its dependents) for unexpected traffic.",
        "Use another connection for the rest of the month.",
    ],
    "provider_incident": [
        "The provider is failing for many connections at once: nothing is wrong with yours.",
        "Check the provider's status page; the connection is retested automatically.",
        "Switch dependents to a connection of another provider if the outage lasts.",
    ],
}
WARNING_CODES: tuple[str, ...] = tuple(WARNING_REMEDIATION)


@dataclass(frozen=True)
class TestWarning:
    """One reason a working connection is yellow; ``code`` is one of ``WARNING_CODES``."""

    __test__ = False

    code: str
    message: str

    def __post_init__(self) -> None:
        if self.code not in WARNING_REMEDIATION:
            raise ValueError(f"unknown warning code {self.code!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message,
                "remediation": list(WARNING_REMEDIATION[self.code])}


def warning_dicts(values: Any) -> list[dict[str, Any]]:
    """Stored warnings in today's shape; items written before warnings had codes were strings."""
    out: list[dict[str, Any]] = []
    for value in values or []:
        if isinstance(value, dict):
            out.append(value)
        elif isinstance(value, str):
            out.append({"code": "warning", "message": value, "remediation": []})
    return out


_RETRYABLE_BY_DEFAULT = frozenset(
    {"rate_limited", "timeout", "network_error", "provider_unavailable"}
)


@dataclass(frozen=True)
class Target:
    """Everything needed to call one provider for one connection.

    ``credentials`` holds decrypted secrets; it is left out of ``repr`` so a logged target
    never shows them.
    """

    adapter: str
    base_url: str
    credentials: Mapping[str, str] = field(repr=False)
    default_model: str | None
    timeout_seconds: float = 30.0
    max_retries: int = 3
    slow_threshold_ms: int = 5000
    allow_hosts: frozenset[str] = frozenset()
    allow_http: bool = False
    max_list_pages: int = 10
    # Error codes not retried on this target (invoke fails over to the next credential set).
    final_codes: frozenset[str] = frozenset()
    # HTTP requests one session may send, retries included (0: no cap). A test's cost is
    # bounded whatever the connection's max_retries and the provider's paging.
    max_calls: int = 0

    def within(self, seconds: float) -> Target:
        """This target with its whole budget cut to ``seconds`` when it is longer (the
        API's, the daily run's or a background test's ceiling)."""
        if self.timeout_seconds <= seconds:
            return self
        return replace(self, timeout_seconds=float(seconds))


class ProviderError(Exception):
    """A provider call failed; ``code`` is one of ``ERROR_CODES``.

    ``message`` is user-facing and, once it leaves the provider layer, scrubbed of every
    credential value. ``retryable`` defaults from the code (rate limits, timeouts, network
    errors and outages are transient).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown provider error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.retry_after = retry_after
        self.retryable = code in _RETRYABLE_BY_DEFAULT if retryable is None else retryable

    def with_message(self, message: str) -> ProviderError:
        """A copy of this error with another message (used for scrubbing)."""
        return ProviderError(
            self.code,
            message,
            http_status=self.http_status,
            retry_after=self.retry_after,
            retryable=self.retryable,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` object of a test outcome: code, message and remediation steps."""
        return {
            "code": self.code,
            "message": self.message,
            "remediation": list(REMEDIATION[self.code]),
        }

    def __repr__(self) -> str:
        return f"ProviderError({self.code!r}, {self.message!r}, http_status={self.http_status})"


@dataclass
class Check:
    ok: bool | None
    latency_ms: int | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "latency_ms": self.latency_ms, "detail": self.detail}


def utc_now_iso() -> str:
    """Now as ISO 8601 UTC with a ``Z`` suffix, millisecond precision (the service's clock)."""
    from chalicelib.services.common import utcnow

    return utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class TestOutcome:
    """The result of one connection test; ``to_dict`` is what the API stores and returns."""

    __test__ = False  # not a pytest test class, despite the name

    status: str  # "active" | "warning" | "error"
    checks: dict[str, Check]  # connectivity, authentication, model_access, performance
    latency_ms: int | None
    available_models: list[str]
    error: dict[str, Any] | None
    warnings: list[TestWarning]
    tested_at: str = field(default_factory=utc_now_iso)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checks": {name: check.to_dict() for name, check in self.checks.items()},
            "latency_ms": self.latency_ms,
            "available_models": list(self.available_models),
            "error": dict(self.error) if self.error is not None else None,
            "warnings": [w.to_dict() for w in self.warnings],
            "tested_at": self.tested_at,
        }


@dataclass
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass
class InvokeOutcome:
    output_text: str
    model: str
    finish_reason: str  # "stop" | "length" | "content_filter" | "other"
    input_tokens: int
    output_tokens: int
    latency_ms: int
    provider_request_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "output_text": self.output_text,
            "model": self.model,
            "finish_reason": self.finish_reason,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
            "latency_ms": self.latency_ms,
            "provider_request_id": self.provider_request_id,
        }
