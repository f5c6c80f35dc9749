"""Local identity: a key pair generated once (kept out of git) and tokens signed with it.

`make token USER=alice [ADMIN=1]` prints a bearer token as its last line.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path

from devtools.localenv import AUDIENCE, ISSUER, JWT_DIR

KID = "local-1"


def ensure_keys(jwt_dir: Path = JWT_DIR) -> Path:
    """Create the local signing key and its JWKS if missing; return the private key path."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = jwt_dir / "private.pem"
    jwks = jwt_dir / "jwks.json"
    if private.exists() and jwks.exists():
        return private
    jwt_dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    private.write_bytes(pem)
    private.chmod(0o600)
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public_jwk.update({"kid": KID, "use": "sig", "alg": "RS256"})
    jwks.write_text(json.dumps({"keys": [public_jwk]}, indent=2))
    return private


def make_token(user: str, *, admin: bool = False, ttl: int = 12 * 3600,
               jwt_dir: Path = JWT_DIR, **overrides: object) -> str:
    import jwt

    private = ensure_keys(jwt_dir).read_bytes()
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + ttl,
        "token_use": "id", "jti": uuid.uuid4().hex,
        "cognito:username": user,
    }
    if admin:
        claims["cognito:groups"] = ["admins"]
    claims.update(overrides)
    return jwt.encode(claims, private, algorithm="RS256", headers={"kid": KID})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("user")
    parser.add_argument("--admin", action="store_true")
    parser.add_argument("--ttl", type=int, default=12 * 3600)
    args = parser.parse_args()
    print(f"# local token for {args.user!r}{' (admin)' if args.admin else ''}, "
          f"valid {args.ttl // 3600} h; use: -H \"Authorization: Bearer $TOKEN\"")
    print(make_token(args.user, admin=args.admin, ttl=args.ttl))


if __name__ == "__main__":
    main()
