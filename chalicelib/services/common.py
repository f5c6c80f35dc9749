"""Small shared pieces of the service layer: the caller, clocks and ids."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chalicelib.services.identity import Principal


@dataclass(frozen=True)
class Caller:
    """Who is acting, for access checks and the audit trail."""

    principal: Principal | None
    request_id: str
    source_ip: str | None = None

    @property
    def user_id(self) -> str:
        return self.principal.user_id if self.principal else "anonymous"

    @property
    def is_admin(self) -> bool:
        return bool(self.principal and self.principal.is_admin)


SYSTEM = Caller(Principal(user_id="system:scheduler", is_admin=True), request_id="scheduler")


# The service's clock: wall time, or wall time shifted so that it read ``set_now``'s value
# when that was called (`make daily NOW=...` plays another day; every rule that reads the
# time, from the due index to reminder alerts, then sees that day).
_offset = timedelta(0)


def utcnow() -> datetime:
    return datetime.now(UTC) + _offset


def set_now(now: datetime | None) -> None:
    """Make ``utcnow()`` read ``now`` from here on (None: back to wall time)."""
    global _offset
    _offset = timedelta(0) if now is None else now - datetime.now(UTC)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_id(prefix: str) -> str:
    """Opaque, unguessable id with a readable prefix."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"
