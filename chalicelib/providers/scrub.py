"""Removing credential values from text that leaves the provider layer.

Providers sometimes echo the key they received (whole, or a long part of it) in an error
message. ``Scrubber`` replaces every occurrence of a secret, and every run of text made of
substrings of it at least ``FRAGMENT`` characters long, with ``[REDACTED]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from urllib.parse import quote

REDACTED = "[REDACTED]"
FRAGMENT = 12  # shortest substring of a secret that counts as a leak
_MIN_EXACT = 4  # shorter values (e.g. "1") are not secrets worth garbling a message for

# Credential fields that are configuration, not secrets.
NON_SECRET_FIELDS = frozenset({"region", "api_version"})


class Scrubber:
    """Callable that redacts a fixed set of secret values from strings."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < _MIN_EXACT:
                continue
            # The raw value plus the encodings it may come back in.
            forms.update({secret, secret.strip(), quote(secret, safe=""), json.dumps(secret)[1:-1]})
        self._exact = sorted((f for f in forms if len(f) >= _MIN_EXACT), key=len, reverse=True)
        self._grams = {
            form[i : i + FRAGMENT] for form in self._exact for i in range(len(form) - FRAGMENT + 1)
        }

    @classmethod
    def for_credentials(cls, credentials: Mapping[str, str]) -> Scrubber:
        return cls(
            value
            for name, value in credentials.items()
            if name not in NON_SECRET_FIELDS and isinstance(value, str)
        )

    def __call__(self, text: str) -> str:
        if not text or not self._exact:
            return text
        hit = bytearray(len(text))
        for form in self._exact:
            start = text.find(form)
            while start != -1:
                hit[start : start + len(form)] = b"\x01" * len(form)
                start = text.find(form, start + 1)
        for i in range(len(text) - FRAGMENT + 1):
            if text[i : i + FRAGMENT] in self._grams:
                hit[i : i + FRAGMENT] = b"\x01" * FRAGMENT
        if not any(hit):
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            if hit[i]:
                while i < len(text) and hit[i]:
                    i += 1
                out.append(REDACTED)
            else:
                j = i
                while j < len(text) and not hit[j]:
                    j += 1
                out.append(text[i:j])
                i = j
        return "".join(out)

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)
