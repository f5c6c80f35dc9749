"""Issue 17 (4): a hostile provider's transformed echoes of a key are scrubbed too.

Written against the scrubber before the change, which caught the key as is, URL-quoted and
JSON-escaped only: each form below came back in clear.
"""

from __future__ import annotations

import base64
import html
import json
import re
from urllib.parse import quote, unquote

import pytest

from chalicelib.providers.scrub import REDACTED, Scrubber

KEY = "sk-canary-Zq7xW3pL9mN2bV8cR4tY6uI1oP5aS0dF"


def _b64(prefix: bytes, alphabet: str = "std") -> str:
    raw = base64.b64encode(prefix + KEY.encode() + b" and more").decode()
    return raw.replace("+", "-").replace("/", "_") if alphabet == "url" else raw


FORMS = {
    "upper": KEY.upper(),
    "lower": KEY.lower(),
    "swapped": KEY.swapcase(),
    "reversed": KEY[::-1],
    "hex": KEY.encode().hex(),
    "HEX": KEY.encode().hex().upper(),
    "html-named": html.escape(KEY + '"&'),
    "html-decimal": "".join(f"&#{ord(c)};" for c in KEY),
    "html-hex": "".join(f"&#x{ord(c):X};" for c in KEY),
    "url-all": "".join(f"%{b:02X}" for b in KEY.encode()),
    "url": quote(KEY, safe=""),
    "json-unicode": "".join(f"\\u{ord(c):04x}" for c in KEY),
    "json": json.dumps(KEY)[1:-1],
    **{f"base64-{n}-{a}": _b64(b"x" * n, a) for n in range(3) for a in ("std", "url")},
    **{f"base64-after-{n}-{a}": _b64(b"Bearer: " + b"y" * n, a)
       for n in range(3) for a in ("std", "url")},
}


def _recoverable(text: str) -> bool:
    """Whether 12 or more characters of the key can be read back from ``text``: as is, in
    any case or reversed, or decoded from any run of base64, hex or entities in it."""
    grams = {KEY[i:i + 12] for i in range(len(KEY) - 11)}
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


@pytest.mark.parametrize("name", sorted(FORMS))
def test_each_encoding_of_the_key_is_redacted(name):
    encoded = FORMS[name]
    text = f"error: bad key <{encoded}> (request abc)"
    assert _recoverable(text), name  # the check below can fail
    out = Scrubber([KEY])(text)
    assert REDACTED in out, (name, out)
    assert not _recoverable(out), (name, out)
    assert out.startswith("error: bad key <") and out.endswith("> (request abc)")


def test_ordinary_text_is_left_alone():
    text = "The model gpt-4o is not available; see https://example.com/docs?x=1 (HTTP 404)."
    assert Scrubber([KEY])(text) == text
