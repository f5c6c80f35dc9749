"""Wiring: build the services once per process, lazily (no AWS client at import time)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from chalicelib.crypto import EnvelopeCipher
from chalicelib.data import aws
from chalicelib.data.audit_repo import AuditRepository
from chalicelib.data.connections_repo import ConnectionRepository
from chalicelib.data.daily_repo import DailyClaimRepository, RunRepository
from chalicelib.data.incidents_repo import IncidentRepository
from chalicelib.data.models import bind_models
from chalicelib.data.providers_repo import ProviderRepository
from chalicelib.data.tests_repo import TestHistoryRepository
from chalicelib.data.usage_repo import UsageRepository
from chalicelib.services.alerts import AlertService
from chalicelib.services.audit import AuditService
from chalicelib.services.connections import ConnectionService
from chalicelib.services.credential_sets import CredentialSetService
from chalicelib.services.daily import DailyRun
from chalicelib.services.digest import DigestService
from chalicelib.services.idempotency import IdempotentRunner
from chalicelib.services.incidents import IncidentService
from chalicelib.services.invoke import InvokeService
from chalicelib.services.providers import ProviderService
from chalicelib.services.subscriptions import SubscriptionService
from chalicelib.services.testing import TestingService
from chalicelib.settings import Settings, get_settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    audit: AuditService
    providers: ProviderService
    connections: ConnectionService
    idempotency: IdempotentRunner
    testing: TestingService
    alerts: AlertService
    subscriptions: SubscriptionService
    daily: DailyRun
    usage: InvokeService
    incidents: IncidentService
    credential_sets: CredentialSetService


@lru_cache(maxsize=1)
def services() -> Services:
    settings = get_settings()
    bind_models(settings)
    audit = AuditService(AuditRepository(), settings)
    repo = ConnectionRepository()
    providers = ProviderService(ProviderRepository(), audit, repo)

    def cipher() -> EnvelopeCipher:
        return EnvelopeCipher(aws.client("kms"), settings.kms_key_id)

    def url_check(url: str) -> None:
        from chalicelib.providers.netguard import check_url

        check_url(url, allow_hosts=settings.outbound_allow_hosts,
                  allow_http=settings.outbound_allow_http)

    def sns() -> object:
        return aws.client("sns")

    def provider_name(pid: str) -> str:
        p = providers.get_model(pid)
        return p.name if p else pid

    connections = ConnectionService(repo, providers, audit, cipher, settings, url_check)
    idem = IdempotentRunner(settings.tables.idempotency, lambda: aws.client("dynamodb"))
    alerts = AlertService(sns, settings, provider_name)
    usage = UsageRepository(settings.tables.usage)
    testing = TestingService(connections, providers, repo, TestHistoryRepository(), audit,
                             settings, on_result=alerts.on_result, usage=usage,
                             sqs_factory=lambda: aws.client("sqs"))
    credential_sets = CredentialSetService(connections, repo, audit, settings, cipher, testing)
    subscriptions = SubscriptionService(sns, settings, audit)
    incidents = IncidentService(IncidentRepository(), audit, settings, alerts.publish,
                                provider_name)
    runs = RunRepository()
    daily = DailyRun(repo, providers, testing, DailyClaimRepository(),
                     lambda: aws.client("sqs"), settings,
                     concurrency=settings.daily_concurrency,
                     per_provider=settings.daily_provider_cap,
                     incidents=incidents, runs=runs,
                     digests=DigestService(runs, subscriptions.wants_digest, alerts.publish),
                     credential_sets=credential_sets, publish=alerts.publish,
                     provider_name=provider_name)
    invoke = InvokeService(connections, providers, testing, usage, audit, settings,
                           credential_sets)
    return Services(settings, audit, providers, connections, idem, testing, alerts,
                    subscriptions, daily, invoke, incidents, credential_sets)


def reset() -> None:
    """Forget the wiring (tests change the environment between cases)."""
    services.cache_clear()
    get_settings.cache_clear()
    aws.reset_clients()
