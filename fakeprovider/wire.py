"""Request/response values passed between the HTTP handler and the provider emulations."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from fakeprovider.faults import Plan


@dataclass
class Request:
    method: str
    raw_path: str  # as received, still percent-encoded (SigV4 signs this)
    path: str  # percent-decoded, used for routing
    raw_query: str
    query: dict[str, str]  # first value of each parameter
    headers: Message
    body: bytes
    host: str  # Host header
    local_ip: str  # the address the client connected to (127.0.0.2 = followed a redirect)
    sub_path: str = "/"  # path below the provider prefix
    received_at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value.strip() if value is not None else None

    def json(self) -> Any:
        """The body as JSON, or None when empty or not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # "hang" / "reset": the handler does something with the socket instead of answering.
    action: str | None = None


def json_response(
    status: int,
    payload: Any,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Response:
    body = json.dumps(payload).encode()
    out = {"Content-Type": content_type}
    out.update(headers or {})
    return Response(status, body, out)


@dataclass
class Call:
    """One provider request after routing: the credential and the fault plan in effect."""

    req: Request
    key: str | None
    plan: Plan
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    extra: dict[str, Any] = field(default_factory=dict)  # provider scratch (e.g. AWS region)


class HTTPError(Exception):
    """Raised inside a provider route to answer with an error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response
