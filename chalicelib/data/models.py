"""PynamoDB models: the single definition of every table, used by the code, the local
bootstrap (``devtools/localstack.py``) and the infrastructure template (``infra/``).

Table names come from settings at bind time; endpoints come from the standard
``AWS_ENDPOINT_URL*`` variables that botocore reads, so no model carries a host.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from chalicelib.settings import Settings


class _Base(Model):
    class Meta:
        table_name = "unbound"
        region = "us-east-1"
        max_retry_attempts = 5
        connect_timeout_seconds = 5
        read_timeout_seconds = 10
        # The daily worker runs up to 50 tests at once, each with a few DynamoDB calls.
        max_pool_connections = 64


class ProviderModel(_Base):
    """One provider of the catalogue. A constant partition lets GET /providers be one Query."""

    class Meta(_Base.Meta):
        env_key = "providers"

    pk = UnicodeAttribute(hash_key=True, default="provider")
    id = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute()
    adapter = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    base_url = UnicodeAttribute(null=True)
    base_url_required = BooleanAttribute(default=False)
    credential_fields = JSONAttribute()
    default_settings = JSONAttribute()
    known_models = JSONAttribute(null=True)
    enabled = BooleanAttribute(default=True)
    version = NumberAttribute(default=1)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    # When base_url last changed: keys sealed before it in formats 1-2 (which bind only a
    # connection's own base URL) are not sent to the new one.
    base_url_changed_at = UnicodeAttribute(null=True)


class OwnerNameIndex(GlobalSecondaryIndex["ConnectionModel"]):
    class Meta:
        index_name = "owner-name-index"
        projection = AllProjection()

    owner = UnicodeAttribute(hash_key=True)
    name_key = UnicodeAttribute(range_key=True)


class ProviderIndex(GlobalSecondaryIndex["ConnectionModel"]):
    """The connections of a provider: counted before its base URL changes or it is deleted."""

    class Meta:
        index_name = "provider-index"
        projection = IncludeProjection(["owner", "base_url"])

    provider = UnicodeAttribute(hash_key=True)
    id = UnicodeAttribute(range_key=True)


class DueIndex(GlobalSecondaryIndex["ConnectionModel"]):
    """Sparse: only connections with usable credentials carry ``due_shard``."""

    class Meta:
        index_name = "due-index"
        # base_url: the dispatcher groups a run's messages by provider and base URL (the key
        # a provider incident is counted under).
        projection = IncludeProjection(["owner", "provider", "base_url"])

    due_shard = UnicodeAttribute(hash_key=True)
    last_tested_at = UnicodeAttribute(range_key=True)


class SealedAttribute(MapAttribute[str, Any]):
    v = NumberAttribute()
    kid = UnicodeAttribute()
    wdk = BinaryAttribute(legacy_encoding=False)
    nonce = BinaryAttribute(legacy_encoding=False)
    ct = BinaryAttribute(legacy_encoding=False)


class CredentialSetAttribute(MapAttribute[str, Any]):
    """A credential set besides the primary (whose blob and hints are the connection's own
    ``sealed``/``secret_fields``, so items written before named sets read unchanged)."""

    name = UnicodeAttribute()
    sealed = SealedAttribute(null=True)
    secret_fields = JSONAttribute()
    created_at = UnicodeAttribute()
    # {"at", "status", "error_code", "latency_ms"} of this set's last test.
    last_test = JSONAttribute(null=True)
    # Set when a call with this set failed for auth; failover skips it until it is retested.
    auth_failed_at = UnicodeAttribute(null=True)


class DailyClaimAttribute(MapAttribute[str, Any]):
    """The daily run's idempotency key (connection, date), kept on the connection itself so
    that claiming also reads the item: one conditional UpdateItem. A lease lets a crashed
    worker's claim be taken over."""

    run_date = UnicodeAttribute()
    state = UnicodeAttribute()
    lease_until = UnicodeAttribute()


class ConnectionModel(_Base):
    class Meta(_Base.Meta):
        env_key = "connections"

    id = UnicodeAttribute(hash_key=True)
    owner = UnicodeAttribute()
    name = UnicodeAttribute()
    name_key = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    provider = UnicodeAttribute()
    base_url = UnicodeAttribute(null=True)
    default_model = UnicodeAttribute(null=True)
    settings = JSONAttribute()
    credentials_public = JSONAttribute()
    secret_fields = JSONAttribute()
    sealed = SealedAttribute(null=True)
    needs_credentials = BooleanAttribute(default=False)
    status = UnicodeAttribute(default="untested")
    status_message = UnicodeAttribute(null=True)
    # A status set outside a test (the monthly quota): {code, message, remediation}.
    status_hint = JSONAttribute(null=True)
    available_models = JSONAttribute(null=True)
    last_tested_at = UnicodeAttribute(null=True)
    last_test = JSONAttribute(null=True)
    due_shard = UnicodeAttribute(null=True)
    dependents_count = NumberAttribute(default=0)
    alert = JSONAttribute(null=True)
    activity = JSONAttribute(null=True)
    daily = DailyClaimAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    credentials_updated_at = UnicodeAttribute(null=True)
    # The primary credential set: its name (absent: "primary") and its own test/auth marks;
    # the other sets, in failover order, in ``credential_sets``.
    credential_name = UnicodeAttribute(null=True)
    credential_meta = JSONAttribute(null=True)
    credential_sets = ListAttribute(of=CredentialSetAttribute, null=True)
    version = NumberAttribute(default=1)

    owner_index = OwnerNameIndex()
    due_index = DueIndex()
    provider_index = ProviderIndex()


class NameLockModel(_Base):
    """Enforces unique connection names per owner through a conditional put."""

    class Meta(_Base.Meta):
        env_key = "names"

    key = UnicodeAttribute(hash_key=True)
    connection_id = UnicodeAttribute()


class EndpointClaimModel(_Base):
    """Which owner an alert address belongs to, in the names table: SNS keeps one
    subscription per (topic, protocol, address), so a second owner's Subscribe would take over
    the first's (its filter, then its deletion). ``key`` is ``sns:<protocol>/<address>``; a
    name lock's key starts with a URL-quoted owner, which never holds a colon."""

    class Meta(_Base.Meta):
        env_key = "names"

    key = UnicodeAttribute(hash_key=True)
    owner = UnicodeAttribute()
    subscription_id = UnicodeAttribute()


class DependentModel(_Base):
    class Meta(_Base.Meta):
        env_key = "dependents"

    connection_id = UnicodeAttribute(hash_key=True)
    dependent_id = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()
    display_name = UnicodeAttribute()
    owner = UnicodeAttribute()
    created_at = UnicodeAttribute()


class TestRecordModel(_Base):
    class Meta(_Base.Meta):
        env_key = "tests"

    connection_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    owner = UnicodeAttribute()
    tested_at = UnicodeAttribute()
    trigger = UnicodeAttribute()
    status = UnicodeAttribute()
    latency_ms = NumberAttribute(null=True)
    error_code = UnicodeAttribute(null=True)
    result = JSONAttribute()
    expires_at = TTLAttribute(null=True)


class AuditActionIndex(GlobalSecondaryIndex["AuditModel"]):
    class Meta:
        index_name = "action-index"
        projection = AllProjection()

    action = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class AuditTargetIndex(GlobalSecondaryIndex["AuditModel"]):
    class Meta:
        index_name = "target-index"
        projection = AllProjection()

    target = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class AuditModel(_Base):
    """Append-only: written with attribute_not_exists, never updated or deleted by the app."""

    class Meta(_Base.Meta):
        env_key = "audit"

    actor = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    event_id = UnicodeAttribute()
    at = UnicodeAttribute()
    is_admin = BooleanAttribute(default=False)
    action = UnicodeAttribute()
    target = UnicodeAttribute()
    target_owner = UnicodeAttribute(null=True)
    outcome = UnicodeAttribute()
    request_id = UnicodeAttribute(null=True)
    source_ip = UnicodeAttribute(null=True)
    changed_fields = JSONAttribute(null=True)
    detail = JSONAttribute(null=True)
    expires_at = TTLAttribute(null=True)

    action_index = AuditActionIndex()
    target_index = AuditTargetIndex()


class UsageModel(_Base):
    """Per-connection counters: ``day#YYYY-MM-DD``, ``month#YYYY-MM`` and ``rate``."""

    class Meta(_Base.Meta):
        env_key = "usage"

    connection_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    owner = UnicodeAttribute(null=True)
    requests = NumberAttribute(default=0)
    errors = NumberAttribute(default=0)
    input_tokens = NumberAttribute(default=0)
    output_tokens = NumberAttribute(default=0)
    expires_at = TTLAttribute(null=True)


class SubscriptionModel(_Base):
    class Meta(_Base.Meta):
        env_key = "subscriptions"

    owner = UnicodeAttribute(hash_key=True)
    subscription_id = UnicodeAttribute(range_key=True)
    protocol = UnicodeAttribute()
    endpoint = UnicodeAttribute()
    scope = UnicodeAttribute()
    subscription_arn = UnicodeAttribute()
    created_at = UnicodeAttribute()
    # "immediate" (one message per alert) or "digest" (one per owner per run); absent on
    # subscriptions made before digests existed, which are immediate.
    delivery = UnicodeAttribute(null=True)


class IncidentModel(_Base):
    """A provider incident (``pk`` "incident", ``sk`` its id, time-ordered): many of one
    provider's connections failing at once with provider-side codes."""

    class Meta(_Base.Meta):
        env_key = "daily"

    pk = UnicodeAttribute(hash_key=True, default="incident")
    sk = UnicodeAttribute(range_key=True)
    provider = UnicodeAttribute()
    base_url = UnicodeAttribute(null=True)
    provider_key = UnicodeAttribute()
    state = UnicodeAttribute()  # "open" | "closed"
    started_at = UnicodeAttribute()
    ended_at = UnicodeAttribute(null=True)
    run_date = UnicodeAttribute()
    affected = NumberAttribute(default=0)
    codes = UnicodeSetAttribute(null=True)
    retests = NumberAttribute(default=0)


class ProviderRunModel(_Base):
    """Counters of one run (``pk`` "run#<run id>") for one provider key (``sk``): a run spans
    many messages and worker invocations, so its tally lives here, updated atomically."""

    class Meta(_Base.Meta):
        env_key = "daily"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    tested = NumberAttribute(default=0)
    failed = NumberAttribute(default=0)
    # Connections that failed with provider-side codes before an incident was open: the ones
    # to reclassify when it opens.
    failed_ids = UnicodeSetAttribute(null=True)
    incident_id = UnicodeAttribute(null=True)
    pointer_read = BooleanAttribute(null=True)
    expires_at = TTLAttribute(null=True)


class OpenIncidentModel(_Base):
    """The open incident of a provider key (``pk`` "open", ``sk`` the key): at most one, by
    a conditional put."""

    class Meta(_Base.Meta):
        env_key = "daily"

    pk = UnicodeAttribute(hash_key=True, default="open")
    sk = UnicodeAttribute(range_key=True)
    incident_id = UnicodeAttribute()
    started_at = UnicodeAttribute()


class RunProgressModel(_Base):
    """A run's progress (``pk`` "run#<run date>", ``sk`` "#run"): messages queued by the
    dispatcher and finished by workers; the digests go out once when they meet."""

    class Meta(_Base.Meta):
        env_key = "daily"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default="#run")
    messages = NumberAttribute(default=0)
    done = NumberAttribute(default=0)
    digest_at = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)


class DigestEntryModel(_Base):
    """One line of an owner's digest for a run (``pk`` "digest#<run date>", ``sk``
    "<owner>#<connection id>"): a connection that failed, recovered or is due for rotation."""

    class Meta(_Base.Meta):
        env_key = "daily"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    owner = UnicodeAttribute()
    connection_id = UnicodeAttribute()
    connection_name = UnicodeAttribute()
    provider = UnicodeAttribute()
    kind = UnicodeAttribute()  # "failure" | "reminder" | "recovery" | "rotation_due"
    status = UnicodeAttribute()
    code = UnicodeAttribute(null=True)
    message = UnicodeAttribute(null=True)
    remediation = JSONAttribute(null=True)
    tested_at = UnicodeAttribute()
    expires_at = TTLAttribute(null=True)


class IdempotencyModel(_Base):
    """Schema of the Powertools idempotency table (the library reads and writes it)."""

    class Meta(_Base.Meta):
        env_key = "idempotency"

    id = UnicodeAttribute(hash_key=True)
    expiration = TTLAttribute(null=True)


ALL_MODELS: tuple[type[_Base], ...] = (
    ProviderModel,
    ConnectionModel,
    NameLockModel,
    DependentModel,
    TestRecordModel,
    AuditModel,
    UsageModel,
    SubscriptionModel,
    IdempotencyModel,
    IncidentModel,
)

# Models that share a table with one of ALL_MODELS (bound, never created on their own).
SHARED_MODELS: tuple[type[_Base], ...] = (ProviderRunModel, OpenIncidentModel,
                                          RunProgressModel, DigestEntryModel,
                                          EndpointClaimModel)

_bound: tuple[str, ...] | None = None


def bind_models(settings: Settings) -> None:
    """Point every model at its table for this deployment (idempotent, no I/O)."""
    global _bound
    names = tuple(getattr(settings.tables, m.Meta.env_key) for m in ALL_MODELS)  # type: ignore[attr-defined]
    if _bound == names:
        return
    for model, table in zip(ALL_MODELS, names, strict=True):
        model.Meta.table_name = table
        model.Meta.region = settings.region
        model._connection = None  # drop a connection bound to an older name
    for model in SHARED_MODELS:
        model.Meta.table_name = getattr(settings.tables, model.Meta.env_key)  # type: ignore[attr-defined]
        model.Meta.region = settings.region
        model._connection = None
    _bound = names
