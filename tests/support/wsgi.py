"""The app as a WSGI callable, over the same ``LocalGateway`` that ``chalice local`` and
``chalice.test.Client`` use, so a WSGI test client (schemathesis) can drive it in process."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import quote


def wsgi_app(client: Any) -> Callable[..., Iterable[bytes]]:
    """``client`` is an open ``chalice.test.Client``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # The raw path as sent (encoded), which is what chalice local's HTTP server hands on.
        path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or (
            quote(environ.get("PATH_INFO", "/").encode("latin-1"), safe="/:@!$&'()*+,;=-._~")
            + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else ""))
        headers = {key[5:].replace("_", "-").lower(): value
                   for key, value in environ.items() if key.startswith("HTTP_")}
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        resp = client.http.request(environ["REQUEST_METHOD"], path, headers=headers,
                                   body=body)
        status = resp.status_code
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        start_response(f"{status} {phrase}", [(str(k), str(v)) for k, v in
                                              resp.headers.items()])
        return [resp.body or b""]

    return app
