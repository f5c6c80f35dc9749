"""Whether a secret can be read back from text, also when a hostile provider transformed it."""

from __future__ import annotations

import base64
import html
import re
from urllib.parse import unquote


def recoverable(text: str, key: str) -> bool:
    """Whether 12 or more characters of the key can be read back from ``text``: as is, in
    any case or reversed, or decoded from any run of base64, hex or entities in it."""
    grams = {key[i:i + 12] for i in range(len(key) - 11)}
    plain = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)),
                   unquote(html.unescape(text)))
    for candidate in (plain, plain.lower(), plain[::-1]):
        if any(g in candidate or g.lower() in candidate for g in grams):
            return True
    for run in re.findall(r"[A-Za-z0-9+/_=-]{16,}", text):
        run = run.replace("-", "+").replace("_", "/").rstrip("=")
        for start in range(4):
            chunk = run[start:]
            chunk = chunk[:len(chunk) - len(chunk) % 4]
            try:
                decoded = base64.b64decode(chunk, validate=False).decode("latin-1")
            except ValueError:
                continue
            if any(g in decoded for g in grams):
                return True
    for run in re.findall(r"[0-9a-fA-F]{24,}", text):
        for start in range(2):
            chunk = run[start:]
            chunk = chunk[:len(chunk) - len(chunk) % 2]
            if any(g in bytes.fromhex(chunk).decode("latin-1") for g in grams):
                return True
    return False
