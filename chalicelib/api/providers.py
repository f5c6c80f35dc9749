"""Provider catalogue routes: read for everyone, write for admins."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.http import ANY_TYPES, Ctx, etag, json_response, parse_if_match, services, view

bp = Blueprint(__name__)


def _with_etag(body: dict[str, Any], status: int = 200, **headers: str) -> Response:
    return json_response(body, status, {"ETag": etag(body["version"]), **headers})


@bp.route("/providers", methods=["GET"])
@view(bp)
def list_providers(ctx: Ctx) -> dict[str, Any]:
    limit, cursor = ctx.page()
    page = services().providers.list(cursor=cursor, limit=limit)
    return {"items": page.items, "next_cursor": page.next_cursor}


@bp.route("/providers", methods=["POST"], content_types=ANY_TYPES)
@view(bp)
def create_provider(ctx: Ctx) -> Response:
    result = services().providers.create(ctx.caller, ctx.json())
    return _with_etag(result, 201, Location=f"/providers/{result['id']}")


@bp.route("/providers/{provider_id}", methods=["GET"])
@view(bp)
def get_provider(ctx: Ctx, provider_id: str) -> Response:
    return _with_etag(services().providers.get(provider_id))


@bp.route("/providers/{provider_id}", methods=["PUT", "PATCH"], content_types=ANY_TYPES)
@view(bp)
def replace_provider(ctx: Ctx, provider_id: str) -> Response:
    result = services().providers.replace(
        ctx.caller, provider_id, ctx.json(), parse_if_match(ctx.header("if-match")),
        partial=ctx.request.method == "PATCH", force=ctx.flag("force"),
    )
    return _with_etag(result)


@bp.route("/providers/{provider_id}", methods=["DELETE"])
@view(bp)
def delete_provider(ctx: Ctx, provider_id: str) -> Response:
    disabled = services().providers.delete(ctx.caller, provider_id,
                                           parse_if_match(ctx.header("if-match")),
                                           force=ctx.flag("force"))
    # Forced on a provider in use: disabled instead, and shown as it is now.
    return json_response(None, 204) if disabled is None else _with_etag(disabled)
