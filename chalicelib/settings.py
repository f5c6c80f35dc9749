"""Typed settings, read from the environment once.

Every AWS endpoint comes from the standard ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>``
variables, which botocore reads itself: nothing here (or anywhere) switches code paths between
the local emulator and the cloud.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

STAGES = ("local", "dev", "prod")


class SettingsError(RuntimeError):
    """A required setting is missing or malformed (a deployment mistake, not a user error)."""


def _req(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SettingsError(f"environment variable {name} is required")
    return value


def _int(name: str, default: int, lo: int, hi: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer") from exc
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo} and {hi}")
    return value


def _bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw in ("1", "true", "yes", "on")


def _csv(name: str) -> frozenset[str]:
    return frozenset(p.strip() for p in os.environ.get(name, "").split(",") if p.strip())


@dataclass(frozen=True)
class Tables:
    providers: str
    connections: str
    names: str
    dependents: str
    tests: str
    audit: str
    idempotency: str
    usage: str
    subscriptions: str
    daily: str


# The environment variable behind each table name; infra and the local bootstrap use this map.
TABLE_ENV: dict[str, str] = {
    "providers": "PROVIDERS_TABLE",
    "connections": "CONNECTIONS_TABLE",
    "names": "NAMES_TABLE",
    "dependents": "DEPENDENTS_TABLE",
    "tests": "TESTS_TABLE",
    "audit": "AUDIT_TABLE",
    "idempotency": "IDEMPOTENCY_TABLE",
    "usage": "USAGE_TABLE",
    "subscriptions": "SUBSCRIPTIONS_TABLE",
    "daily": "DAILY_TABLE",
}


@dataclass(frozen=True)
class Settings:
    stage: str
    version: str
    region: str
    tables: Tables
    kms_key_id: str
    alerts_topic_arn: str
    work_queue_url: str
    jwt_issuer: str
    jwt_audience: str
    jwks_url: str
    admin_group: str = "admins"
    outbound_allow_hosts: frozenset[str] = field(default_factory=frozenset)
    outbound_allow_http: bool = False
    audit_ttl_days: int = 400
    test_history_ttl_days: int = 90
    rotation_days: int = 90
    alert_reminder_days: int = 7
    max_body_bytes: int = 64 * 1024
    daily_shards: int = 8
    daily_lease_seconds: int = 600
    daily_concurrency: int = 50
    daily_provider_cap: int = 10
    # Of a provider's slots in one worker, how many one owner's connections may hold (the
    # rest stay free for other owners' tests).
    daily_owner_share: int = 5
    # A daily test's whole budget (retries included), whatever the connection's own
    # timeout_seconds (up to 300): well under the worker's Lambda timeout (300 s).
    daily_test_timeout_seconds: int = 60
    # The whole of a test or invoke made through the API (retries included): API Gateway ends
    # every request at 29 s, and the user must get our answer, not the gateway's.
    api_call_seconds: int = 25
    # A test run in the background (POST .../test {"background": true}) by the queue worker:
    # the connection's own timeout, up to this (the worker's Lambda timeout is 300 s).
    background_test_seconds: int = 240
    # Requests one test or invoke may send to a provider, retries and listing pages included.
    provider_calls_per_test: int = 8
    # Tests (of saved, unsaved or draft connections, and of credential sets) per user and
    # minute, a sliding window; connections per user.
    tests_per_minute: int = 30
    max_connections_per_user: int = 500
    invoke_cache_seconds: int = 300
    # The console's sign-in: Cognito's hosted UI in cloud stages; a local token minter in the
    # local stage only (``LOCAL_SIGNIN_KEY_FILE``, refused anywhere else).
    cognito_domain_url: str = ""
    cognito_client_id: str = ""
    local_signin_key_file: str = ""
    # A provider incident: within one run, at least this many of a provider's connections
    # tested and at least this share of them failing with provider-side codes.
    incident_min_connections: int = 5
    incident_failure_pct: int = 50
    # While an incident is open the worker retests its connections after this delay (SQS
    # DelaySeconds, at most 15 minutes), at most this many times; then the next run decides.
    incident_retest_seconds: int = 900
    incident_max_retests: int = 8


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Build the settings from the environment (once per process)."""
    stage = _req("STAGE")
    if stage not in STAGES:
        raise SettingsError(f"STAGE must be one of {', '.join(STAGES)}")
    allow_hosts = _csv("OUTBOUND_ALLOW_HOSTS")
    allow_http = _bool("OUTBOUND_ALLOW_HTTP")
    if stage != "local" and (allow_http or allow_hosts) and not _bool("OUTBOUND_ALLOW_UNSAFE"):
        # Loopback/http allowlists exist for the fake providers; a cloud stage must opt in loudly.
        raise SettingsError("OUTBOUND_ALLOW_* is only honoured in the local stage")
    local_signin = os.environ.get("LOCAL_SIGNIN_KEY_FILE", "").strip()
    if local_signin and stage != "local":
        raise SettingsError("LOCAL_SIGNIN_KEY_FILE is only honoured in the local stage")
    return Settings(
        stage=stage,
        version=os.environ.get("APP_VERSION", "0.1.0"),
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        tables=Tables(**{key: _req(env) for key, env in TABLE_ENV.items()}),
        kms_key_id=_req("KMS_KEY_ID"),
        alerts_topic_arn=_req("ALERTS_TOPIC_ARN"),
        work_queue_url=_req("WORK_QUEUE_URL"),
        jwt_issuer=_req("JWT_ISSUER"),
        jwt_audience=_req("JWT_AUDIENCE"),
        jwks_url=_req("JWKS_URL"),
        admin_group=os.environ.get("ADMIN_GROUP", "admins"),
        outbound_allow_hosts=allow_hosts,
        outbound_allow_http=allow_http,
        audit_ttl_days=_int("AUDIT_TTL_DAYS", 400, 1, 3650),
        test_history_ttl_days=_int("TEST_HISTORY_TTL_DAYS", 90, 1, 3650),
        rotation_days=_int("ROTATION_DAYS", 90, 1, 3650),
        alert_reminder_days=_int("ALERT_REMINDER_DAYS", 7, 1, 365),
        daily_shards=_int("DAILY_SHARDS", 8, 1, 256),
        daily_lease_seconds=_int("DAILY_LEASE_SECONDS", 600, 30, 3600),
        daily_concurrency=_int("DAILY_CONCURRENCY", 50, 1, 500),
        daily_provider_cap=_int("DAILY_PROVIDER_CAP", 10, 1, 500),
        daily_owner_share=_int("DAILY_OWNER_SHARE", 5, 1, 500),
        daily_test_timeout_seconds=_int("DAILY_TEST_TIMEOUT_SECONDS", 60, 5, 120),
        api_call_seconds=_int("API_CALL_SECONDS", 25, 5, 28),
        background_test_seconds=_int("BACKGROUND_TEST_SECONDS", 240, 30, 280),
        provider_calls_per_test=_int("PROVIDER_CALLS_PER_TEST", 8, 2, 50),
        tests_per_minute=_int("TESTS_PER_MINUTE", 30, 1, 10_000),
        max_connections_per_user=_int("MAX_CONNECTIONS_PER_USER", 500, 1, 1_000_000),
        invoke_cache_seconds=_int("INVOKE_CACHE_SECONDS", 300, 0, 300),
        cognito_domain_url=os.environ.get("COGNITO_DOMAIN_URL", "").strip().rstrip("/"),
        cognito_client_id=os.environ.get("COGNITO_CLIENT_ID", "").strip(),
        local_signin_key_file=local_signin,
        incident_min_connections=_int("INCIDENT_MIN_CONNECTIONS", 5, 1, 100000),
        incident_failure_pct=_int("INCIDENT_FAILURE_PCT", 50, 1, 100),
        incident_retest_seconds=_int("INCIDENT_RETEST_SECONDS", 900, 0, 900),
        incident_max_retests=_int("INCIDENT_MAX_RETESTS", 8, 0, 96),
    )
