"""Bearer-token identity: verify a JWT against the configured issuer's JWKS.

Cloud stages point ``JWKS_URL`` at the Cognito user pool's ``/.well-known/jwks.json``; the local
stage points it at a ``file://`` JWKS that ``make run`` generates. Same code, different URL.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from chalicelib.errors import Unauthenticated
from chalicelib.settings import Settings

ALGORITHMS = ["RS256"]


@dataclass(frozen=True)
class Principal:
    user_id: str
    is_admin: bool
    groups: tuple[str, ...] = ()


_clients: dict[str, Any] = {}
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _client_class() -> Any:
    import jwt

    class _Client(jwt.PyJWKClient):
        """PyJWKClient that also reads a ``file://`` JWKS (the local stage's key pair).

        PyJWT only fetches http(s); the local issuer has no server, so its JWKS is a file.
        """

        def __init__(self, uri: str, **kwargs: Any) -> None:
            self._file = None
            if uri.startswith("file://"):
                from urllib.parse import urlparse
                from urllib.request import url2pathname

                self._file = url2pathname(urlparse(uri).path)
                uri = "https://jwks.invalid/"  # never fetched
            super().__init__(uri, **kwargs)

        def fetch_data(self) -> Any:
            if self._file is None:
                return super().fetch_data()
            import json

            with open(self._file, encoding="utf-8") as fh:
                data = json.load(fh)
            if self.jwk_set_cache is not None:
                self.jwk_set_cache.put(data)
            return data

    return _Client


def _jwks_client(url: str) -> Any:
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = _client_class()(url, cache_keys=True, lifespan=3600, timeout=5)
            _clients[url] = client
        return client


def authenticate(authorization: str | None, settings: Settings) -> Principal:
    """Return the caller for an ``Authorization`` header value, or raise ``Unauthenticated``."""
    import jwt

    if not authorization:
        raise Unauthenticated("missing bearer token", code="missing_token")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization must be 'Bearer <token>'", code="invalid_token")
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") not in ALGORITHMS:
            raise Unauthenticated("token algorithm not accepted", code="invalid_token")
        signing_key = _jwks_client(settings.jwks_url).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=ALGORITHMS,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            leeway=30,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired", code="token_expired") from None
    except jwt.PyJWKClientConnectionError:
        raise Unauthenticated("token issuer keys unavailable", code="invalid_token") from None
    except (jwt.PyJWTError, ValueError):
        raise Unauthenticated("invalid token", code="invalid_token") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 128:
        raise Unauthenticated("invalid token subject", code="invalid_token")
    groups_claim = claims.get("cognito:groups") or []
    groups = tuple(g for g in groups_claim if isinstance(g, str)) if isinstance(
        groups_claim, list
    ) else ()
    return Principal(user_id=sub, is_admin=settings.admin_group in groups, groups=groups)
