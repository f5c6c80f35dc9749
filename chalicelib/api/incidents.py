"""Provider incidents route: read-only."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.api.http import Ctx, services, view

bp = Blueprint(__name__)


@bp.route("/incidents", methods=["GET"])
@view(bp)
def list_incidents(ctx: Ctx) -> dict[str, Any]:
    limit, cursor = ctx.page()
    return services().incidents.list(ctx.caller, cursor=cursor, limit=limit)
