"""Issue 17 (4): a hostile provider's transformed echoes of a key are scrubbed too.

Written against the scrubber before the change, which caught the key as is, URL-quoted and
JSON-escaped only: each form below came back in clear.
"""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote

import pytest

from chalicelib.providers.scrub import REDACTED, Scrubber
from tests.support.leaks import recoverable

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


@pytest.mark.parametrize("name", sorted(FORMS))
def test_each_encoding_of_the_key_is_redacted(name):
    encoded = FORMS[name]
    text = f"error: bad key <{encoded}> (request abc)"
    assert recoverable(text, KEY), name  # the check below can fail
    out = Scrubber([KEY])(text)
    assert REDACTED in out, (name, out)
    assert not recoverable(out, KEY), (name, out)
    assert out.startswith("error: bad key <") and out.endswith("> (request abc)")


def test_ordinary_text_is_left_alone():
    text = "The model gpt-4o is not available; see https://example.com/docs?x=1 (HTTP 404)."
    assert Scrubber([KEY])(text) == text


def test_a_key_streamed_in_small_pieces_is_caught_across_them():
    pieces = ["Here: ", KEY[:5], KEY[5:11], KEY[11:20], KEY[20:], " done"]
    out = Scrubber([KEY]).pieces(pieces)
    assert len(out) == len(pieces)
    assert out[0] == "Here: " and out[-1] == " done"
    assert "".join(out) == f"Here: {REDACTED} done"
    assert not recoverable("".join(out), KEY)
    # Pieces without a secret are returned as they were
    assert Scrubber([KEY]).pieces(["a", "b"]) == ["a", "b"]
