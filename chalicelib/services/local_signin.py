"""The local stage's sign-in: a short-lived RS256 token for a chosen user, signed with the key
`make token` uses. The route that calls this exists only in the local stage (app.py registers
it from ``STAGE``), and settings refuse ``LOCAL_SIGNIN_KEY_FILE`` in any other stage."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from chalicelib.errors import InvalidInput, NotFound
from chalicelib.settings import Settings

USER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
TOKEN_SECONDS = 3600


def _kid(settings: Settings) -> str | None:
    """The key id of the local JWKS (a file), so the token names the key that checks it."""
    url = urlparse(settings.jwks_url)
    if url.scheme != "file":
        return None
    keys = json.loads(Path(unquote(url.path)).read_text()).get("keys") or [{}]
    kid = keys[0].get("kid")
    return str(kid) if kid else None


def mint(settings: Settings, body: Any) -> dict[str, Any]:
    """``{"user": "alice", "admin": false}`` to ``{"id_token", "expires_at"}``."""
    if settings.stage != "local" or not settings.local_signin_key_file:
        raise NotFound("no such route")
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object", field="body")
    user = body.get("user")
    if not isinstance(user, str) or not USER_PATTERN.fullmatch(user):
        raise InvalidInput("user must be 1-64 letters, digits or . _ @ - (starting with a "
                           "letter or digit)", field="user")
    admin = body.get("admin", False)
    if not isinstance(admin, bool):
        raise InvalidInput("admin must be true or false", field="admin")
    import jwt

    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user, "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "iat": now,
        "exp": now + TOKEN_SECONDS, "token_use": "id", "jti": uuid.uuid4().hex,
        "cognito:username": user,
    }
    if admin:
        claims["cognito:groups"] = [settings.admin_group]
    key = Path(settings.local_signin_key_file).read_bytes()
    kid = _kid(settings)
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid} if kid else None)
    return {"id_token": token, "expires_at": now + TOKEN_SECONDS}
