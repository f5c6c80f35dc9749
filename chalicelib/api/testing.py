"""Connection test routes and the per-connection history and statistics."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.http import ANY_TYPES, Ctx, json_response, services, view

bp = Blueprint(__name__)


@bp.route("/connections/test", methods=["POST"], content_types=ANY_TYPES)
@view(bp)
def test_unsaved(ctx: Ctx) -> dict[str, Any]:
    return services().testing.test_unsaved(ctx.caller, ctx.json())


@bp.route("/connections/{connection_id}/test", methods=["POST"], content_types=ANY_TYPES)
@view(bp)
def test_saved(ctx: Ctx, connection_id: str) -> dict[str, Any] | Response:
    result = services().testing.test_saved(ctx.caller, connection_id,
                                           ctx.json(required=False))
    if result.get("status") == "queued":  # {"background": true}: poll its location
        return json_response(result, 202, {"Location": result["location"]})
    return result


@bp.route("/connections/{connection_id}/tests/{test_id}", methods=["GET"])
@view(bp)
def background_test(ctx: Ctx, connection_id: str, test_id: str) -> dict[str, Any]:
    return services().testing.background_result(ctx.caller, connection_id, test_id)


@bp.route("/connections/{connection_id}/tests", methods=["GET"])
@view(bp)
def test_history(ctx: Ctx, connection_id: str) -> dict[str, Any]:
    limit, cursor = ctx.page()
    return services().testing.history(ctx.caller, connection_id, cursor=cursor, limit=limit)


@bp.route("/connections/{connection_id}/stats", methods=["GET"])
@view(bp)
def connection_stats(ctx: Ctx, connection_id: str) -> dict[str, Any]:
    svc = services()
    item = svc.connections.get(ctx.caller, connection_id)
    return {"connection_id": item.id, "tests": svc.testing.test_stats(item),
            "usage": svc.usage.stats(item) if svc.usage else None}
