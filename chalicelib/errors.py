"""Domain errors. Services raise these; ``chalicelib.api.http`` maps them to HTTP in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: a stable machine code, a user-safe message, and the field to blame if any."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class InvalidInput(DomainError):
    code = "invalid_field"


class Unauthenticated(DomainError):
    code = "unauthenticated"


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        details: object | None = None,
    ) -> None:
        super().__init__(message, field=field, code=code)
        self.details = details


class PreconditionFailed(DomainError):
    code = "precondition_failed"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"


class Unprocessable(DomainError):
    code = "unprocessable"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, int(retry_after))


class Unavailable(DomainError):
    code = "service_unavailable"


class KeyServiceFault(Unavailable):
    """Our role may not use the KMS key, or the key is disabled or pending deletion: an
    operator's fault (503 and an alarm), never a reason to ask users for their secrets again."""

    code = "key_service_unavailable"


class UpstreamFailure(DomainError):
    """A provider call failed; carries the closed provider error code and its remediation."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        http_status: int,
        remediation: list[str],
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.http_status = http_status
        self.remediation = remediation
        self.retry_after = retry_after


class SealBroken(DomainError):
    """Stored credentials no longer open: tampered, moved, or bound to another endpoint."""

    code = "credentials_unreadable"
