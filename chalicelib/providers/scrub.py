"""Removing credential values from text that leaves the provider layer.

Providers sometimes echo the key they received (whole, or a long part of it) in an error
message, and a hostile one may transform it first. ``Scrubber`` replaces every occurrence of a
secret, and every run of text made of substrings of it at least ``FRAGMENT`` characters long,
with ``[REDACTED]``, in the forms a key commonly travels in: as is, in any letter case,
reversed, hex, URL- and JSON-escaped, as HTML entities (named, decimal, hex), and base64
(standard and URL-safe, at each of the three byte alignments it can sit at inside a longer
encoded text).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping
from urllib.parse import quote

REDACTED = "[REDACTED]"
FRAGMENT = 12  # shortest substring of a secret that counts as a leak
_MIN_EXACT = 4  # shorter values (e.g. "1") are not secrets worth garbling a message for

# Credential fields that are configuration, not secrets.
NON_SECRET_FIELDS = frozenset({"region", "api_version"})


# ASCII-only lower-casing: keeps every index of the text where it was (str.lower may not).
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _base64_forms(secret: str) -> set[str]:
    """The part of the base64 text of ``secret`` that does not depend on what surrounds it,
    for each alignment (0, 1, 2 bytes before it), standard and URL-safe alphabets."""
    raw = secret.encode()
    out: set[str] = set()
    for pad in range(3):
        text = base64.b64encode(b"\0" * pad + raw).decode().rstrip("=")
        # Characters carrying bits of the padding bytes, or of what follows the secret.
        head = (pad * 8 + 5) // 6
        tail = 1 if (pad + len(raw)) % 3 else 0
        middle = text[head:len(text) - tail]
        out.update({middle, middle.replace("+", "-").replace("/", "_")})
    return out


def _insensitive_forms(secret: str) -> set[str]:
    """Forms matched whatever their letter case (lower-cased here)."""
    raw = secret.encode()
    forms = {
        secret, secret.strip(), secret[::-1], quote(secret, safe=""),
        "".join(f"%{b:02x}" for b in raw), raw.hex(),
        html.escape(secret), "".join(f"&#{ord(c)};" for c in secret),
        "".join(f"&#x{ord(c):x};" for c in secret), json.dumps(secret)[1:-1],
        "".join(f"\\u{ord(c):04x}" for c in secret),
    }
    return {f.translate(_LOWER) for f in forms}


def _grams(forms: Iterable[str]) -> set[str]:
    return {form[i : i + FRAGMENT] for form in forms for i in range(len(form) - FRAGMENT + 1)}


class Scrubber:
    """Callable that redacts a fixed set of secret values from strings."""

    def __init__(self, secrets: Iterable[str]) -> None:
        exact: set[str] = set()
        folded: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < _MIN_EXACT:
                continue
            exact.update(_base64_forms(secret))
            folded.update(_insensitive_forms(secret))
        self._exact = sorted((f for f in exact if len(f) >= _MIN_EXACT), key=len, reverse=True)
        self._folded = sorted((f for f in folded if len(f) >= _MIN_EXACT), key=len,
                              reverse=True)
        self._grams = _grams(self._exact)
        self._folded_grams = _grams(self._folded)

    @classmethod
    def for_credentials(cls, credentials: Mapping[str, str]) -> Scrubber:
        return cls(
            value
            for name, value in credentials.items()
            if name not in NON_SECRET_FIELDS and isinstance(value, str)
        )

    def _mask(self, text: str) -> bytearray:
        """1 for every character of ``text`` that belongs to a secret's form."""
        hit = bytearray(len(text))
        folded = text.translate(_LOWER)
        for haystack, forms, grams in ((text, self._exact, self._grams),
                                       (folded, self._folded, self._folded_grams)):
            for form in forms:
                start = haystack.find(form)
                while start != -1:
                    hit[start : start + len(form)] = b"\x01" * len(form)
                    start = haystack.find(form, start + 1)
            for i in range(len(haystack) - FRAGMENT + 1):
                if haystack[i : i + FRAGMENT] in grams:
                    hit[i : i + FRAGMENT] = b"\x01" * FRAGMENT
        return hit

    def __call__(self, text: str) -> str:
        if not text or not self._folded:
            return text
        return self.pieces([text])[0]

    def pieces(self, parts: list[str]) -> list[str]:
        """Scrub text that arrived in pieces (streamed deltas) as the one text it makes: a
        secret split across pieces is caught. Each piece keeps its place; a redacted run
        shows once, in the piece where it starts."""
        if not self._folded or not any(parts):
            return list(parts)
        text = "".join(parts)
        hit = self._mask(text)
        if not any(hit):
            return list(parts)
        out: list[str] = []
        pos = 0
        for part in parts:
            chunk: list[str] = []
            for k in range(pos, pos + len(part)):
                if not hit[k]:
                    chunk.append(text[k])
                elif k == 0 or not hit[k - 1]:
                    chunk.append(REDACTED)
            out.append("".join(chunk))
            pos += len(part)
        return out

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)
