"""Mutable server state: per-key fault overrides, request counters and the request log."""

from __future__ import annotations

import re
import threading
from collections import deque
from typing import Any

from fakeprovider.faults import Directive, parse_directive

REQUEST_LOG_SIZE = 10_000

# Header names whose values are credentials (redacted to their last 4 characters).
_SECRET_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "x-amz-security-token",
        "proxy-authorization",
        "cookie",
    }
)
_SECRET_WORDS = ("key", "token", "secret", "signature", "credential", "password")
_SIGV4_PARTS_RE = re.compile(r"(Credential=|Signature=)([^/,\s]+)")


def fingerprint(secret: str | None) -> str | None:
    """Last 4 characters of a credential; ``****`` for short ones, which would leak."""
    if not secret:
        return None
    return secret[-4:] if len(secret) >= 8 else "****"


def redact(value: str) -> str:
    """Redact a credential to ``***`` plus its last 4 characters."""
    return f"***{value[-4:]}" if len(value) >= 8 else "***"


def redact_header(name: str, value: str) -> str:
    lname = name.lower()
    if lname in ("authorization", "proxy-authorization"):
        if value.startswith("AWS4-HMAC-SHA256"):
            return _SIGV4_PARTS_RE.sub(lambda m: m.group(1) + redact(m.group(2)), value)
        scheme, sep, cred = value.partition(" ")
        return f"{scheme} {redact(cred)}" if sep else redact(value)
    if lname in _SECRET_HEADERS or any(w in lname for w in _SECRET_WORDS):
        return redact(value)
    return value


def redact_query(query: dict[str, str]) -> dict[str, str]:
    return {
        k: (redact(v) if any(w in k.lower() for w in _SECRET_WORDS) else v)
        for k, v in query.items()
    }


class State:
    """Thread-safe store shared by every handler thread."""

    def __init__(self, log_size: int = REQUEST_LOG_SIZE) -> None:
        self._lock = threading.Lock()
        self._overrides: dict[str, Directive] = {}
        self._counters: dict[tuple[str, str], int] = {}
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self._seq = 0

    def reset(self) -> None:
        with self._lock:
            self._overrides.clear()
            self._counters.clear()
            self._log.clear()

    # -- overrides ---------------------------------------------------------------------------

    def set_override(self, key: str, directive_text: str) -> Directive:
        directive = parse_directive(directive_text)
        with self._lock:
            self._overrides[key] = directive
            # A new override starts its counted faults afresh.
            self._counters = {k: v for k, v in self._counters.items() if k[0] != key}
        return directive

    def clear_override(self, key: str) -> bool:
        with self._lock:
            self._counters = {k: v for k, v in self._counters.items() if k[0] != key}
            return self._overrides.pop(key, None) is not None

    def override_for(self, key: str | None) -> Directive | None:
        if key is None:
            return None
        with self._lock:
            return self._overrides.get(key)

    def overrides(self) -> dict[str, str]:
        with self._lock:
            return {fingerprint(k) or "": d.text for k, d in self._overrides.items()}

    # -- counters ----------------------------------------------------------------------------

    def next_count(self, key: str | None, directive: Directive) -> int:
        """1-based number of this request among those made with ``key`` under ``directive``."""
        if not directive.counted:
            return 1
        counter = (key or "", directive.text)
        with self._lock:
            n = self._counters.get(counter, 0) + 1
            self._counters[counter] = n
            return n

    # -- request log -------------------------------------------------------------------------

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append ``entry`` (the caller may still update it, e.g. with the status)."""
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._log.append(entry)
        return entry

    def requests(
        self,
        provider: str | None = None,
        limit: int | None = None,
        fingerprint_: str | None = None,
        since: int | None = None,
    ) -> list[dict[str, Any]]:
        with self._lock:
            entries = [dict(e) for e in self._log]
        if provider:
            entries = [e for e in entries if e.get("provider") == provider]
        if fingerprint_:
            entries = [e for e in entries if e.get("key_fingerprint") == fingerprint_]
        if since is not None:
            entries = [e for e in entries if e["seq"] > since]
        if limit is not None:
            entries = entries[-limit:] if limit > 0 else []
        return entries

    def redirects_followed(self) -> int:
        with self._lock:
            return sum(1 for e in self._log if e.get("redirect_followed"))
