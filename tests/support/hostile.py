"""A hostile OpenAI-compatible provider on loopback, for tests of what it can make us store,
say or spend. Its behaviour is chosen per request by the key it receives (``hostile-<mode>-``):

* ``huge``: ``GET /v1/models`` answers about 1.7 MB per page (14,000 ids of 85 chars).
* ``busy``: every request is a 429 with ``retry-after: 0`` (retried at once, forever).
* ``echo``: every answer carries the received key in the forms a key is commonly transformed
  into (case, reversed, hex, URL/HTML/JSON escapes, base64 at each alignment): a 401 on the
  listing, and the text of a chat completion.
"""

from __future__ import annotations

import base64
import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote


def encodings(key: str) -> list[str]:
    raw = key.encode()
    forms = [key.upper(), key[::-1], raw.hex(), raw.hex().upper(), quote(key, safe=""),
             "".join(f"%{b:02X}" for b in raw), "".join(f"&#{ord(c)};" for c in key),
             "".join(f"&#x{ord(c):x};" for c in key), html.escape(key),
             "".join(f"\\u{ord(c):04x}" for c in key)]
    for pad in range(3):
        encoded = base64.b64encode(b"p" * pad + raw + b"!").decode()
        forms += [encoded, encoded.replace("+", "-").replace("/", "_")]
    return forms


def _echo_text(key: str) -> str:
    return " | ".join(f"{i}:{form}" for i, form in enumerate(encodings(key)))


class _Handler(BaseHTTPRequestHandler):
    server_version = "hostile"

    def log_message(self, *_: Any) -> None:  # quiet
        pass

    def _key(self) -> str:
        return self.headers.get("authorization", "").removeprefix("Bearer ").strip()

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _busy(self) -> None:
        data = json.dumps({"error": {"message": "Rate limit reached", "type": "requests",
                                     "code": "rate_limit_exceeded"}}).encode()
        self.send_response(429)
        self.send_header("content-type", "application/json")
        self.send_header("retry-after", "0")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        key = self._key()
        self.server.calls.append(("GET", self.path, key))  # type: ignore[attr-defined]
        if "hostile-busy-" in key:
            return self._busy()
        if not self.path.startswith("/v1/models"):
            return self._send(404, {"error": {"message": "no such path"}})
        if "hostile-echo-" in key:
            return self._send(401, {"error": {"message": f"Incorrect API key: {_echo_text(key)}",
                                              "type": "invalid_request_error",
                                              "code": "invalid_api_key"}})
        if "hostile-huge-" in key:
            ids = [{"id": f"model-{'x' * 72}-{i:06d}", "object": "model"} for i in range(14000)]
            return self._send(200, {"object": "list", "data": ids})
        return self._send(200, {"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]})

    def do_POST(self) -> None:
        key = self._key()
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.server.calls.append(("POST", self.path, key))  # type: ignore[attr-defined]
        if "hostile-busy-" in key:
            return self._busy()
        text = _echo_text(key) if "hostile-echo-" in key else "hello"
        return self._send(200, {
            "id": "chatcmpl-hostile", "object": "chat.completion", "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


class HostileProvider:
    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.calls = []  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def calls(self) -> list[tuple[str, str, str]]:
        return self._server.calls  # type: ignore[attr-defined, no-any-return]

    def start(self) -> HostileProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
