"""The provider catalogue: readable by everyone, managed by admins, audited."""

from __future__ import annotations

import builtins
import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from chalicelib.data.connections_repo import ConnectionRepository
from chalicelib.data.models import ProviderModel
from chalicelib.data.paging import BadCursor, Page
from chalicelib.data.providers_repo import ProviderExists, ProviderRepository, StaleProvider
from chalicelib.errors import Conflict, Forbidden, InvalidInput, NotFound, PreconditionFailed
from chalicelib.services.audit import AuditService
from chalicelib.services.common import Caller, iso, utcnow
from chalicelib.services.validation import MultiLine, SingleLine, Strict, parse

ADAPTERS = ("openai", "anthropic", "azure_openai", "bedrock", "google", "cohere")
Adapter = Literal["openai", "anthropic", "azure_openai", "bedrock", "google", "cohere"]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{1,39}$")]


class CredentialField(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    label: Annotated[str, Field(min_length=1, max_length=100), SingleLine]
    secret: bool
    required: bool = False
    pattern: Annotated[str, Field(max_length=300)] | None = None
    help: Annotated[str, Field(max_length=500), MultiLine] | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc.msg})") from None
        return value


class DefaultSettings(Strict):
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 30
    max_retries: Annotated[int, Field(ge=0, le=10)] = 3
    slow_threshold_ms: Annotated[int, Field(ge=100, le=300_000)] = 5000
    temperature_min: Annotated[float, Field(ge=0, le=5)] = 0.0
    temperature_max: Annotated[float, Field(ge=0, le=5)] = 2.0

    @model_validator(mode="after")
    def _range(self) -> DefaultSettings:
        if self.temperature_min > self.temperature_max:
            raise ValueError("temperature_min must not exceed temperature_max")
        return self


Url = Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https?://")]


class ProviderBody(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100), SingleLine]
    adapter: Adapter
    description: Annotated[str, Field(max_length=1000), MultiLine] | None = None
    # Before base_url, so that base_url's check can see it (an error then names base_url).
    base_url_required: bool = False
    base_url: Annotated[Url | None, Field(validate_default=True)] = None
    credential_fields: Annotated[list[CredentialField], Field(min_length=1, max_length=12)]
    default_settings: DefaultSettings = DefaultSettings()
    known_models: Annotated[list[Annotated[str, Field(min_length=1, max_length=200),
                                           SingleLine]],
                            Field(max_length=500)] | None = None
    enabled: bool = True

    # Field validators, not one model validator: an error then names its field, not "body".
    @field_validator("base_url")
    @classmethod
    def _base_url_given(cls, value: str | None, info: ValidationInfo) -> str | None:
        if (not value and not info.data.get("base_url_required")
                and info.data.get("adapter") != "bedrock"):
            raise ValueError("base_url is required unless connections must give their own")
        return value

    @field_validator("credential_fields")
    @classmethod
    def _fields_unique(cls, fields: list[CredentialField]) -> list[CredentialField]:
        names = [f.name for f in fields]
        if len(names) != len(set(names)):
            raise ValueError("credential field names must be unique")
        if not any(f.secret for f in fields):
            raise ValueError("at least one credential field must be secret")
        return fields


class ProviderCreate(ProviderBody):
    id: Slug


def same_url(a: str | None, b: str | None) -> bool:
    return (a or "").rstrip("/") == (b or "").rstrip("/")


class ProviderService:
    def __init__(self, repo: ProviderRepository, audit: AuditService,
                 connections: ConnectionRepository | None = None) -> None:
        self._repo = repo
        self._audit = audit
        self._connections = connections

    def _in_use(self, provider_id: str, *, following_only: bool = False) -> int:
        """How many connections use a provider (``following_only``: those that follow its
        base URL, having none of their own)."""
        if self._connections is None:
            return 0
        return self._connections.count_by_provider(provider_id, following_only=following_only)

    def get_model(self, provider_id: str, *, consistent: bool = False) -> ProviderModel | None:
        return self._repo.get(provider_id, consistent=consistent)

    def all_models(self) -> builtins.list[ProviderModel]:
        return self._repo.all()

    def list(self, *, cursor: str | None, limit: int) -> Page[dict[str, Any]]:
        try:
            page = self._repo.list(cursor=cursor, limit=limit)
        except BadCursor as exc:
            raise InvalidInput(str(exc), field="cursor") from None
        return Page([to_view(p) for p in page.items], page.next_cursor)

    def get(self, provider_id: str) -> dict[str, Any]:
        item = self._repo.get(provider_id)
        if item is None:
            raise NotFound(f"provider {provider_id!r} does not exist")
        return to_view(item)

    def create(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        _admin(caller)
        data = parse(ProviderCreate, body)
        now = iso(utcnow())
        item = _to_model(data.id, data, version=1, created_at=now, updated_at=now)
        try:
            self._repo.create(item)
        except ProviderExists:
            raise Conflict(f"provider {data.id!r} already exists", field="id",
                           code="already_exists") from None
        self._audit.record(caller, "provider.create", f"provider:{data.id}",
                           changed_fields=sorted(body))
        return to_view(item)

    def replace(self, caller: Caller, provider_id: str, body: dict[str, Any],
                if_match: int | None, *, partial: bool, force: bool = False) -> dict[str, Any]:
        _admin(caller)
        current = self._repo.get(provider_id)
        if current is None:
            raise NotFound(f"provider {provider_id!r} does not exist")
        if if_match is not None and if_match != current.version:
            raise PreconditionFailed("the provider changed since you read it")
        if "id" in body and body["id"] != provider_id:
            raise InvalidInput("id cannot be changed", field="id")
        body = {k: v for k, v in body.items() if k != "id"}
        merged = {**_to_body(current), **body} if partial else body
        data = parse(ProviderBody, merged)
        now = iso(utcnow())
        item = _to_model(provider_id, data, version=int(current.version) + 1,
                         created_at=current.created_at, updated_at=now)
        item.base_url_changed_at = current.base_url_changed_at
        detail: dict[str, Any] | None = None
        if not same_url(current.base_url, data.base_url):
            # Keys stored for connections that follow this URL were entered for the old host.
            # They are never sent to the new one: their binding names the old endpoint (and
            # older blobs are refused by base_url_changed_at), so owners enter them again.
            affected = self._in_use(provider_id, following_only=True)
            if affected and not force:
                raise Conflict(
                    f"{affected} connection(s) use this provider's base URL; their stored keys "
                    "will not be sent to a new one and their owners will have to enter them "
                    "again. Repeat with ?force=true to change it.",
                    field="base_url", code="provider_in_use",
                    details={"connections_affected": affected})
            item.base_url_changed_at = now
            detail = {"base_url_changed": True, "connections_affected": affected}
        try:
            self._repo.replace(item, int(current.version))
        except StaleProvider:
            raise PreconditionFailed("the provider changed since you read it") from None
        self._audit.record(caller, "provider.update", f"provider:{provider_id}",
                           changed_fields=sorted(body), detail=detail)
        return to_view(item)

    def delete(self, caller: Caller, provider_id: str, if_match: int | None,
               force: bool = False) -> dict[str, Any] | None:
        """Delete a provider nobody uses. One in use is a 409 naming how many connections
        use it; ``force`` then disables it instead (its connections stay, and say so)."""
        _admin(caller)
        current = self._repo.get(provider_id)
        if current is None:
            raise NotFound(f"provider {provider_id!r} does not exist")
        if if_match is not None and if_match != current.version:
            raise PreconditionFailed("the provider changed since you read it")
        used = self._in_use(provider_id)
        if used and not force:
            raise Conflict(f"{used} connection(s) use this provider; delete them first, or "
                           "repeat with ?force=true to disable the provider instead",
                           code="provider_in_use", details={"connections": used})
        if used:
            disabled = self.replace(caller, provider_id, {"enabled": False}, None,
                                    partial=True)
            self._audit.record(caller, "provider.disable", f"provider:{provider_id}",
                               detail={"connections": used, "instead_of": "delete"})
            return disabled
        try:
            self._repo.delete(current, int(current.version))
        except StaleProvider:
            raise PreconditionFailed("the provider changed since you read it") from None
        self._audit.record(caller, "provider.delete", f"provider:{provider_id}")
        return None

    def seed(self, providers: builtins.list[dict[str, Any]]) -> int:
        """Insert missing seed providers; returns how many were added."""
        added = 0
        now = iso(utcnow())
        for raw in providers:
            data = parse(ProviderCreate, raw)
            added += self._repo.seed(_to_model(data.id, data, version=1, created_at=now,
                                               updated_at=now))
        return added


def _admin(caller: Caller) -> None:
    if not caller.is_admin:
        raise Forbidden("only administrators may change the provider catalogue")


def _to_model(pid: str, data: ProviderBody, *, version: int, created_at: str,
              updated_at: str) -> ProviderModel:
    return ProviderModel(
        pk="provider", id=pid, name=data.name, adapter=data.adapter,
        description=data.description, base_url=data.base_url,
        base_url_required=data.base_url_required,
        credential_fields=[f.model_dump() for f in data.credential_fields],
        default_settings=data.default_settings.model_dump(),
        known_models=data.known_models, enabled=data.enabled, version=version,
        created_at=created_at, updated_at=updated_at,
    )


def _to_body(p: ProviderModel) -> dict[str, Any]:
    return {
        "name": p.name, "adapter": p.adapter, "description": p.description,
        "base_url": p.base_url, "base_url_required": bool(p.base_url_required),
        "credential_fields": p.credential_fields, "default_settings": p.default_settings,
        "known_models": p.known_models, "enabled": bool(p.enabled),
    }


def to_view(p: ProviderModel) -> dict[str, Any]:
    return {"id": p.id, **_to_body(p), "version": int(p.version),
            "created_at": p.created_at, "updated_at": p.updated_at}
