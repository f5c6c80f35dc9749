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


def query_page(query: Callable[..., Any], scope: str, *, cursor: str | None, limit: int,
               **kwargs: Any) -> Page[Any]:
    """One page of a PynamoDB ``query`` (a model's or an index's, bound to its hash key):
    at most ``limit`` items and the cursor of the next page. Every listing pages this way."""
    result = query(limit=limit, page_size=limit,
                   last_evaluated_key=decode_cursor(cursor, scope), **kwargs)
    items = list(result)
    return Page(items, encode_cursor(result.last_evaluated_key, scope))
