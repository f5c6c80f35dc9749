"""Alert subscription routes."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.http import ANY_TYPES, Ctx, json_response, services, view

bp = Blueprint(__name__)


@bp.route("/notifications/subscriptions", methods=["POST"], content_types=ANY_TYPES)
@view(bp)
def subscribe(ctx: Ctx) -> Response:
    result = services().subscriptions.subscribe(ctx.caller, ctx.json())
    return json_response(result, 201,
                         {"Location": f"/notifications/subscriptions/{result['id']}"})


@bp.route("/notifications/subscriptions", methods=["GET"])
@view(bp)
def list_subscriptions(ctx: Ctx) -> dict[str, Any]:
    limit, cursor = ctx.page()
    page = services().subscriptions.list(ctx.caller, cursor=cursor, limit=limit)
    return {"items": page.items, "next_cursor": page.next_cursor}


@bp.route("/notifications/subscriptions/{subscription_id}", methods=["DELETE"])
@view(bp)
def unsubscribe(ctx: Ctx, subscription_id: str) -> Response:
    services().subscriptions.delete(ctx.caller, subscription_id)
    return json_response(None, 204)
