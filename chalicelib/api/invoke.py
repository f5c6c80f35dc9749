"""Invoke a connection, and usage across users (admins)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.api.http import ANY_TYPES, Ctx, services, view

bp = Blueprint(__name__)


@bp.route("/connections/{connection_id}/invoke", methods=["POST"], content_types=ANY_TYPES)
@view(bp)
def invoke(ctx: Ctx, connection_id: str) -> dict[str, Any]:
    return services().usage.invoke(ctx.caller, connection_id, ctx.json())


@bp.route("/usage", methods=["GET"])
@view(bp)
def usage(ctx: Ctx) -> dict[str, Any]:
    return services().usage.usage_for_owner(ctx.caller, ctx.query("owner"))
