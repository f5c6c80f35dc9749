"""Invoke a connection, and usage across users (admins)."""

from __future__ import annotations

import json
from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.http import ANY_TYPES, Ctx, services, view
from chalicelib.services.invoke import EventStream

bp = Blueprint(__name__)


@bp.route("/connections/{connection_id}/invoke", methods=["POST"], content_types=ANY_TYPES)
@view(bp)
def invoke(ctx: Ctx, connection_id: str) -> dict[str, Any] | Response:
    result = services().usage.invoke(ctx.caller, connection_id, ctx.json())
    if isinstance(result, EventStream):
        # Buffered server-sent events: API Gateway's REST API (what Chalice deploys) sends a
        # Lambda's answer whole, so the events arrive together, in the same format a
        # streaming transport would carry (README, "Streaming invoke").
        return Response(body=sse_text(result), status_code=200,
                        headers={"Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache"})
    return result


SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def sse_text(stream: EventStream) -> str:
    """``event: <name>`` and one ``data:`` line of compact JSON per event."""
    return "".join(f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
                   for name, data in stream.events)


@bp.route("/usage", methods=["GET"])
@view(bp)
def usage(ctx: Ctx) -> dict[str, Any]:
    limit, cursor = ctx.page()
    return services().usage.usage_for_owner(ctx.caller, ctx.query("owner"), cursor=cursor,
                                            limit=limit)
