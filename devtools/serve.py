"""`chalice local`, with API Gateway's answer for unknown paths in our error shape, and no
``Server`` banner.

Chalice's local gateway imitates API Gateway for a path no route matches: a 403 "Missing
Authentication Token", or, when an Authorization header is present, a message that quotes the
header back (the caller's bearer token). The deployed stack maps those gateway responses to a
JSON 404 (infra); this launcher does the same locally, then runs the real `chalice local`.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

from chalice import local
from chalice.cli import main as chalice_main


class RouteNotFound(local.LocalGatewayException):
    CODE = 404


def _patch() -> None:
    original = local.LocalGateway.handle_request

    def handle_request(self: Any, method: str, path: str, headers: dict[str, str],
                       body: bytes | None) -> Any:
        try:
            return original(self, method, path, headers, body)
        except local.ForbiddenError as exc:
            if b"Missing Authentication Token" not in exc.body and \
                    b"Authorization header requires" not in exc.body:
                raise
            payload = {"error": {"code": "not_found", "message": "no such route",
                                 "request_id": uuid.uuid4().hex}}
            raise RouteNotFound({"Content-Type": "application/json", "Cache-Control": "no-store"},
                                json.dumps(payload).encode()) from None

    local.LocalGateway.handle_request = handle_request  # type: ignore[method-assign]

    def send_response(self: Any, code: int, message: str | None = None) -> None:
        # BaseHTTPRequestHandler's, less its ``Server: BaseHTTP/0.6 Python/3.x`` banner: no
        # answer names the server software or its version (API Gateway sends none either).
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    local.ChaliceRequestHandler.send_response = send_response  # type: ignore[method-assign]
    # socketserver's listen backlog is 5: more clients than that connecting at once (the
    # console's parallel fetches, `make bench`'s 50 clients) are reset by the kernel.
    local.ThreadedHTTPServer.request_queue_size = 128


if __name__ == "__main__":
    _patch()
    sys.argv = ["chalice", *sys.argv[1:]]
    sys.exit(chalice_main())
