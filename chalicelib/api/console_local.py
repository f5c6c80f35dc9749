"""The local stage's console sign-in. app.py registers this blueprint only when ``STAGE`` is
``local``, so the route is absent from every packaged template (a test checks dev and prod);
the service refuses it again unless the settings are the local stage's."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.api.http import ANY_TYPES, Ctx, view
from chalicelib.errors import Forbidden

bp = Blueprint(__name__)

# A page on another site whose name is rebound to 127.0.0.1 (DNS rebinding) would be
# same-origin with the local stack: only a request addressed to loopback by name may sign in.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


@bp.route("/console/local-signin", methods=["POST"], content_types=ANY_TYPES)
@view(bp, auth=False)
def local_signin(ctx: Ctx) -> dict[str, Any]:
    from chalicelib.services.local_signin import mint

    if _host_name(ctx.header("host") or "") not in LOOPBACK_HOSTS:
        raise Forbidden("the local sign-in answers only requests addressed to 127.0.0.1 or "
                        "localhost")

    return mint(ctx.settings, ctx.json())
