"""Audit trail route: read-only (no route updates or deletes events)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.api.http import Ctx, services, view
from chalicelib.data.paging import BadCursor
from chalicelib.errors import InvalidInput

bp = Blueprint(__name__)


@bp.route("/audit", methods=["GET"])
@view(bp)
def list_audit(ctx: Ctx) -> dict[str, Any]:
    limit, cursor = ctx.page()
    try:
        page = services().audit.list(
            ctx.caller, user=ctx.query("user"), action=ctx.query("action"),
            target=ctx.query("target"), cursor=cursor, limit=limit,
        )
    except BadCursor as exc:
        raise InvalidInput(str(exc), field="cursor") from None
    return {"items": page.items, "next_cursor": page.next_cursor}
