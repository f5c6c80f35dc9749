"""Wiring: build the services once per process, lazily (no AWS client at import time)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from chalicelib.crypto import EnvelopeCipher
from chalicelib.data import aws
from chalicelib.data.audit_repo import AuditRepository
from chalicelib.data.connections_repo import ConnectionRepository
from chalicelib.data.models import bind_models
from chalicelib.data.providers_repo import ProviderRepository
from chalicelib.services.audit import AuditService
from chalicelib.services.connections import ConnectionService
from chalicelib.services.idempotency import IdempotentRunner
from chalicelib.services.providers import ProviderService
from chalicelib.settings import Settings, get_settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    audit: AuditService
    providers: ProviderService
    connections: ConnectionService
    idempotency: IdempotentRunner


@lru_cache(maxsize=1)
def services() -> Services:
    settings = get_settings()
    bind_models(settings)
    audit = AuditService(AuditRepository(), settings)
    providers = ProviderService(ProviderRepository(), audit)

    def cipher() -> EnvelopeCipher:
        return EnvelopeCipher(aws.client("kms"), settings.kms_key_id)

    def url_check(url: str) -> None:
        from chalicelib.providers.netguard import check_url

        check_url(url, allow_hosts=settings.outbound_allow_hosts,
                  allow_http=settings.outbound_allow_http)

    connections = ConnectionService(
        ConnectionRepository(), providers, audit, cipher, settings, url_check
    )
    idem = IdempotentRunner(settings.tables.idempotency, lambda: aws.client("dynamodb"))
    return Services(settings, audit, providers, connections, idem)


def reset() -> None:
    """Forget the wiring (tests change the environment between cases)."""
    services.cache_clear()
    get_settings.cache_clear()
    aws.reset_clients()
