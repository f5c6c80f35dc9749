"""The one JSON parser for request bodies: what the standard library lets through, refused.

``json.loads`` accepts duplicate keys (the last wins, silently), ``NaN``/``Infinity`` and
``1e999`` (a float that is not a number JSON can carry), lone surrogates written as ``\\ud800``
(a string no UTF-8 encoder can store), and nests until the interpreter's recursion limit
raises ``RecursionError``, which is no ``ValueError`` and used to surface as a 500. Each of
these is a ``MalformedJson`` here, with a message a client can act on.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 32

# A JSON string literal (escapes included), so brackets inside strings are not counted.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class MalformedJson(ValueError):
    """The body is not JSON this API accepts; the message says why."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedJson(f"duplicate key {_shown(key)} in a JSON object")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise MalformedJson(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedJson(f"number {text[:20]} is out of range")
    return value


def _shown(key: str) -> str:
    safe = key[:40].encode("ascii", "backslashreplace").decode()
    return f'"{safe}"'


def _check_depth(text: str, limit: int) -> None:
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                raise MalformedJson(f"JSON nests deeper than {limit} levels")
        else:
            depth -= 1


def _check_strings(value: Any) -> None:
    # Depth is already bounded, so this recursion is too.
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise MalformedJson("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` (UTF-8) strictly or raise ``MalformedJson``."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedJson(f"body is not valid UTF-8 (byte {exc.start})") from None
    else:
        text = raw
    if text.startswith("\ufeff"):
        raise MalformedJson("body starts with a byte order mark")
    _check_depth(text, max_depth)
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant,
                           parse_float=_float)
    except MalformedJson:
        raise
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError says where; int() of a huge literal says why. Both are safe to show.
        where = f" (line {exc.lineno} column {exc.colno})" if isinstance(
            exc, json.JSONDecodeError) else ""
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "malformed value"
        raise MalformedJson(f"body is not valid JSON: {detail}{where}") from None
    _check_strings(value)
    return value
