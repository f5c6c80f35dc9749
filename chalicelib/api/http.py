"""The HTTP boundary: authentication, body parsing, and the one mapping of errors to HTTP.

Chalice middleware does not see exceptions raised in views, so every view is wrapped by
``view()`` here; the ``http`` middleware (``install``) adds request ids and logging, and turns
the few responses Chalice builds itself (405, 415) into the same error shape.
"""

from __future__ import annotations

import functools
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chalice.app import Blueprint, Chalice, Request, Response

from chalicelib import errors, strictjson
from chalicelib.observability import flush_metrics, logger, tracer
from chalicelib.services.common import Caller
from chalicelib.services.identity import Principal, authenticate
from chalicelib.settings import Settings, get_settings

if TYPE_CHECKING:
    from chalicelib.api.deps import Services

JSON = "application/json"
JSON_TYPES = [JSON]
# Routes with a body accept any content type at the Chalice level so that *we* answer 415 in
# our own error shape (and after authentication, so an anonymous caller learns nothing).
ANY_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded",
             "multipart/form-data", "application/xml", "text/xml", "application/octet-stream"]

_STATUS: list[tuple[type[errors.DomainError], int]] = [
    (errors.InvalidInput, 400),
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.SealBroken, 409),
    (errors.Conflict, 409),
    (errors.PreconditionFailed, 412),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.Unprocessable, 422),
    (errors.RateLimited, 429),
    (errors.Unavailable, 503),
]

_CHALICE_CODES = {
    405: "method_not_allowed",
    415: "unsupported_media_type",
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    500: "internal_error",
}

BASE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
# Browsers remember HTTPS-only for a year; only where we are served over HTTPS (a cloud
# stage behind API Gateway), never on the local stage's plain-HTTP loopback.
HSTS = "max-age=31536000; includeSubDomains"


class _Current(threading.local):
    request: Request | None = None


class App(Chalice):
    """Chalice, with the current request kept per thread. Chalice keeps it on the app object:
    one request at a time in Lambda, but `chalice local` serves each request on its own
    thread, where a view could read another request (its caller, its headers)."""

    _current = _Current()

    @property
    def current_request(self) -> Request | None:
        return self._current.request

    @current_request.setter
    def current_request(self, value: Request | None) -> None:
        self._current.request = value


def _static_file(method: str, path: str) -> bool:
    """The web console's files and redirect (GET) carry their own caching headers; anything
    else under /console (a sign-in POST) is an API answer like the others."""
    return method in ("GET", "HEAD") and (
        path == "/" or path == "/console" or path.startswith("/console/"))


def _secure_headers(request: Request, response: Response) -> None:
    """What every answer carries: ``no-store`` on everything but the console's static files
    (API answers are per user; a shared cache must never keep one), HSTS in cloud stages."""
    if not _static_file(request.method or "", request.path or ""):
        response.headers["Cache-Control"] = "no-store"
    try:
        local = get_settings().stage == "local"
    except Exception:  # noqa: BLE001 - unreadable settings: answer as a cloud stage would
        local = False
    if not local:
        response.headers.setdefault("Strict-Transport-Security", HSTS)


def error_body(code: str, message: str, request_id: str, field_name: str | None = None,
               **extra: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if field_name:
        err["field"] = field_name
    err["request_id"] = request_id
    err.update({k: v for k, v in extra.items() if v is not None})
    return {"error": err}


_TRANSIENT_CODES = frozenset({
    "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalServerError",
    "InternalFailure", "KMSInternalException", "KeyUnavailableException",
    "LimitExceededException", "TransactionInProgressException",
})


def _transient_aws_failure(exc: BaseException) -> bool:
    """An AWS dependency that is down or throttling after the SDK's own retries (a 503 for
    the caller, not a 500): botocore connection errors, or throttling/5xx error codes,
    anywhere in the cause chain (PynamoDB wraps botocore's exceptions)."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, (ConnectionError, HTTPClientError)):
            return True
        if isinstance(seen, ClientError):
            error = seen.response.get("Error", {})
            status = seen.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return error.get("Code") in _TRANSIENT_CODES or int(status or 0) >= 500
        seen = seen.__cause__ or seen.__context__
    return False


def error_response(exc: errors.DomainError, request_id: str, *,
                   retry_after: int | None = None) -> Response:
    headers: dict[str, str | list[str]] = dict(BASE_HEADERS)
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    extra: dict[str, Any] = {}
    if isinstance(exc, errors.UpstreamFailure):
        status = exc.http_status
        extra["remediation"] = exc.remediation
        if exc.retry_after:
            headers["Retry-After"] = str(exc.retry_after)
    else:
        status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 400)
    if isinstance(exc, errors.RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    if isinstance(exc, errors.Conflict) and exc.details is not None:
        extra["details"] = exc.details
    body = error_body(exc.code, exc.message, request_id, exc.field, **extra)
    headers["Content-Type"] = JSON
    return Response(body=body, status_code=status, headers=headers)


def services() -> Services:
    """The wired services, imported on first use so ``import app`` stays cheap."""
    from chalicelib.api.deps import services as wired

    return wired()


def etag(version: int) -> str:
    return f'"v{version}"'


# A malformed If-Match matches no version: it fails as a precondition, after authorization
# (a stranger gets the 404 or 403 anyone would, not a 412 telling the resource exists).
MALFORMED_IF_MATCH = -1


def parse_if_match(raw: str | None) -> int | None:
    """``"v3"`` (or ``W/"v3"``) to 3; ``*`` or absent to None; anything else to
    ``MALFORMED_IF_MATCH``."""
    if raw is None or raw.strip() == "*":
        return None
    m = re.fullmatch(r'\s*(?:W/)?"v(\d{1,12})"\s*', raw)
    return int(m.group(1)) if m else MALFORMED_IF_MATCH


def request_id_of(request: Request | None) -> str:
    if request is None:
        return uuid.uuid4().hex
    rid = getattr(request, "_llmc_request_id", None)
    if rid:
        return str(rid)
    rid = (request.context or {}).get("requestId") or uuid.uuid4().hex
    request._llmc_request_id = rid  # type: ignore[attr-defined]
    return str(rid)


@dataclass
class Ctx:
    """What a view needs from the request, already checked."""

    request: Request
    caller: Caller
    settings: Settings
    _body: Any = field(default=None, init=False)
    _parsed: bool = field(default=False, init=False)

    @property
    def principal(self) -> Principal:
        assert self.caller.principal is not None
        return self.caller.principal

    def header(self, name: str) -> str | None:
        value = self.request.headers.get(name)
        return value if value is None else str(value)

    def query(self, name: str) -> str | None:
        params = self.request.query_params
        return None if params is None else params.get(name)

    def flag(self, name: str) -> bool:
        raw = self.query(name)
        if raw is None:
            return False
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise errors.InvalidInput(f"{name} must be true or false", field=name)

    def page(self) -> tuple[int, str | None]:
        raw = self.query("limit")
        limit = 50
        if raw is not None:
            if not raw.isdigit() or not 1 <= int(raw) <= 100:
                raise errors.InvalidInput("limit must be an integer from 1 to 100", field="limit")
            limit = int(raw)
        cursor = self.query("cursor")
        if cursor is not None and (not cursor or len(cursor) > 2048):
            raise errors.InvalidInput("cursor is not valid", field="cursor")
        return limit, cursor

    def json(self, *, required: bool = True) -> Any:
        """The JSON body: 413 over the size cap, 415 not JSON, 400 malformed or not an object."""
        if self._parsed:
            return self._body
        raw = self.request.raw_body or b""
        if len(raw) > self.settings.max_body_bytes:
            raise errors.PayloadTooLarge(
                f"request body is over {self.settings.max_body_bytes // 1024} KiB"
            )
        if not raw.strip():
            if required:
                raise errors.InvalidInput("request body is required", field="body")
            self._parsed, self._body = True, {}
            return self._body
        ctype = (self.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise errors.UnsupportedMediaType("request body must be application/json")
        try:
            body = strictjson.loads(raw)
        except strictjson.MalformedJson as exc:
            raise errors.InvalidInput(str(exc), field="body", code="invalid_json") from None
        if not isinstance(body, dict):
            raise errors.InvalidInput("request body must be a JSON object", field="body")
        self._parsed, self._body = True, body
        return body


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    merged: dict[str, str | list[str]] = dict(BASE_HEADERS)
    if headers:
        merged.update(headers)
    if status == 204:
        return Response(body="", status_code=204, headers=merged)
    # Said, not left to the server's default (chalice local adds one, API Gateway another).
    merged.setdefault("Content-Type", JSON)
    return Response(body=body, status_code=status, headers=merged)


def _caller_for(request: Request, principal: Principal | None) -> Caller:
    identity = (request.context or {}).get("identity") or {}
    return Caller(principal, request_id_of(request), identity.get("sourceIp"))


def view(bp: Blueprint | Chalice, *, auth: bool = True) -> Callable[[Callable[..., Any]], Any]:
    """Wrap a view: authenticate, build the ``Ctx``, map domain errors, never leak internals."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Response:
            request = bp.current_request
            assert request is not None  # Chalice sets it before calling a view
            rid = request_id_of(request)
            principal = None
            try:
                settings = get_settings()
                if auth:
                    try:
                        principal = authenticate(request.headers.get("authorization"), settings)
                    except errors.Unauthenticated:
                        _audit_denied(request, "authentication")
                        raise
                    logger.thread_safe_append_keys(user_id=principal.user_id)
                ctx = Ctx(request, _caller_for(request, principal), settings)
                result = fn(ctx, **kwargs)
                if isinstance(result, Response):
                    for k, v in BASE_HEADERS.items():
                        result.headers.setdefault(k, v)
                    return result
                return json_response(result)
            except errors.DomainError as exc:
                if isinstance(exc, errors.Forbidden):
                    # The one place a refused role is audited (every route, every reason).
                    _audit_forbidden(request, principal if auth else None, exc)
                elif isinstance(exc, errors.PreconditionFailed) and _malformed_if_match(request):
                    exc = errors.PreconditionFailed(
                        'If-Match does not name a version of this resource (expected "v<n>", '
                        "the ETag of a read)")
                return error_response(exc, rid)
            except Exception as exc:  # noqa: BLE001 - the view boundary: never leak internals
                if _transient_aws_failure(exc):
                    logger.exception("AWS dependency unavailable")
                    return error_response(errors.Unavailable(
                        "a service this API depends on is unavailable; retry shortly"), rid,
                        retry_after=2)
                logger.exception("unhandled error")
                body = error_body("internal_error", "an internal error occurred; quote the "
                                  "request id when reporting it", rid)
                return Response(body=body, status_code=500,
                                headers={**BASE_HEADERS, "Content-Type": JSON})

        return wrapper

    return deco


def _audit_forbidden(request: Request, principal: Principal | None,
                     exc: errors.Forbidden) -> None:
    services().audit.record(
        _caller_for(request, principal), "access.denied", request.path or "", outcome="denied",
        detail={"reason": "forbidden", "method": request.method, "field": exc.field,
                "message": exc.message},
    )


def _malformed_if_match(request: Request) -> bool:
    raw = request.headers.get("if-match")
    return raw is not None and parse_if_match(raw) == MALFORMED_IF_MATCH


def _audit_denied(request: Request, reason: str) -> None:
    services().audit.record(
        _caller_for(request, None), "auth.denied", request.path or "", outcome="denied",
        detail={"reason": reason, "method": request.method},
    )


def install(app: Chalice) -> None:
    """Register the http middleware: request-scoped log keys, access log, error normalising."""

    @app.middleware("http")
    def observe(event: Request, get_response: Callable[[Request], Response]) -> Response:
        started = time.perf_counter()
        rid = request_id_of(event)
        logger.thread_safe_append_keys(request_id=rid, path=event.path, method=event.method)
        # X-Ray annotations make traces searchable by request id (a no-op outside Lambda).
        tracer().put_annotation(key="request_id", value=rid)
        try:
            response = get_response(event)
            body = response.body
            if response.status_code >= 400 and isinstance(body, dict) and "Code" in body:
                # Chalice's own 405/415/500 answers: same shape as ours, no internals.
                code = _CHALICE_CODES.get(response.status_code, "error")
                message = {
                    405: f"method {event.method} is not allowed on this path",
                    415: "request body must be application/json",
                    500: "an internal error occurred; quote the request id when reporting it",
                }.get(response.status_code, "request rejected")
                response.body = error_body(code, message, rid)
                response.headers.update(BASE_HEADERS)
                response.headers["Content-Type"] = "application/json"
            response.headers["X-Request-Id"] = rid
            _secure_headers(event, response)
            logger.info(
                "request",
                extra={"status": response.status_code,
                       "duration_ms": round((time.perf_counter() - started) * 1000, 1)},
            )
            return response
        finally:
            logger.thread_safe_remove_keys(["request_id", "path", "method", "user_id"])
            flush_metrics()
