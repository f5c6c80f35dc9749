"""Client helpers for the fake's control API (stdlib urllib), plus the constants tests need.

Every function takes the server root, e.g. ``http://127.0.0.1:8765`` (``server.base_url``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from fakeprovider.catalog import (
    ANTHROPIC_MODELS,
    AZURE_DEPLOYMENTS,
    AZURE_MODELS,
    BEDROCK_MODELS,
    BEDROCK_NOT_AUTHORIZED,
    COHERE_MODELS,
    DEFAULT_MODELS,
    FAKE_BEDROCK_ACCESS_KEY_PREFIX,
    FAKE_BEDROCK_SECRET,
    GOOGLE_MODELS,
    MODELS,
    OPENAI_MODELS,
    PREFIXES,
    REPLY_TEXT,
    base_url_for,
    make_key,
)

__all__ = [
    "ANTHROPIC_MODELS",
    "AZURE_DEPLOYMENTS",
    "AZURE_MODELS",
    "BEDROCK_MODELS",
    "BEDROCK_NOT_AUTHORIZED",
    "COHERE_MODELS",
    "DEFAULT_MODELS",
    "FAKE_BEDROCK_ACCESS_KEY_PREFIX",
    "FAKE_BEDROCK_SECRET",
    "GOOGLE_MODELS",
    "MODELS",
    "OPENAI_MODELS",
    "PREFIXES",
    "REPLY_TEXT",
    "ControlError",
    "base_url_for",
    "clear_fault",
    "health",
    "make_key",
    "requests",
    "reset",
    "set_fault",
    "wait_until_up",
]

_TIMEOUT = 5.0


class ControlError(RuntimeError):
    """The control API refused a call (e.g. an unknown directive)."""


def _call(base_url: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base_url.rstrip("/") + "/_control" + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"} if data is not None else {},
    )
    try:
        with urllib.request.urlopen(req, timeout=_TIMEOUT) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise ControlError(
            f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}"
        ) from None


def reset(base_url: str) -> None:
    """Clear fault overrides, counted-fault counters and the request log."""
    _call(base_url, "POST", "/reset")


def set_fault(base_url: str, key: str, fault: str) -> None:
    """Make ``key`` (Bedrock: the access key id) behave as ``fault`` (e.g. ``ok``, ``503x2``).

    The override beats the ``fk_`` directive inside the key and restarts its counters.
    """
    _call(base_url, "PUT", "/keys/" + quote(key, safe=""), {"fault": fault})


def clear_fault(base_url: str, key: str) -> bool:
    """Remove the override of ``key``; True if there was one."""
    return bool(_call(base_url, "DELETE", "/keys/" + quote(key, safe=""))["deleted"])


def requests(
    base_url: str,
    provider: str | None = None,
    limit: int | None = None,
    fingerprint: str | None = None,
    since: int | None = None,
) -> list[dict[str, Any]]:
    """Recorded provider requests, oldest first (credentials redacted to their last 4 chars).

    ``provider`` is an adapter name (``openai``, ``azure_openai``...), ``fingerprint`` the last
    4 characters of a key, ``since`` a ``seq`` number (only later requests are returned).
    """
    params = {
        k: v
        for k, v in (
            ("provider", provider),
            ("limit", limit),
            ("fingerprint", fingerprint),
            ("since", since),
        )
        if v is not None
    }
    query = f"?{urlencode(params)}" if params else ""
    return list(_call(base_url, "GET", "/requests" + query)["requests"])


def health(base_url: str) -> bool:
    """True when the server answers its health check."""
    try:
        return _call(base_url, "GET", "/health").get("status") == "ok"
    except (OSError, ControlError, ValueError):
        return False


def wait_until_up(base_url: str, timeout: float = 10.0) -> None:
    """Poll the health check until it answers (for a server started as a subprocess)."""
    deadline = time.monotonic() + timeout
    while not health(base_url):
        if time.monotonic() > deadline:
            raise TimeoutError(f"fakeprovider at {base_url} did not come up in {timeout}s")
        time.sleep(0.05)
