"""Credential-set routes: several named keys per connection (rotation, failover, revocation).
Every write takes If-Match (the connection's ETag) and answers with the connection's new one."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.http import ANY_TYPES, Ctx, etag, json_response, parse_if_match, services, view

bp = Blueprint(__name__)


def _sets(body: dict[str, Any], status: int = 200) -> Response:
    return json_response(body, status, {"ETag": etag(body["version"])})


@bp.route("/connections/{connection_id}/credentials", methods=["GET"])
@view(bp)
def list_sets(ctx: Ctx, connection_id: str) -> Response:
    return _sets(services().credential_sets.list_sets(ctx.caller, connection_id))


@bp.route("/connections/{connection_id}/credentials", methods=["POST"],
          content_types=ANY_TYPES)
@view(bp)
def add_set(ctx: Ctx, connection_id: str) -> Response:
    body = ctx.json()
    if_match = parse_if_match(ctx.header("if-match"))
    return _sets(services().credential_sets.add(ctx.caller, connection_id, body, if_match), 201)


@bp.route("/connections/{connection_id}/credentials/order", methods=["PUT"],
          content_types=ANY_TYPES)
@view(bp)
def reorder_sets(ctx: Ctx, connection_id: str) -> Response:
    body = ctx.json()
    if_match = parse_if_match(ctx.header("if-match"))
    return _sets(services().credential_sets.reorder(ctx.caller, connection_id, body, if_match))


@bp.route("/connections/{connection_id}/credentials/{name}/test", methods=["POST"],
          content_types=ANY_TYPES)
@view(bp)
def test_set(ctx: Ctx, connection_id: str, name: str) -> dict[str, Any]:
    return services().credential_sets.test(ctx.caller, connection_id, name,
                                           ctx.json(required=False))


@bp.route("/connections/{connection_id}/credentials/{name}/promote", methods=["POST"],
          content_types=ANY_TYPES)
@view(bp)
def promote_set(ctx: Ctx, connection_id: str, name: str) -> Response:
    if_match = parse_if_match(ctx.header("if-match"))
    return _sets(services().credential_sets.promote(ctx.caller, connection_id, name, if_match))


@bp.route("/connections/{connection_id}/credentials/{name}/revoke", methods=["POST"],
          content_types=ANY_TYPES)
@view(bp)
def revoke_set(ctx: Ctx, connection_id: str, name: str) -> Response:
    if_match = parse_if_match(ctx.header("if-match"))
    return _sets(services().credential_sets.revoke(ctx.caller, connection_id, name, if_match))


@bp.route("/connections/{connection_id}/credentials/{name}", methods=["DELETE"])
@view(bp)
def remove_set(ctx: Ctx, connection_id: str, name: str) -> Response:
    if_match = parse_if_match(ctx.header("if-match"))
    return _sets(services().credential_sets.remove(ctx.caller, connection_id, name, if_match))
