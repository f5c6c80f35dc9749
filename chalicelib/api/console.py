"""The web console: one page and its static files, served by this same app (same origin, no
CORS, no second deployment). The page speaks only the public JSON API.

Static files live in ``chalicelib/console/static`` so Chalice packages them with the code.
``index.html`` names each asset with its content hash (``assets/app.js?v=<hash>``): a hashed
URL is cached for a year, the page itself is revalidated with its ETag on every load.
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.http import Ctx, view
from chalicelib.errors import NotFound
from chalicelib.settings import Settings

bp = Blueprint(__name__)

STATIC = Path(__file__).resolve().parent.parent / "console" / "static"
_ASSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".json": "application/json"}
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    body: str
    content_type: str
    digest: str


def _asset(body: str, content_type: str) -> Asset:
    return Asset(body, content_type, hashlib.sha256(body.encode()).hexdigest()[:16])


def _load(path: Path) -> Asset:
    ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "text/plain"
    return _asset(path.read_bytes().decode("utf-8"), ctype)


@lru_cache(maxsize=1)
def assets() -> dict[str, Asset]:
    """Every static file under its URL name (``vendor/x.js`` for files in sub-folders)."""
    out: dict[str, Asset] = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file() and path.name != "index.html":
            out[path.relative_to(STATIC).as_posix().replace("/", "--")] = _load(path)
    return out


@lru_cache(maxsize=8)
def index_html(base: str) -> Asset:
    """index.html with every ``{{asset:name}}`` replaced by the asset's hashed URL and
    ``{{base}}`` by ``base`` (one per stage prefix, so cached by it)."""
    table = assets()

    def hashed(m: re.Match[str]) -> str:
        name = m.group(1).replace("/", "--")
        return f"assets/{name}?v={table[name].digest}"

    page = (STATIC / "index.html").read_text(encoding="utf-8")
    body = re.sub(r"\{\{asset:([^}]+)\}\}", hashed, page)
    return _asset(body.replace("{{base}}", html.escape(base, quote=True)), _TYPES[".html"])


def security_headers(settings: Settings) -> dict[str, str | list[str]]:
    """Strict CSP: scripts and styles from this origin only, nothing inline, no eval, no
    framing; the only other host the page may call is the Cognito hosted UI's token endpoint."""
    connect = "'self'" + (f" {settings.cognito_domain_url}" if settings.cognito_domain_url
                          else "")
    csp = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
           f"connect-src {connect}; font-src 'self'; manifest-src 'self'; base-uri 'self'; "
           "form-action 'self'; frame-ancestors 'none'")
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }


def _base_path(ctx: Ctx) -> str:
    """The path the browser used for this app's root: ``/api`` behind API Gateway's stage,
    empty on a custom domain or locally (API Gateway passes the full path in the context)."""
    full = str((ctx.request.context or {}).get("path") or "")
    resource = ctx.request.path or ""
    if full.endswith(resource) and resource:
        return full[: len(full) - len(resource)].rstrip("/")
    return ""


def _static(ctx: Ctx, asset: Asset, cache: str) -> Response:
    etag = f'"{asset.digest}"'
    headers: dict[str, str | list[str]] = {
        **security_headers(ctx.settings), "ETag": etag, "Cache-Control": cache,
        "Content-Type": asset.content_type}
    if (ctx.header("if-none-match") or "").strip() == etag:
        return Response(body="", status_code=304, headers=headers)
    return Response(body=asset.body, status_code=200, headers=headers)


@bp.route("/", methods=["GET"])
@view(bp, auth=False)
def root(ctx: Ctx) -> Response:
    return Response(body="", status_code=302,
                    headers={"Location": f"{_base_path(ctx)}/console",
                             "Cache-Control": "no-cache"})


@bp.route("/console", methods=["GET"])
@view(bp, auth=False)
def console_page(ctx: Ctx) -> Response:
    # The base URL makes the page's relative asset and API paths right under any stage prefix.
    return _static(ctx, index_html(f"{_base_path(ctx)}/console/"), "no-cache")


@bp.route("/console/assets/{name}", methods=["GET"])
@view(bp, auth=False)
def console_asset(ctx: Ctx, name: str) -> Response:
    asset = assets().get(name) if _ASSET_NAME.fullmatch(name) else None
    if asset is None:
        raise NotFound("no such file")
    cache = IMMUTABLE if ctx.query("v") == asset.digest else "no-cache"
    return _static(ctx, asset, cache)


@bp.route("/console/config.json", methods=["GET"])
@view(bp, auth=False)
def console_config(ctx: Ctx) -> Response:
    return Response(body=config_body(ctx.settings), status_code=200,
                    headers={**security_headers(ctx.settings), "Cache-Control": "no-cache"})


def config_body(s: Settings) -> dict[str, Any]:
    """How the page signs in: the local minter (local stage), Cognito's hosted UI, or a pasted
    token (an external OIDC issuer the page knows nothing about)."""
    auth: dict[str, Any]
    if s.stage == "local" and s.local_signin_key_file:
        auth = {"mode": "local"}
    elif s.cognito_domain_url and s.cognito_client_id:
        auth = {"mode": "cognito", "domain": s.cognito_domain_url,
                "client_id": s.cognito_client_id, "scopes": ["openid", "email", "profile"]}
    else:
        auth = {"mode": "token"}  # paste a bearer token (an external OIDC issuer)
    return {"stage": s.stage, "version": s.version, "auth": auth}
