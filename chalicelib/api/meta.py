"""Unauthenticated routes: health and the API description."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.api.http import Ctx, view

bp = Blueprint(__name__)


@bp.route("/health", methods=["GET"])
@view(bp, auth=False)
def health(ctx: Ctx) -> dict[str, Any]:
    from chalicelib.services.health import check

    return check(ctx.settings)


@bp.route("/openapi.json", methods=["GET"])
@view(bp, auth=False)
def openapi(ctx: Ctx) -> dict[str, Any]:
    from chalicelib.api.openapi import document

    return document(ctx.settings.version)
