"""Connection routes: parse, call one service function, shape the response."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.http import ANY_TYPES, Ctx, etag, json_response, parse_if_match, services, view

bp = Blueprint(__name__)


def _with_etag(body: dict[str, Any], status: int = 200, **headers: str) -> Response:
    return json_response(body, status, {"ETag": etag(body["version"]), **headers})


@bp.route("/connections", methods=["POST"], content_types=ANY_TYPES)
@view(bp)
def create_connection(ctx: Ctx) -> Response:
    body = ctx.json()
    svc = services()
    key = ctx.header("idempotency-key")
    if key is not None:
        result = svc.idempotency.run(
            "connection.create", ctx.caller.user_id, key, body,
            lambda b: svc.connections.create(ctx.caller, b),
            validate=svc.connections.idempotency_fingerprint(body),
        )
    else:
        result = svc.connections.create(ctx.caller, body)
    return _with_etag(result, 201, Location=f"/connections/{result['id']}")


@bp.route("/connections", methods=["GET"])
@view(bp)
def list_connections(ctx: Ctx) -> dict[str, Any]:
    limit, cursor = ctx.page()
    page = services().connections.list(ctx.caller, owner=ctx.query("owner"), cursor=cursor,
                                       limit=limit)
    return {"items": page.items, "next_cursor": page.next_cursor}


@bp.route("/connections/export", methods=["GET"])
@view(bp)
def export_connections(ctx: Ctx) -> dict[str, Any]:
    return services().connections.export(ctx.caller)


@bp.route("/connections/import", methods=["POST"], content_types=ANY_TYPES)
@view(bp)
def import_connections(ctx: Ctx) -> Response:
    items = services().connections.import_(ctx.caller, ctx.json())
    return json_response({"items": items, "next_cursor": None}, 201)


@bp.route("/connections/{connection_id}", methods=["GET"])
@view(bp)
def get_connection(ctx: Ctx, connection_id: str) -> Response:
    svc = services().connections
    return _with_etag(svc.view(svc.get(ctx.caller, connection_id)))


@bp.route("/connections/{connection_id}", methods=["PATCH"], content_types=ANY_TYPES)
@view(bp)
def update_connection(ctx: Ctx, connection_id: str) -> Response:
    body = ctx.json()
    if_match = parse_if_match(ctx.header("if-match"))
    return _with_etag(services().connections.update(ctx.caller, connection_id, body, if_match))


@bp.route("/connections/{connection_id}", methods=["DELETE"])
@view(bp)
def delete_connection(ctx: Ctx, connection_id: str) -> Response:
    if_match = parse_if_match(ctx.header("if-match"))
    services().connections.delete(ctx.caller, connection_id, if_match, ctx.flag("force"))
    return json_response(None, 204)


@bp.route("/connections/{connection_id}/dependents", methods=["GET"])
@view(bp)
def list_dependents(ctx: Ctx, connection_id: str) -> dict[str, Any]:
    limit, cursor = ctx.page()
    page = services().connections.list_dependents(ctx.caller, connection_id, cursor=cursor,
                                                  limit=limit)
    return {"items": page.items, "next_cursor": page.next_cursor}


@bp.route("/connections/{connection_id}/dependents/{dependent_id}", methods=["PUT"],
          content_types=ANY_TYPES)
@view(bp)
def put_dependent(ctx: Ctx, connection_id: str, dependent_id: str) -> Response:
    dep, created = services().connections.put_dependent(ctx.caller, connection_id,
                                                         dependent_id, ctx.json())
    return json_response(dep, 201 if created else 200)


@bp.route("/connections/{connection_id}/dependents/{dependent_id}", methods=["DELETE"])
@view(bp)
def delete_dependent(ctx: Ctx, connection_id: str, dependent_id: str) -> Response:
    services().connections.delete_dependent(ctx.caller, connection_id, dependent_id)
    return json_response(None, 204)
