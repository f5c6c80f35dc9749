"""The local stage's console sign-in. app.py registers this blueprint only when ``STAGE`` is
``local``, so the route is absent from every packaged template (a test checks dev and prod);
the service refuses it again unless the settings are the local stage's."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.api.http import ANY_TYPES, Ctx, view

bp = Blueprint(__name__)


@bp.route("/console/local-signin", methods=["POST"], content_types=ANY_TYPES)
@view(bp, auth=False)
def local_signin(ctx: Ctx) -> dict[str, Any]:
    from chalicelib.services.local_signin import mint

    return mint(ctx.settings, ctx.json())
