"""Named credential sets of a connection: add, list, test, promote, reorder, remove, revoke.

The primary set lives in the connection's own fields (``sealed``, ``secret_fields``,
``credentials_updated_at``, ``credential_name``, ``credential_meta``), so items written before
named sets read unchanged (as one set named ``primary``); the others are in
``credential_sets``, in failover order. Each set is sealed under its own data key with its name
in the associated data, so a blob copied to another set does not open.

Every change is one versioned write with its audit event: with If-Match a stale version is a
412, without it a lost race is retried on fresh data. Marks the system sets (a set's last test,
"failed for auth") are conditional on the version that was read, so they can never bring back
a set that was removed or revoked meanwhile.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from chalicelib.crypto import DEFAULT_SET
from chalicelib.data.connections_repo import ConnectionRepository, VersionConflict
from chalicelib.data.models import ConnectionModel, CredentialSetAttribute, SealedAttribute
from chalicelib.errors import Conflict, InvalidInput, NotFound, PreconditionFailed, Unprocessable
from chalicelib.observability import logger
from chalicelib.services.audit import AuditService
from chalicelib.services.common import Caller, iso, parse_iso, utcnow
from chalicelib.services.connections import MASK, ConnectionService, _hint, binding_for
from chalicelib.services.testing import TestingService, TestOptions
from chalicelib.services.validation import Strict, parse
from chalicelib.settings import Settings

MAX_SETS = 5
SET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
AUTH_CODES = frozenset({"invalid_api_key", "permission_denied"})
# Codes on which an invoke tries the next set: the key's own limits or rights, not the
# request or the provider as a whole.
FAILOVER_CODES = frozenset({"rate_limited", "quota_exhausted"}) | AUTH_CODES
UPDATE_ATTEMPTS = 8


class AddSet(Strict):
    name: str
    credentials: dict[str, Any]


class SetOrder(Strict):
    order: list[str]


@dataclass(frozen=True)
class CredentialSet:
    name: str
    sealed: SealedAttribute | None
    secret_fields: dict[str, str]
    created_at: str | None
    last_test: dict[str, Any] | None
    auth_failed_at: str | None

    def digest(self) -> str:
        """What the secret cache is keyed on: any new or replaced blob is a new key."""
        s = self.sealed
        if s is None:
            return ""
        h = hashlib.sha256()
        for part in (str(int(s.v)).encode(), s.kid.encode(), bytes(s.wdk), bytes(s.nonce),
                     bytes(s.ct)):
            h.update(len(part).to_bytes(4, "big") + part)
        return h.hexdigest()[:32]


def sets_of(item: ConnectionModel) -> list[CredentialSet]:
    """Every set of a connection, primary first, in failover order."""
    out: list[CredentialSet] = []
    if item.sealed is not None:
        meta = item.credential_meta or {}
        out.append(CredentialSet(
            name=item.credential_name or DEFAULT_SET, sealed=item.sealed,
            secret_fields=dict(item.secret_fields or {}), created_at=item.credentials_updated_at,
            last_test=_primary_last_test(item), auth_failed_at=meta.get("auth_failed_at")))
    for s in item.credential_sets or []:
        out.append(CredentialSet(
            name=s.name, sealed=s.sealed, secret_fields=dict(s.secret_fields or {}),
            created_at=s.created_at, last_test=s.last_test, auth_failed_at=s.auth_failed_at))
    return out


def _primary_last_test(item: ConnectionModel) -> dict[str, Any] | None:
    last = item.last_test or None
    if not last:
        return None
    return {"status": last.get("status"), "tested_at": last.get("tested_at"),
            "latency_ms": last.get("latency_ms"), "error_code": last.get("error_code")}


def failover_order(item: ConnectionModel) -> list[CredentialSet]:
    """The sets an invoke tries, in order: those marked as failed for auth are skipped until
    they are tested again, unless every set is marked (then the order as it is)."""
    usable = [s for s in sets_of(item) if s.sealed is not None]
    fresh = [s for s in usable if not s.auth_failed_at]
    return fresh or usable


def set_summary(s: CredentialSet, index: int, rotation_days: int) -> dict[str, Any]:
    masked = {k: MASK + hint if hint else MASK for k, hint in s.secret_fields.items()}
    due = False
    if s.created_at:
        due = utcnow() - parse_iso(s.created_at) > timedelta(days=rotation_days)
    return {
        "name": s.name, "primary": index == 0, "position": index + 1,
        "credentials_masked": masked, "created_at": s.created_at,
        "rotation_due": due, "last_test": s.last_test,
        "auth_failed": bool(s.auth_failed_at), "auth_failed_at": s.auth_failed_at,
    }


def set_result(result: dict[str, Any]) -> dict[str, Any]:
    """The part of a test result kept on a set."""
    return {"status": result["status"], "tested_at": result.get("tested_at") or iso(utcnow()),
            "latency_ms": result.get("latency_ms"),
            "error_code": (result.get("error") or {}).get("code")}


class CredentialSetService:
    def __init__(self, connections: ConnectionService, repo: ConnectionRepository,
                 audit: AuditService, settings: Settings,
                 cipher_factory: Callable[[], Any], testing: TestingService) -> None:
        self._connections = connections
        self._testing = testing
        self._repo = repo
        self._audit = audit
        self._settings = settings
        self._cipher_factory = cipher_factory

    # reads --------------------------------------------------------------------------

    def list_sets(self, caller: Caller, connection_id: str) -> dict[str, Any]:
        item = self._connections.get(caller, connection_id)
        return self.view(item)

    def view(self, item: ConnectionModel) -> dict[str, Any]:
        sets = sets_of(item)
        return {"items": [set_summary(s, i, self._settings.rotation_days)
                          for i, s in enumerate(sets)],
                "order": [s.name for s in sets], "max_sets": MAX_SETS,
                "needs_credentials": not sets, "version": int(item.version)}

    def open(self, item: ConnectionModel, s: CredentialSet,
             provider: Any = None) -> dict[str, str]:
        """Decrypt one set (a KMS call); registers the values for redaction."""
        if s.sealed is None:
            raise Unprocessable(f"credential set {s.name!r} has no secret",
                                field="credentials", code="needs_credentials")
        return self._connections.open_sealed(item, provider, s.name, s.sealed, s.created_at)

    def find(self, item: ConnectionModel, name: str) -> CredentialSet:
        for s in sets_of(item):
            if s.name == name:
                return s
        raise NotFound(f"credential set {name!r} not found")

    def test(self, caller: Caller, connection_id: str, name: str,
             body: dict[str, Any]) -> dict[str, Any]:
        """Test one set. The primary's result is the connection's (status, history, alerts);
        another set's is kept on the set, and clears or sets its "failed for auth" mark."""
        options = parse(TestOptions, body)
        if options.changes is not None:
            raise InvalidInput("a credential set is tested as stored; test changes with "
                               "POST /connections/{id}/test", field="changes")
        item = self._connections.get(caller, connection_id)
        sets = sets_of(item)
        chosen = _named(sets, name)
        self._testing.throttle(caller)
        provider = self._connections._provider_any(item.provider)
        if not provider.enabled:
            result = self._testing.disabled_outcome(item.provider)
        else:
            secrets = self.open(item, chosen, provider)
            target = self._testing.target(
                provider, base_url=item.base_url,
                credentials={**(item.credentials_public or {}), **secrets},
                default_model=item.default_model, settings=item.settings or {})
            result = self._testing.run_for_api(target, options.probe_model)
        if chosen is sets[0]:
            self._testing.record(item, result, trigger="manual", caller=caller)
        else:
            stored = self.record_results(item, {name: set_result(result)})
            error = result.get("error") or {}
            self._audit.record(caller, "connection.credentials.test", f"connection:{item.id}",
                               target_owner=item.owner,
                               outcome="success" if result["status"] != "error" else "failure",
                               detail={"name": name, "status": result["status"],
                                       "error_code": error.get("code"), "stored": stored})
        return {**result, "credential_set": name}

    # changes ------------------------------------------------------------------------

    def add(self, caller: Caller, connection_id: str, body: dict[str, Any],
            if_match: int | None) -> dict[str, Any]:
        data = parse(AddSet, body)
        name = _check_name(data.name)

        def change(item: ConnectionModel, sets: list[CredentialSet]
                   ) -> tuple[list[CredentialSet], dict[str, Any]]:
            if any(s.name == name for s in sets):
                raise Conflict(f"this connection already has a credential set named {name!r}",
                               field="name", code="name_taken")
            if len(sets) >= MAX_SETS:
                raise Conflict(f"a connection holds at most {MAX_SETS} credential sets; "
                               "remove one first", field="name", code="too_many_sets")
            provider = self._connections._provider_any(item.provider)
            secret_names = {f["name"] for f in provider.credential_fields if f["secret"]}
            for key in data.credentials:
                if key not in secret_names and any(
                        f["name"] == key for f in provider.credential_fields):
                    raise InvalidInput(
                        f"credentials.{key} is not a secret: it belongs to the connection, "
                        "not to a credential set", field=f"credentials.{key}")
            _public, secrets = self._connections._check_credentials(
                provider, data.credentials, require_all=False)
            for f in provider.credential_fields:
                if f["secret"] and f.get("required") and f["name"] not in secrets:
                    raise InvalidInput(f"credentials.{f['name']} is required",
                                       field=f"credentials.{f['name']}")
            stamp = iso(utcnow())
            sealed = self._cipher_factory().seal(
                secrets, binding_for(item.owner, item.id, provider, item.base_url, name,
                                     sealed_at=stamp))
            new = CredentialSet(
                name=name, secret_fields={k: _hint(v) for k, v in secrets.items()},
                sealed=SealedAttribute(v=sealed.v, kid=sealed.kid, wdk=sealed.wdk,
                                       nonce=sealed.nonce, ct=sealed.ct),
                created_at=stamp, last_test=None, auth_failed_at=None)
            return [*sets, new], {"name": name, "position": len(sets) + 1}

        return self._write(caller, connection_id, if_match, "connection.credentials.add", change)

    def promote(self, caller: Caller, connection_id: str, name: str,
                if_match: int | None) -> dict[str, Any]:
        def change(item: ConnectionModel, sets: list[CredentialSet]
                   ) -> tuple[list[CredentialSet], dict[str, Any]]:
            chosen = _named(sets, name)
            old = sets[0].name
            return [chosen, *[s for s in sets if s.name != name]], {"name": name,
                                                                     "previous_primary": old}

        return self._write(caller, connection_id, if_match, "connection.credentials.promote",
                           change)

    def reorder(self, caller: Caller, connection_id: str, body: dict[str, Any],
                if_match: int | None) -> dict[str, Any]:
        data = parse(SetOrder, body)

        def change(item: ConnectionModel, sets: list[CredentialSet]
                   ) -> tuple[list[CredentialSet], dict[str, Any]]:
            names = [s.name for s in sets]
            if sorted(data.order) != sorted(names) or len(set(data.order)) != len(data.order):
                raise InvalidInput("order must name every credential set exactly once "
                                   f"({', '.join(names)})", field="order")
            by_name = {s.name: s for s in sets}
            return [by_name[n] for n in data.order], {"order": list(data.order)}

        return self._write(caller, connection_id, if_match, "connection.credentials.reorder",
                           change)

    def remove(self, caller: Caller, connection_id: str, name: str,
               if_match: int | None) -> dict[str, Any]:
        def change(item: ConnectionModel, sets: list[CredentialSet]
                   ) -> tuple[list[CredentialSet], dict[str, Any]]:
            _named(sets, name)
            if len(sets) == 1:
                raise Conflict("the last credential set cannot be removed; add another first, "
                               "or revoke it", field="name", code="last_set")
            return [s for s in sets if s.name != name], {"name": name}

        return self._write(caller, connection_id, if_match, "connection.credentials.remove",
                           change)

    def revoke(self, caller: Caller, connection_id: str, name: str,
               if_match: int | None) -> dict[str, Any]:
        """Delete a set's sealed blob at once (also the last one: the connection then needs
        credentials). Warm instances stop using it on their next request: each reads the
        connection, and the secret cache is keyed on the blob's digest."""
        def change(item: ConnectionModel, sets: list[CredentialSet]
                   ) -> tuple[list[CredentialSet], dict[str, Any]]:
            _named(sets, name)
            rest = [s for s in sets if s.name != name]
            return rest, {"name": name, "remaining": len(rest)}

        return self._write(caller, connection_id, if_match, "connection.credentials.revoke",
                           change)

    def _write(self, caller: Caller, connection_id: str, if_match: int | None, action: str,
               change: Callable[[ConnectionModel, list[CredentialSet]],
                                tuple[list[CredentialSet], dict[str, Any]]]
               ) -> dict[str, Any]:
        for attempt in range(UPDATE_ATTEMPTS):
            item = self._connections.get(caller, connection_id)
            if if_match is not None and if_match != item.version:
                raise PreconditionFailed("the connection changed since you read it")
            sets = sets_of(item)
            new_sets, detail = change(item, sets)
            actions = self.state_actions(item, sets, new_sets)
            actions += [ConnectionModel.updated_at.set(iso(utcnow())),
                        ConnectionModel.version.set(item.version + 1)]
            audit = self._audit.event(caller, action, f"connection:{item.id}",
                                      target_owner=item.owner, detail=detail)
            try:
                self._repo.update(item, actions, int(item.version), audit)
            except VersionConflict:
                if if_match is not None:
                    raise PreconditionFailed("the connection changed since you read it") from None
                time.sleep(random.uniform(0, min(0.2, 0.01 * 2**attempt)))
                continue
            fresh = self._repo.get(item.id)
            if fresh is None:
                raise NotFound("connection not found")
            return self.view(fresh)
        raise Conflict("the connection is being changed by another request; try again",
                       code="busy")

    def state_actions(self, item: ConnectionModel, before: list[CredentialSet],
                      after: list[CredentialSet]) -> list[Any]:
        """Update actions that store ``after`` as the connection's sets."""
        M = ConnectionModel
        if not after:
            return [M.sealed.remove(), M.secret_fields.set({}), M.credential_name.remove(),
                    M.credential_meta.remove(), M.credential_sets.remove(),
                    M.credentials_updated_at.remove(), M.needs_credentials.set(True),
                    M.status.set("untested"), M.status_message.remove(),
                    M.status_hint.remove(), M.last_test.remove(), M.due_shard.remove(),
                    M.last_tested_at.set("0")]
        first, others = after[0], after[1:]
        assert first.sealed is not None and first.created_at is not None
        # The connection's own last test is the primary's: moving the old primary down keeps
        # its summary on its set; a new primary brings its own (or none: untested).
        primary_before = before[0].name if before else None
        others = [replace(s, last_test=_primary_last_test(item))
                  if s.name == primary_before else s for s in others]
        actions = [
            M.sealed.set(first.sealed), M.secret_fields.set(first.secret_fields),
            M.credential_name.set(first.name), M.credentials_updated_at.set(first.created_at),
            M.needs_credentials.set(False),
            M.credential_meta.set({"auth_failed_at": first.auth_failed_at})
            if first.auth_failed_at else M.credential_meta.remove(),
            M.credential_sets.set([_to_attr(s) for s in others]) if others
            else M.credential_sets.remove(),
        ]
        if first.name != primary_before:
            lt = first.last_test
            actions += [M.status.set(lt["status"] if lt else "untested"),
                        M.status_message.remove(), M.status_hint.remove(),
                        M.last_test.set({**lt, "warnings": [], "trigger": "credentials"})
                        if lt else M.last_test.remove(),
                        # Untested sorts first in the due index: tested at the next run.
                        M.last_tested_at.set(lt["tested_at"] if lt else "0"),
                        M.due_shard.set(self._connections._shard(item.id))]
        return actions

    # system marks -------------------------------------------------------------------

    def record_results(self, item: ConnectionModel, results: dict[str, dict[str, Any]]) -> bool:
        """Store the test results of non-primary sets (and clear or set their auth mark), if
        the connection has not changed since it was read; False when it had."""
        sets = sets_of(item)
        if not any(s.name in results for s in sets[1:]):
            return True
        updated = []
        for s in sets[1:]:
            r = results.get(s.name)
            if r is not None:
                failed = r.get("error_code") in AUTH_CODES
                s = replace(s, last_test=r, auth_failed_at=r["tested_at"] if failed else None)
            updated.append(s)
        return self._conditional(item, [ConnectionModel.credential_sets.set(
            [_to_attr(s) for s in updated])])

    def mark_auth_failed(self, item: ConnectionModel, name: str) -> None:
        """Skip this set in failover until it is tested again (best effort)."""
        now = iso(utcnow())
        sets = sets_of(item)
        if sets and sets[0].name == name:
            actions = [ConnectionModel.credential_meta.set({"auth_failed_at": now})]
        else:
            actions = [ConnectionModel.credential_sets.set(
                [_to_attr(replace(s, auth_failed_at=now) if s.name == name else s)
                 for s in sets[1:]])]
        self._conditional(item, actions)

    def _conditional(self, item: ConnectionModel, actions: list[Any]) -> bool:
        try:
            item.update(actions=actions, condition=ConnectionModel.version == item.version)
            return True
        except Exception as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                logger.info("credential sets changed meanwhile; mark not stored",
                            extra={"connection_id": item.id})
                return False
            raise


def _named(sets: list[CredentialSet], name: str) -> CredentialSet:
    for s in sets:
        if s.name == name:
            return s
    raise NotFound(f"credential set {name!r} not found")


def _check_name(name: str) -> str:
    if not SET_NAME.fullmatch(name):
        raise InvalidInput("name must be 1-32 characters of a-z, 0-9, '_' or '-', starting "
                           "with a letter or digit", field="name")
    return name


def _to_attr(s: CredentialSet) -> CredentialSetAttribute:
    return CredentialSetAttribute(name=s.name, sealed=s.sealed, secret_fields=s.secret_fields,
                                  created_at=s.created_at or iso(utcnow()),
                                  last_test=s.last_test, auth_failed_at=s.auth_failed_at)
