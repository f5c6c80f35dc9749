"""Opaque cursors over DynamoDB ``LastEvaluatedKey`` values, bound to the query they came from."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from chalicelib import strictjson

T = TypeVar("T")


class BadCursor(ValueError):
    """The cursor is malformed or belongs to another query."""


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def _scope_tag(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def encode_cursor(last_key: dict[str, Any] | None, scope: str) -> str | None:
    if not last_key:
        return None
    raw = json.dumps({"k": last_key, "s": _scope_tag(scope)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, scope: str) -> dict[str, Any] | None:
    """Decode a cursor; ``scope`` names the query (e.g. owner), so a cursor cannot be replayed
    against another user's listing."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = strictjson.loads(base64.urlsafe_b64decode(padded.encode()))
        key = data["k"]
        if data.get("s") != _scope_tag(scope) or not isinstance(key, dict):
            raise BadCursor("cursor does not belong to this listing")
        return key
    except (ValueError, KeyError, TypeError) as exc:
        raise BadCursor("cursor is not valid") from exc


def query_page(fetch: Callable[[dict[str, Any] | None], Any], scope: str, *,
               cursor: str | None) -> Page[Any]:
    """One page of a listing: ``fetch(start_key)`` runs the PynamoDB query (with its own
    ``limit``) from the decoded ``cursor``; the page holds its items and the next cursor.
    Every listing pages this way (the query itself stays a direct call, where the IAM
    policy's code scan sees it)."""
    result = fetch(decode_cursor(cursor, scope))
    items = list(result)
    return Page(items, encode_cursor(result.last_evaluated_key, scope))
