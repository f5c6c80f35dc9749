"""Text that people read in lists and e-mails: one form for each string, nothing invisible.

Every user-supplied label is NFKC-normalised (full-width letters are ASCII letters, a
no-break space is a space) and stripped, and refuses what would make two labels look alike
or one label look like something else: control characters (C0, DEL, C1; CR/LF/TAB too, since
a name ends up in an SNS subject and a log line), bidirectional embeddings, overrides and
isolates (U+202A-U+202E, U+2066-U+2069: "Trojan Source"), and zero-width or invisible
characters. Multi-line text (descriptions) may keep line breaks, written as ``\\n``.
Uniqueness compares ``fold``: the normalised form, case-folded (and normalised again, since
case folding can undo NFKC, e.g. U+1E9E).
"""

from __future__ import annotations

import re
import unicodedata

_BIDI = r"\u202a-\u202e\u2066-\u2069"
# Zero-width and invisible: ZWSP/ZWNJ/ZWJ, LRM/RLM, ALM, word joiner and the invisible
# operators, Mongolian vowel separator, BOM/ZWNBSP, Hangul fillers (render as nothing).
_INVISIBLE = r"\u200b-\u200f\u061c\u2060-\u2064\u180e\ufeff\u115f\u1160\u3164\uffa0"
# U+2028/U+2029 are line breaks too; a description writes its line breaks as LF.
_SEPARATORS = r"\u2028\u2029"
_REFUSED_SINGLE = re.compile(rf"[\x00-\x1f\x7f-\x9f{_SEPARATORS}{_BIDI}{_INVISIBLE}]")
# The same less LF (CR is turned into LF first).
_REFUSED_MULTI = re.compile(rf"[\x00-\x09\x0b-\x1f\x7f-\x9f{_SEPARATORS}{_BIDI}{_INVISIBLE}]")
_LINE_BREAK = re.compile(r"\r\n?")


def _describe(ch: str) -> str:
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        kind = "a control character"
    elif ch in "\u2028\u2029":
        kind = "a line separator"
    elif ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        kind = "a bidirectional control character"
    else:
        kind = "an invisible character"
    return f"{kind} (U+{code:04X})"


def _normalise(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


def single_line(value: str) -> str:
    """``value`` normalised and stripped, or ``ValueError`` naming the refused character."""
    text = _normalise(value)
    bad = _REFUSED_SINGLE.search(text)
    if bad:
        raise ValueError(f"must not contain {_describe(bad.group())}")
    text = text.strip()
    if not text:
        raise ValueError("must not be blank")
    return text


def multi_line(value: str) -> str:
    """Like ``single_line`` but line breaks are kept (CRLF and CR become LF); may be blank."""
    text = _LINE_BREAK.sub("\n", _normalise(value))
    bad = _REFUSED_MULTI.search(text)
    if bad:
        raise ValueError(f"must not contain {_describe(bad.group())}")
    return text.strip()


def fold(value: str) -> str:
    """The form two labels are compared in: equal folds are the same name."""
    return _normalise(_normalise(value).strip().casefold())
