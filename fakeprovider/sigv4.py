"""SigV4 verification: recompute the signature of a received request with botocore."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fakeprovider.wire import Request

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<sig>[0-9a-fA-F]+)\s*$"
)
_CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/")


@dataclass(frozen=True)
class SigV4Header:
    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def access_key_of(authorization: str | None) -> str | None:
    """The access key id in a SigV4 Authorization header, even a malformed one."""
    if not authorization or not authorization.startswith("AWS4-HMAC-SHA256"):
        return None
    m = _CREDENTIAL_RE.search(authorization)
    return m.group(1) if m else None


def parse_authorization(authorization: str | None) -> SigV4Header | None:
    """Parse a SigV4 Authorization header; None if it is not one or is malformed."""
    if not authorization:
        return None
    m = _AUTH_RE.match(authorization.strip())
    if not m:
        return None
    scope = m["cred"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        return None
    access_key, date, region, service, _ = scope
    return SigV4Header(
        access_key, date, region, service, tuple(m["signed"].lower().split(";")), m["sig"].lower()
    )


def expected_signature(req: Request, auth: SigV4Header, secret: str, service: str) -> str | None:
    """The signature a client holding ``secret`` would have sent; None if not computable."""
    amz_date = req.header("x-amz-date")
    if not amz_date or amz_date[:8] != auth.date:
        return None
    url = f"http://{req.host}{req.raw_path}" + (f"?{req.raw_query}" if req.raw_query else "")
    aws_req = AWSRequest(method=req.method, url=url, data=req.body)
    for name in auth.signed_headers:
        values = req.headers.get_all(name)
        if not values:
            return None
        for value in values:
            aws_req.headers[name] = value
    aws_req.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(auth.access_key, secret), service, auth.region)
    canonical = signer.canonical_request(aws_req)
    return signer.signature(signer.string_to_sign(aws_req, canonical), aws_req)


def signature_matches(req: Request, auth: SigV4Header, secret: str, service: str) -> bool:
    expected = expected_signature(req, auth, secret, service)
    return expected is not None and hmac.compare_digest(expected, auth.signature)
