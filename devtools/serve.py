"""`chalice local`, with API Gateway's answer for unknown paths in our error shape, and no
``Server`` banner.

Chalice's local gateway imitates API Gateway for a path no route matches: a 403 "Missing
Authentication Token", or, when an Authorization header is present, a message that quotes the
header back (the caller's bearer token). The deployed stack maps those gateway responses to a
JSON 404 (infra); this launcher does the same locally, then runs the real `chalice local`.
"""

from __future__ import annotations

import functools
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

    with_body = local.ChaliceRequestHandler._send_http_response_with_body

    def send_with_body(self: Any, code: int, headers: Any, body: Any) -> None:
        if self.command == "HEAD":
            # A HEAD answer has headers only (RFC 9110 9.3.2): the length it would have had,
            # no body on the wire.
            raw = body if isinstance(body, bytes) else str(body).encode()
            headers = dict(headers)
            content_type = headers.pop("Content-Type", "application/json")
            self.send_response(code)
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("Content-Type", content_type)
            self._send_headers(headers)
            return
        with_body(self, code, headers, body)

    local.ChaliceRequestHandler._send_http_response_with_body = send_with_body  # type: ignore[method-assign]

    def unknown_method(self: Any) -> None:
        # TRACE, CONNECT or any verb no route has: API Gateway's JSON 405, in our error
        # shape, not http.server's 501 HTML page.
        payload = json.dumps({"error": {
            "code": "method_not_allowed",
            "message": f"method {self.command} is not allowed on this path",
            "request_id": uuid.uuid4().hex}}).encode()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(405)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    original_getattr = getattr(local.ChaliceRequestHandler, "__getattr__", None)

    def fallback(self: Any, name: str) -> Any:
        # http.server looks up do_<VERB>; a verb without a handler gets the JSON 405.
        if name.startswith("do_"):
            return functools.partial(unknown_method, self)
        if original_getattr is not None:
            return original_getattr(self, name)
        raise AttributeError(name)

    local.ChaliceRequestHandler.__getattr__ = fallback  # type: ignore[attr-defined]
    # socketserver's listen backlog is 5: more clients than that connecting at once (the
    # console's parallel fetches, `make bench`'s 50 clients) are reset by the kernel.
    local.ThreadedHTTPServer.request_queue_size = 128


if __name__ == "__main__":
    _patch()
    sys.argv = ["chalice", *sys.argv[1:]]
    sys.exit(chalice_main())
