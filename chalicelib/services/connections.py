"""Connections: one user's credentials and preferences for one provider.

Secrets are write-only: they are sealed on the way in (``chalicelib.crypto``) and only opened
to call a provider. Responses carry ``credentials_masked``; the last four characters of each
secret (for keys of 12 characters and more) are kept beside the sealed blob for that purpose.
"""

from __future__ import annotations

import builtins
import random
import re
import time
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from chalicelib.crypto import DEFAULT_SET, Binding, EnvelopeCipher, Sealed
from chalicelib.data.connections_repo import (
    ConnectionRepository,
    DependentExists,
    DependentMissing,
    NameTaken,
    VersionConflict,
)
from chalicelib.data.models import ConnectionModel, DependentModel, SealedAttribute
from chalicelib.data.paging import BadCursor, Page
from chalicelib.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    SealBroken,
    Unprocessable,
)
from chalicelib.observability import secrets as secret_registry
from chalicelib.providers.base import REMEDIATION, warning_dicts
from chalicelib.services import text
from chalicelib.services.audit import AuditService
from chalicelib.services.common import Caller, iso, new_id, utcnow
from chalicelib.services.providers import ProviderService
from chalicelib.services.validation import MultiLine, SingleLine, Strict, parse
from chalicelib.settings import Settings

MASK = "\u2022" * 8
MIN_HINT_LEN = 12
EXPORT_FORMAT = "llm-connections-export"
MAX_IMPORT = 40
UPDATE_ATTEMPTS = 30  # a PATCH without If-Match outlasts this many concurrent writers

Name = Annotated[str, Field(min_length=1, max_length=100), SingleLine]
Description = Annotated[str, Field(max_length=1000), MultiLine]
ProviderId = Annotated[str, Field(min_length=1, max_length=40), SingleLine]


def _one_word(value: str) -> str:
    if any(ch.isspace() for ch in value):
        raise ValueError("must not contain spaces")
    return value


Model = Annotated[str, Field(min_length=1, max_length=200), SingleLine,
                  AfterValidator(_one_word)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]


class ConnSettings(Strict):
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] | None = None
    max_retries: Annotated[int, Field(ge=0, le=10)] | None = None
    rate_limit_rpm: Annotated[int, Field(ge=1, le=100_000)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=5)] | None = None
    monthly_request_quota: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None
    monthly_token_quota: Annotated[int, Field(ge=1, le=1_000_000_000_000)] | None = None
    probe_model_daily: bool | None = None


class ConnectionCreate(Strict):
    name: Name
    description: Description | None = None
    provider: ProviderId
    credentials: dict[str, Any]
    default_model: Model | None = None
    base_url: Url | None = None
    settings: ConnSettings | None = None


class ConnectionPatch(Strict):
    name: Name | None = None
    description: Description | None = None
    provider: ProviderId | None = None
    credentials: dict[str, Any] | None = None
    default_model: Model | None = None
    base_url: Url | None = None
    settings: ConnSettings | None = None


class ImportEntry(Strict):
    name: Name
    description: Description | None = None
    provider: ProviderId
    credentials: dict[str, Any] | None = None
    default_model: Model | None = None
    base_url: Url | None = None
    settings: ConnSettings | None = None
    # Names of the exported connection's credential sets (never their secrets): the
    # imported connection lists them as the sets to add.
    credential_sets: Annotated[list[Annotated[str, Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]], Field(max_length=5)] | None = None


class ImportDocument(Strict):
    format: str
    version: int
    exported_at: str | None = None
    connections: Annotated[list[ImportEntry], Field(min_length=1, max_length=MAX_IMPORT)]


class DependentBody(Strict):
    kind: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$")]
    display_name: Annotated[str, Field(min_length=1, max_length=200), SingleLine]


def name_key(name: str) -> str:
    """The form names are unique in (per owner): NFKC, case-folded. Items written before
    names were normalised keep the key they were stored with (``strip().casefold()``), so
    their name lock still matches on delete and rename."""
    return text.fold(name)


def mask(value: str) -> str:
    return MASK + value[-4:] if len(value) >= MIN_HINT_LEN else MASK


def looks_masked(value: str) -> bool:
    return "\u2022" in value or value.startswith("****")


def endpoint_of(base_url: str | None, provider: Any) -> str:
    """Where a connection's key is sent: its own base URL, else its provider's (as a test's
    or an invoke's target computes it)."""
    return (base_url or getattr(provider, "base_url", None) or "").rstrip("/")


def binding_for(owner: str, cid: str, provider: Any, base_url: str | None,
                credential: str = DEFAULT_SET, *, sealed_at: str | None,
                provider_id: str | None = None) -> Binding:
    """What a connection's sealed secret is bound to (see ``chalicelib.crypto``);
    ``sealed_at``: the set's timestamp as the item stores it next to the blob."""
    pid = provider_id or getattr(provider, "id", None) or ""
    return Binding(owner, cid, pid, base_url, credential, endpoint_of(base_url, provider),
                   sealed_at or "")


class ConnectionService:
    def __init__(
        self,
        repo: ConnectionRepository,
        providers: ProviderService,
        audit: AuditService,
        cipher_factory: Callable[[], EnvelopeCipher],
        settings: Settings,
        url_check: Callable[[str], None],
    ) -> None:
        self._repo = repo
        self._providers = providers
        self._audit = audit
        self._cipher_factory = cipher_factory
        self._settings = settings
        self._url_check = url_check

    # reads --------------------------------------------------------------------------

    def get(self, caller: Caller, connection_id: str) -> ConnectionModel:
        """Load a connection the caller may act on; anything else is the same 404."""
        item = self._repo.get(connection_id) if _plausible_id(connection_id) else None
        return self._authorized(caller, connection_id, item)

    def get_with_provider(self, caller: Caller, connection_id: str,
                          provider_id: str) -> tuple[ConnectionModel, Any]:
        """``get``, and a catalogue entry read in the same request (one round trip)."""
        if not _plausible_id(connection_id):
            raise NotFound("connection not found")
        item, provider = self._repo.get_with_provider(connection_id, provider_id)
        return self._authorized(caller, connection_id, item), provider

    def _authorized(self, caller: Caller, connection_id: str,
                    item: ConnectionModel | None) -> ConnectionModel:
        if item is None:
            raise NotFound("connection not found")
        if item.owner != caller.user_id and not caller.is_admin:
            self._audit.record(caller, "connection.access", f"connection:{connection_id}",
                               outcome="denied", detail={"reason": "not owner"})
            raise NotFound("connection not found")
        if item.owner != caller.user_id:
            self._audit.record(caller, "connection.read", f"connection:{connection_id}",
                               target_owner=item.owner)
        return item

    def list(self, caller: Caller, *, owner: str | None, cursor: str | None,
             limit: int) -> Page[dict[str, Any]]:
        target = caller.user_id
        if owner and owner != caller.user_id:
            if not caller.is_admin:
                self._audit.record(caller, "connection.list", f"owner:{owner}",
                                   outcome="denied")
                raise NotFound("no such owner")
            target = owner
            self._audit.record(caller, "connection.list", f"owner:{owner}", target_owner=owner)
        try:
            page = self._repo.list_by_owner(target, cursor=cursor, limit=limit)
        except BadCursor as exc:
            raise InvalidInput(str(exc), field="cursor") from None
        return Page([self.view(i) for i in page.items], page.next_cursor)

    # create -------------------------------------------------------------------------

    def idempotency_fingerprint(self, body: Any) -> Any:
        """A create body as an ``Idempotency-Key`` replay is compared with: each secret value
        replaced by its length and the last characters its mask shows anyway (all credential
        values, if the provider is unknown). A retry with the same key and body matches; one
        with another secret almost always does not; and nothing stored helps guess a key."""
        if not isinstance(body, dict) or not isinstance(body.get("credentials"), dict):
            return body
        pid = body.get("provider")
        provider = self._providers.get_model(pid) if isinstance(pid, str) and pid else None
        secret = ({f["name"] for f in provider.credential_fields if f["secret"]}
                  if provider is not None else None)
        creds = {k: (f"secret:{len(v)}:{_hint(v)}" if isinstance(v, str) else "secret:?")
                 if secret is None or k in secret else v
                 for k, v in body["credentials"].items()}
        return {**body, "credentials": creds}

    def _room_for(self, owner: str, adding: int) -> None:
        """Connections per user are capped (a soft cap: two creates racing at the limit may
        both pass; it bounds what one user costs the daily run, not a billing quota)."""
        limit = self._settings.max_connections_per_user
        have = self._repo.count_by_owner(owner)
        if have + adding > limit:
            raise Conflict(f"at most {limit} connections per user (you have {have}); delete "
                           "one first", code="too_many_connections")

    def create(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        data = parse(ConnectionCreate, body)
        provider, base_url, public, secret_values, conn_settings = self.prepare_config(data)
        self._room_for(caller.user_id, 1)
        now = utcnow()
        cid = new_id("conn")
        owner = caller.user_id
        sealed = self._cipher_factory().seal(
            secret_values, binding_for(owner, cid, provider, base_url, sealed_at=iso(now))
        )
        item = ConnectionModel(
            id=cid, owner=owner, name=data.name.strip(), name_key=name_key(data.name),
            description=data.description, provider=provider.id, base_url=base_url,
            default_model=data.default_model, settings=conn_settings,
            credentials_public=public,
            secret_fields={k: _hint(v) for k, v in secret_values.items()},
            sealed=_to_attr(sealed), needs_credentials=False, status="untested",
            created_at=iso(now), updated_at=iso(now), credentials_updated_at=iso(now),
            version=1, dependents_count=0, due_shard=self._shard(cid), last_tested_at="0",
        )
        audit = self._audit.event(caller, "connection.create", f"connection:{cid}",
                                  target_owner=owner, changed_fields=sorted(body))
        try:
            self._repo.create(item, audit)
        except NameTaken:
            raise Conflict("you already have a connection with this name", field="name",
                           code="name_taken") from None
        return self.view(item)

    def prepare_config(
        self, data: ConnectionCreate
    ) -> tuple[Any, str | None, dict[str, str], dict[str, str], dict[str, Any]]:
        """Validate a full configuration (create, or test before saving): provider,
        base URL, credentials split into public and secret, merged settings."""
        provider = self._provider_for_new(data.provider)
        base_url = self._check_base_url(data.base_url, provider)
        public, secret_values = self._check_credentials(provider, data.credentials,
                                                        require_all=True)
        conn_settings = self._check_settings(provider, data.settings, None)
        return provider, base_url, public, secret_values, conn_settings

    # update -------------------------------------------------------------------------

    def update(self, caller: Caller, connection_id: str, body: dict[str, Any],
               if_match: int | None) -> dict[str, Any]:
        """Apply a PATCH. Without If-Match a lost race is retried on fresh data, so no
        update is ever lost; with If-Match a stale version is a 412."""
        data = parse(ConnectionPatch, body)
        if not body:
            raise InvalidInput("nothing to change", field="body")
        for attempt in range(UPDATE_ATTEMPTS):
            item = self.get(caller, connection_id)
            if if_match is not None and if_match != item.version:
                raise PreconditionFailed("the connection changed since you read it")
            try:
                return self._apply_patch(caller, item, data, body)
            except VersionConflict:
                if if_match is not None:
                    raise PreconditionFailed("the connection changed since you read it") from None
                # One writer wins each round; full jitter spreads the others out instead of
                # letting them collide again in lockstep.
                time.sleep(random.uniform(0, min(0.2, 0.01 * 2**attempt)))
        raise Conflict("the connection is being changed by another request; try again",
                       code="busy")

    def _apply_patch(self, caller: Caller, item: ConnectionModel, data: ConnectionPatch,
                     body: dict[str, Any]) -> dict[str, Any]:
        fields = set(body)
        provider, provider_changed, base_url, endpoint_changed = \
            self._patched_endpoint(item, data, fields)

        actions: list[Any] = []
        M = ConnectionModel
        now = utcnow()
        new_name: str | None = None
        if "name" in fields:
            if data.name is None:
                raise InvalidInput("name cannot be empty", field="name")
            new_name = data.name.strip()
            actions += [M.name.set(new_name), M.name_key.set(name_key(new_name))]
        if "description" in fields:
            actions.append(M.description.set(data.description) if data.description
                           else M.description.remove())
        if "default_model" in fields:
            actions.append(M.default_model.set(data.default_model) if data.default_model
                           else M.default_model.remove())
        if "settings" in fields:
            merged = self._check_settings(provider, data.settings, item.settings)
            actions.append(M.settings.set(merged))
        elif provider_changed:
            actions.append(M.settings.set(self._check_settings(provider, None, item.settings)))

        creds: dict[str, Any] = dict(data.credentials or {}) if "credentials" in fields else {}
        secret_names = {f["name"] for f in provider.credential_fields if f["secret"]}
        required_secrets = {f["name"] for f in provider.credential_fields
                            if f["secret"] and f.get("required")}
        # null removes an optional secret (a required one stays an error, below).
        removed = {k for k, v in creds.items()
                   if v is None and k in secret_names and k not in required_secrets}
        for key in removed:
            del creds[key]
        given_secrets = {k for k in creds if k in secret_names}
        keep: dict[str, str] | None = None
        if endpoint_changed:
            # A stored key is never redirected to a new host: the secret must come again.
            missing = sorted(required_secrets - given_secrets)
            if missing:
                raise InvalidInput(
                    "changing provider or base_url requires the secret again "
                    f"(credentials.{missing[0]})", field=f"credentials.{missing[0]}")
            keep = {}
        elif given_secrets or (removed and item.sealed is not None):
            missing = sorted(required_secrets - given_secrets)
            if missing and item.sealed is None:
                raise InvalidInput(f"credentials.{missing[0]} is required",
                                   field=f"credentials.{missing[0]}")
            # Only the named secrets change: stored ones not named are kept (one decrypt).
            untouched = set(item.secret_fields or {}) - given_secrets - removed
            keep = (self.open_secrets(item, provider) if untouched and item.sealed is not None
                    else {})
        if creds or endpoint_changed or removed:
            public_base = {} if provider_changed else dict(item.credentials_public or {})
            merged_public, new_secrets = self._check_credentials(
                provider, creds, require_all=False, existing_public=public_base)
            for f in provider.credential_fields:
                if not f["secret"] and f.get("required") and f["name"] not in merged_public:
                    raise InvalidInput(f"credentials.{f['name']} is required",
                                       field=f"credentials.{f['name']}")
            actions.append(M.credentials_public.set(merged_public))
            if keep is not None:
                secret_values = {k: v for k, v in keep.items()
                                 if k in secret_names and k not in removed}
                secret_values.update(new_secrets)
                sealed = self._cipher_factory().seal(
                    secret_values, binding_for(item.owner, item.id, provider, base_url,
                                               item.credential_name or DEFAULT_SET,
                                               sealed_at=iso(now)))
                actions += [
                    M.sealed.set(_to_attr(sealed)),
                    # A new secret for the primary set: its "failed for auth" mark goes.
                    M.credential_meta.remove(),
                    M.secret_fields.set({k: _hint(v) for k, v in secret_values.items()}),
                    M.credentials_updated_at.set(iso(now)),
                    M.needs_credentials.set(False),
                    M.status.set("untested"),
                    M.status_message.remove(),
                    M.due_shard.set(self._shard(item.id)),
                    M.last_tested_at.set("0"),
                ]
        if endpoint_changed and item.credential_sets:
            # The other sets are bound to the old endpoint, and a stored key never follows
            # a new host: they go, and the audit event says how many.
            actions.append(M.credential_sets.remove())
        if provider_changed:
            actions.append(M.provider.set(provider.id))
        if "base_url" in fields or provider_changed:
            actions.append(M.base_url.set(base_url) if base_url else M.base_url.remove())
        actions += [M.updated_at.set(iso(now)), M.version.set(item.version + 1)]

        detail = ({"credential_sets_dropped": len(item.credential_sets)}
                  if endpoint_changed and item.credential_sets else None)
        audit = self._audit.event(caller, "connection.update", f"connection:{item.id}",
                                  target_owner=item.owner, changed_fields=sorted(fields),
                                  detail=detail)
        rename_from = None
        if new_name is not None and name_key(new_name) != item.name_key:
            rename_from = item.name_key
        old_name_key = item.name_key
        if new_name is not None:
            item.name, item.name_key = new_name, name_key(new_name)
        try:
            self._repo.update(item, actions, int(item.version), audit, rename_from=rename_from)
        except NameTaken:
            item.name_key = old_name_key
            raise Conflict("you already have a connection with this name", field="name",
                           code="name_taken") from None
        fresh = self._repo.get(item.id)
        if fresh is None:
            raise NotFound("connection not found")
        return self.view(fresh)

    # delete -------------------------------------------------------------------------

    def delete(self, caller: Caller, connection_id: str, if_match: int | None,
               force: bool) -> None:
        for _attempt in range(5):
            item = self.get(caller, connection_id)
            if if_match is not None and if_match != item.version:
                raise PreconditionFailed("the connection changed since you read it")
            if item.dependents_count and not force:
                deps = self._repo.dependents(item.id)
                raise Conflict(
                    "prompts still use this connection; remove them or delete with force=true",
                    code="has_dependents",
                    details={"dependents": [_dep_view(d) for d in deps]},
                )
            audit = self._audit.event(caller, "connection.delete", f"connection:{item.id}",
                                      target_owner=item.owner,
                                      detail={"forced": bool(force and item.dependents_count)})
            try:
                self._repo.delete(item, int(item.version), audit, force=force)
            except VersionConflict:
                if if_match is not None:
                    raise PreconditionFailed("the connection changed since you read it") from None
                continue
            if force and item.dependents_count:
                self._repo.purge_dependents(item.id)
            return
        raise Conflict("the connection is being changed by another request; try again",
                       code="busy")

    # dependents ---------------------------------------------------------------------

    def put_dependent(self, caller: Caller, connection_id: str, dependent_id: str,
                      body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if not re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", dependent_id):
            raise InvalidInput("dependent id must be 1-128 letters, digits or ._:-",
                               field="dependent_id")
        data = parse(DependentBody, body)
        item = self.get(caller, connection_id)
        dep = DependentModel(connection_id=item.id, dependent_id=dependent_id, kind=data.kind,
                             display_name=data.display_name, owner=item.owner,
                             created_at=iso(utcnow()))
        created = True
        try:
            self._repo.add_dependent(dep)
        except DependentExists:
            self._repo.refresh_dependent(dep)
            created = False
        except VersionConflict:
            raise NotFound("connection not found") from None
        self._audit.record(caller, "connection.dependent.put", f"connection:{item.id}",
                           target_owner=item.owner, detail={"dependent_id": dependent_id})
        return _dep_view(dep), created

    def delete_dependent(self, caller: Caller, connection_id: str, dependent_id: str) -> None:
        item = self.get(caller, connection_id)
        try:
            self._repo.remove_dependent(item.id, dependent_id)
        except DependentMissing:
            raise NotFound("dependent not found") from None
        self._audit.record(caller, "connection.dependent.delete", f"connection:{item.id}",
                           target_owner=item.owner, detail={"dependent_id": dependent_id})

    def list_dependents(self, caller: Caller, connection_id: str, *, cursor: str | None = None,
                        limit: int = 50) -> Page[dict[str, Any]]:
        item = self.get(caller, connection_id)
        try:
            page = self._repo.dependents_page(item.id, cursor=cursor, limit=limit)
        except BadCursor as exc:
            raise InvalidInput(str(exc), field="cursor") from None
        return Page([_dep_view(d) for d in page.items], page.next_cursor)

    def owner_page(self, owner: str, *, cursor: str | None,
                   limit: int) -> Page[ConnectionModel]:
        try:
            return self._repo.list_by_owner(owner, cursor=cursor, limit=limit)
        except BadCursor as exc:
            raise InvalidInput(str(exc), field="cursor") from None

    # export / import ----------------------------------------------------------------

    def export(self, caller: Caller) -> dict[str, Any]:
        from chalicelib.services.credential_sets import sets_of

        entries = []
        for item in self._repo.iter_by_owner(caller.user_id):
            entries.append({
                "name": item.name,
                "description": item.description,
                "provider": item.provider,
                "base_url": item.base_url,
                "default_model": item.default_model,
                "settings": item.settings or {},
                # Non-secret fields only; secrets never leave.
                "credentials": dict(item.credentials_public or {}),
                "credential_sets": [s.name for s in sets_of(item)],
            })
        self._audit.record(caller, "connection.export", f"owner:{caller.user_id}",
                           target_owner=caller.user_id, detail={"count": len(entries)})
        return {"format": EXPORT_FORMAT, "version": 1, "exported_at": iso(utcnow()),
                "connections": entries}

    def import_(self, caller: Caller, body: dict[str, Any]) -> builtins.list[dict[str, Any]]:
        """Create every entry or none; each is left untested until its secret is supplied."""
        doc = parse(ImportDocument, body)
        if doc.format != EXPORT_FORMAT or doc.version != 1:
            raise InvalidInput(f"format must be {EXPORT_FORMAT!r} version 1",
                               field="format" if doc.format != EXPORT_FORMAT else "version")
        seen: set[str] = set()
        items = []
        wanted: list[list[str]] = []
        now = iso(utcnow())
        for idx, entry in enumerate(doc.connections):
            where = f"connections[{idx}]"
            key = name_key(entry.name)
            if key in seen:
                raise InvalidInput("duplicate name in the document", field=f"{where}.name")
            seen.add(key)
            try:
                provider = self._provider_for_new(entry.provider)
                base_url = self._check_base_url(entry.base_url, provider)
                public, secrets = self._check_credentials(provider, entry.credentials or {},
                                                          require_all=False)
                conn_settings = self._check_settings(provider, entry.settings, None)
            except (InvalidInput, Unprocessable) as exc:
                exc.field = f"{where}.{exc.field}" if exc.field else where
                raise
            if secrets:
                raise InvalidInput("an import document never carries secrets",
                                   field=f"{where}.credentials")
            cid = new_id("conn")
            if entry.credential_sets and len(set(entry.credential_sets)) != len(
                    entry.credential_sets):
                raise InvalidInput("credential set names must be unique",
                                   field=f"{where}.credential_sets")
            wanted.append(list(entry.credential_sets or []))
            items.append(ConnectionModel(
                id=cid, owner=caller.user_id, name=entry.name.strip(), name_key=key,
                description=entry.description, provider=provider.id, base_url=base_url,
                default_model=entry.default_model, settings=conn_settings,
                credentials_public=public, secret_fields={}, sealed=None,
                needs_credentials=True, status="untested", created_at=now, updated_at=now,
                version=1, dependents_count=0,
            ))
        self._room_for(caller.user_id, len(items))
        audit = self._audit.event(caller, "connection.import", f"owner:{caller.user_id}",
                                  target_owner=caller.user_id,
                                  detail={"count": len(items), "ids": [i.id for i in items]})
        try:
            self._repo.create_many(items, audit)
        except NameTaken as exc:
            raise Conflict(f"you already have a connection named {exc.args[0]!r}",
                           field="connections", code="name_taken") from None
        return [{**self.view(i), "credential_sets_to_add": names}
                for i, names in zip(items, wanted, strict=True)]

    def set_status(self, item: ConnectionModel, status: str, hint: dict[str, Any]) -> None:
        """Set a system-owned status (the monthly quota) with its ``{code, message,
        remediation}`` hint; user fields are untouched."""
        M = ConnectionModel
        self._repo.update_unversioned(item, [
            M.status.set(status),
            M.status_message.set(hint["message"]),
            M.status_hint.set(hint),
        ])

    def set_activity(self, item: ConnectionModel, activity: dict[str, Any]) -> None:
        """Record the latest invocation summary (a system field; no version change)."""
        self._repo.update_unversioned(item, [ConnectionModel.activity.set(activity)])

    # secrets ------------------------------------------------------------------------

    def open_secrets(self, item: ConnectionModel, provider: Any = None) -> dict[str, str]:
        """Decrypt the primary set's secret fields (a KMS call); registers them for redaction.
        ``provider``: the catalogue entry when the caller has it (else it is read)."""
        if item.sealed is None:
            raise Unprocessable("this connection has no credentials yet; supply them first",
                                field="credentials", code="needs_credentials")
        return self.open_sealed(item, provider, item.credential_name or DEFAULT_SET,
                                item.sealed, item.credentials_updated_at)

    def open_sealed(self, item: ConnectionModel, provider: Any, name: str,
                    z: SealedAttribute, sealed_at: str | None) -> dict[str, str]:
        """The one place a stored secret is opened, for any credential set."""
        if provider is None:
            provider = self._providers.get_model(item.provider)
        if (int(z.v) < 3 and not item.base_url and provider is not None
                and provider.base_url_changed_at
                and (sealed_at or "") < provider.base_url_changed_at):
            # Formats 1-2 do not bind the provider's URL: refuse them by date instead.
            raise SealBroken(
                "the provider's base URL changed after this key was stored; enter the secret "
                "again to use it with the new address")
        values = self._cipher_factory().open(
            Sealed(int(z.v), z.kid, bytes(z.wdk), bytes(z.nonce), bytes(z.ct)),
            binding_for(item.owner, item.id, provider, item.base_url, name,
                        sealed_at=sealed_at, provider_id=item.provider))
        secret_registry.add(*values.values())
        return values

    # helpers ------------------------------------------------------------------------

    def _patched_endpoint(self, item: ConnectionModel, data: ConnectionPatch,
                          fields: set[str]) -> tuple[Any, bool, str | None, bool]:
        """Where a PATCH points the connection: ``(provider, provider_changed, base_url,
        endpoint_changed)``; a stored secret never follows a changed endpoint."""
        provider_id = data.provider if "provider" in fields and data.provider else item.provider
        provider_changed = provider_id != item.provider
        provider = (self._provider_for_new(provider_id) if provider_changed
                    else self._provider_any(provider_id))
        base_url = data.base_url if "base_url" in fields else item.base_url
        if provider_changed or "base_url" in fields:
            base_url = self._check_base_url(base_url, provider)
        endpoint_changed = provider_changed or (base_url or None) != (item.base_url or None)
        return provider, provider_changed, base_url, endpoint_changed

    def draft_config(self, item: ConnectionModel, body: Any) -> tuple[Any, dict[str, Any]]:
        """A saved connection with proposed changes (a PATCH body) applied in memory, for a
        test before saving an edit: ``(provider, target fields)``. The same rules as a PATCH:
        secrets not named are the stored ones; a new provider or base URL needs them again."""
        data = parse(ConnectionPatch, body, prefix="changes")
        fields = set(body)
        provider, provider_changed, base_url, endpoint_changed = \
            self._patched_endpoint(item, data, fields)
        creds: dict[str, Any] = {k: v for k, v in (data.credentials or {}).items()
                                 if v is not None}
        public, secrets = self._check_credentials(
            provider, creds, require_all=False,
            existing_public={} if provider_changed else dict(item.credentials_public or {}))
        required = [f["name"] for f in provider.credential_fields if f.get("required")]
        if not endpoint_changed and item.sealed is not None:
            secrets = {**self.open_secrets(item, provider), **secrets}
        missing = [n for n in required if n not in secrets and n not in public]
        if missing:
            why = ("changing provider or base_url requires the secret again"
                   if endpoint_changed else "this connection has no stored credentials")
            raise InvalidInput(f"{why} (credentials.{missing[0]})",
                               field=f"changes.credentials.{missing[0]}")
        settings = self._check_settings(provider, data.settings, item.settings)
        return provider, {
            "base_url": base_url, "credentials": {**public, **secrets},
            "default_model": data.default_model if "default_model" in fields
            else item.default_model,
            "settings": settings,
        }

    def _provider_any(self, provider_id: str) -> Any:
        provider = self._providers.get_model(provider_id)
        if provider is None:
            raise Unprocessable(f"provider {provider_id!r} no longer exists", field="provider",
                                code="provider_disabled")
        return provider

    def _provider_for_new(self, provider_id: str) -> Any:
        provider = self._providers.get_model(provider_id)
        if provider is None:
            raise InvalidInput(f"unknown provider {provider_id!r}", field="provider")
        if not provider.enabled:
            raise Unprocessable(
                f"provider {provider_id!r} is disabled by an administrator: existing "
                "connections are kept, new ones cannot be created",
                field="provider", code="provider_disabled",
            )
        return provider

    def _check_base_url(self, base_url: str | None, provider: Any) -> str | None:
        if not base_url:
            if provider.base_url_required:
                raise InvalidInput(f"base_url is required for provider {provider.id!r}",
                                   field="base_url")
            return None
        try:
            self._url_check(base_url)
        except ValueError as exc:
            raise InvalidInput(f"base_url is not allowed: {exc}", field="base_url") from None
        return base_url.rstrip("/")

    def _check_credentials(
        self, provider: Any, creds: dict[str, Any], *, require_all: bool,
        existing_public: dict[str, str] | None = None,
    ) -> tuple[dict[str, str], dict[str, str]]:
        spec = {f["name"]: f for f in provider.credential_fields}
        public = dict(existing_public or {})
        secrets: dict[str, str] = {}
        for key, value in creds.items():
            where = f"credentials.{key}"
            field = spec.get(key)
            if field is None:
                raise InvalidInput(f"{where} is not a field of provider {provider.id!r}",
                                   field=where)
            if value is None and not field["secret"] and not field.get("required"):
                public.pop(key, None)
                continue
            if not isinstance(value, str):
                raise InvalidInput(f"{where} must be a string", field=where)
            if field["secret"] and looks_masked(value):
                raise InvalidInput(f"{where} is a masked value; send the secret itself or "
                                   "leave the field out to keep the stored one", field=where)
            if field.get("pattern") and not re.fullmatch(field["pattern"], value):
                if field["secret"]:
                    secret_registry.add(value)
                raise InvalidInput(f"{where} is not in the expected format "
                                   f"({field['label']})", field=where)
            if field["secret"]:
                secret_registry.add(value)
                secrets[key] = value
            else:
                public[key] = value
        if require_all:
            for name, field in spec.items():
                if field.get("required") and name not in secrets and name not in public:
                    raise InvalidInput(f"credentials.{name} is required",
                                       field=f"credentials.{name}")
        return public, secrets

    def _check_settings(self, provider: Any, given: ConnSettings | None,
                        current: dict[str, Any] | None) -> dict[str, Any]:
        defaults = provider.default_settings or {}
        merged: dict[str, Any] = {
            "timeout_seconds": defaults.get("timeout_seconds", 30),
            "max_retries": defaults.get("max_retries", 3),
        }
        merged.update(current or {})
        if given is not None:
            for key, value in given.model_dump(exclude_unset=True).items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
        temp = merged.get("temperature")
        lo = float(defaults.get("temperature_min", 0.0))
        hi = float(defaults.get("temperature_max", 2.0))
        if temp is not None and not lo <= float(temp) <= hi:
            raise InvalidInput(f"settings.temperature must be between {lo} and {hi} for "
                               f"provider {provider.id!r}", field="settings.temperature")
        return merged

    def _shard(self, cid: str) -> str:
        import zlib

        return f"s{zlib.crc32(cid.encode()) % self._settings.daily_shards}"

    def view(self, item: ConnectionModel) -> dict[str, Any]:
        """The public shape of a connection: never a secret."""
        masked: dict[str, Any] = dict(item.credentials_public or {})
        for key, hint in (item.secret_fields or {}).items():
            masked[key] = MASK + hint if hint else MASK
        from chalicelib.services.credential_sets import set_summary, sets_of

        sets = [set_summary(s, i, self._settings.rotation_days)
                for i, s in enumerate(sets_of(item))]
        rotation_due = any(s["rotation_due"] for s in sets)
        last_tested = item.last_tested_at if item.last_tested_at not in (None, "0") else None
        last_test = item.last_test or None
        if last_test is not None:
            last_test = {**last_test, "warnings": warning_dicts(last_test.get("warnings"))}
        warnings, error = _problems(item.status, last_test, item.status_hint)
        return {
            "id": item.id,
            "owner": item.owner,
            "name": item.name,
            "description": item.description,
            "provider": item.provider,
            "base_url": item.base_url,
            "default_model": item.default_model,
            "settings": item.settings or {},
            "credentials_masked": masked,
            "needs_credentials": bool(item.needs_credentials),
            "status": item.status,
            "status_message": item.status_message,
            "warnings": warnings,
            "error": error,
            "available_models": item.available_models or [],
            "last_tested_at": last_tested,
            "last_test": last_test,
            "latency_ms": (last_test or {}).get("latency_ms"),
            "activity": item.activity or None,
            "dependents_count": int(item.dependents_count or 0),
            "created_at": item.created_at,
            "updated_at": item.updated_at,
            "credentials_updated_at": item.credentials_updated_at,
            "rotation_due": rotation_due,
            "credential_sets": [{k: s[k] for k in ("name", "primary", "created_at",
                                                   "rotation_due", "auth_failed", "last_test")}
                                for s in sets],
            "version": int(item.version),
        }


def _problems(status: str, last_test: dict[str, Any] | None,
              hint: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """What makes a connection yellow or red, each with its code and remediation: the
    warnings of the last test (or the quota hint), and the error of a red one."""
    if hint:
        if status == "warning":
            return [hint], None
        if status == "error":
            return [], hint
    last = last_test or {}
    if status == "warning":
        return list(last.get("warnings") or []), None
    code = last.get("error_code")
    if status == "error" and code in REMEDIATION:
        return [], {"code": code, "message": last.get("error_message") or "",
                    "remediation": list(REMEDIATION[code])}
    return [], None


def _plausible_id(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value))


def _hint(value: str) -> str:
    return value[-4:] if len(value) >= MIN_HINT_LEN else ""


def _to_attr(s: Sealed) -> SealedAttribute:
    return SealedAttribute(v=s.v, kid=s.kid, wdk=s.wdk, nonce=s.nonce, ct=s.ct)


def _dep_view(d: DependentModel) -> dict[str, Any]:
    return {"id": d.dependent_id, "kind": d.kind, "display_name": d.display_name,
            "created_at": d.created_at}
