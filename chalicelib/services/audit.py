"""The audit trail: one event per state change, test, export and denied attempt."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from chalicelib.data.audit_repo import AuditRepository
from chalicelib.data.models import AuditModel
from chalicelib.data.paging import Page
from chalicelib.errors import Forbidden
from chalicelib.observability import logger
from chalicelib.services.common import Caller, iso, new_id, utcnow
from chalicelib.settings import Settings


class AuditService:
    def __init__(self, repo: AuditRepository, settings: Settings) -> None:
        self._repo = repo
        self._ttl = timedelta(days=settings.audit_ttl_days)

    def event(
        self,
        caller: Caller,
        action: str,
        target: str,
        *,
        outcome: str = "success",
        target_owner: str | None = None,
        changed_fields: list[str] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditModel:
        """Build an event; ``changed_fields`` carries names only, never values."""
        now = utcnow()
        event_id = new_id("evt")
        return AuditModel(
            actor=caller.user_id,
            sk=f"{iso(now)}#{event_id}",
            event_id=event_id,
            at=iso(now),
            is_admin=caller.is_admin and target_owner not in (None, caller.user_id),
            action=action,
            target=target,
            target_owner=target_owner,
            outcome=outcome,
            request_id=caller.request_id,
            source_ip=caller.source_ip,
            changed_fields=sorted(changed_fields) if changed_fields else None,
            detail=detail,
            expires_at=now + self._ttl,
        )

    def record(self, caller: Caller, action: str, target: str, **kwargs: Any) -> None:
        """Write an event on its own (changes use ``event`` inside their own transaction)."""
        item = self.event(caller, action, target, **kwargs)
        try:
            self._repo.put(item)
        except Exception:  # noqa: BLE001 - see below
            # Losing the request because the audit write failed would hide the failure from
            # the user too; log loudly instead (an alarm watches this log metric).
            logger.exception("audit write failed", extra={"action": action, "target": target})

    def record_many(self, events: list[AuditModel]) -> None:
        """Write built events in batches. A failure is logged like ``record``'s and raised:
        the daily worker's message then fails and comes back."""
        try:
            self._repo.append_many(events)
        except Exception:
            logger.exception("audit write failed", extra={"events": len(events)})
            raise

    def list(
        self, caller: Caller, *, user: str | None, action: str | None, target: str | None,
        cursor: str | None, limit: int,
    ) -> Page[dict[str, Any]]:
        if not caller.is_admin:
            if user not in (None, caller.user_id):
                raise Forbidden("only admins may list other users' events", field="user")
            actor: str | None = caller.user_id
        else:
            # An admin with no filter sees their own trail; a user filter narrows to that user.
            actor = user or (None if (action or target) else caller.user_id)
        page = self._repo.query(
            actor=actor, action=action, target=target, cursor=cursor, limit=limit
        )
        return Page([to_view(e) for e in page.items], page.next_cursor)


def to_view(e: AuditModel) -> dict[str, Any]:
    return {
        "id": e.event_id,
        "at": e.at,
        "actor": e.actor,
        "admin_action": bool(e.is_admin),
        "action": e.action,
        "target": e.target,
        "target_owner": e.target_owner,
        "outcome": e.outcome,
        "request_id": e.request_id,
        "source_ip": e.source_ip,
        "changed_fields": e.changed_fields or [],
        "detail": e.detail or {},
    }
