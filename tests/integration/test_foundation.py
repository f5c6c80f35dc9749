"""Foundation: identity, the error model, health, the API description, the audit trail."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from devtools.token import make_token

pytestmark = pytest.mark.integration


def test_health_answers_without_token_and_reports_dependencies(api):
    # Given no token / When health is asked / Then 200 with version and both checks
    resp = api.get("/health", auth=False)
    assert resp.status_code == 200
    assert resp.data["version"]
    assert resp.data["checks"]["dynamodb"]["ok"] is True
    assert resp.data["checks"]["kms"]["ok"] is True


def test_openapi_documents_every_route(api):
    from app import app
    from chalicelib.api.openapi import console_route, undocumented_routes

    resp = api.get("/openapi.json", auth=False)
    assert resp.status_code == 200
    doc = resp.data
    assert doc["openapi"].startswith("3.")
    assert undocumented_routes() == []
    for path, methods in app.routes.items():
        if console_route(path):  # the console's page and files are not JSON API
            assert path not in doc["paths"], path
            continue
        for method in methods:
            assert method.lower() in doc["paths"][path], (method, path)
    assert "ConnectionCreate" in doc["components"]["schemas"]


@pytest.mark.parametrize("header", [
    None,
    "Bearer",
    "Basic abc",
    "Bearer not.a.jwt",
])
def test_missing_or_malformed_tokens_are_401(api, header):
    headers = {"authorization": header} if header else {}
    resp = api.get("/connections", auth=False, headers=headers)
    assert resp.status_code == 401
    assert resp.data["error"]["code"] in ("missing_token", "invalid_token")


def test_expired_token_is_401(api, jwt_dir):
    token = make_token("alice", jwt_dir=jwt_dir, exp=int(time.time()) - 3600,
                       iat=int(time.time()) - 7200)
    resp = api.get("/connections", auth=False, headers={"authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    assert resp.data["error"]["code"] == "token_expired"


def test_wrong_audience_and_issuer_are_401(api, jwt_dir):
    for claim in ({"aud": "someone-else"}, {"iss": "https://evil.example"}):
        token = make_token("alice", jwt_dir=jwt_dir, **claim)
        resp = api.get("/connections", auth=False, headers={"authorization": f"Bearer {token}"})
        assert resp.status_code == 401, claim


def test_wrongly_signed_token_is_401(api, tmp_path):
    from devtools.token import ensure_keys

    other = tmp_path / "other"
    ensure_keys(other)
    token = make_token("alice", jwt_dir=other)
    resp = api.get("/connections", auth=False, headers={"authorization": f"Bearer {token}"})
    assert resp.status_code == 401


def test_alg_none_token_is_401(api):
    now = int(time.time())
    from devtools.localenv import AUDIENCE, ISSUER

    token = jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now,
                        "exp": now + 600, "cognito:groups": ["admins"]}, None, algorithm="none",
                       headers={"kid": "local-1"})
    resp = api.get("/connections", auth=False, headers={"authorization": f"Bearer {token}"})
    assert resp.status_code == 401


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_hs256_token_signed_with_public_key_is_401(api, jwt_dir):
    # The classic key-confusion attack: HMAC-SHA256 keyed with the RSA public key.
    import hashlib
    import hmac

    from devtools.localenv import AUDIENCE, ISSUER

    public = (jwt_dir / "jwks.json").read_bytes()
    now = int(time.time())
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "local-1"}).encode())
    body = _b64(json.dumps({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now,
                            "exp": now + 600}).encode())
    sig = _b64(hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest())
    resp = api.get("/connections", auth=False,
                   headers={"authorization": f"Bearer {head}.{body}.{sig}"})
    assert resp.status_code == 401


def test_valid_token_is_accepted(api):
    resp = api.get("/connections")
    assert resp.status_code == 200
    assert resp.data == {"items": [], "next_cursor": None}


def test_error_model_for_bad_json_type_size_and_method(api):
    bad_json = api.post("/connections", raw=b"{not json")
    assert bad_json.status_code == 400
    assert bad_json.data["error"]["code"] == "invalid_json"
    assert bad_json.data["error"]["field"] == "body"
    assert bad_json.data["error"]["request_id"]

    not_json = api.post("/connections", raw=b"name=x",
                        headers={"content-type": "text/plain"})
    assert not_json.status_code == 415
    assert not_json.data["error"]["code"] == "unsupported_media_type"

    too_big = api.post("/connections", raw=b'{"name": "' + b"x" * (65 * 1024) + b'"}')
    assert too_big.status_code == 413
    assert too_big.data["error"]["code"] == "payload_too_large"

    wrong_method = api.put("/connections", {"name": "x"})
    assert wrong_method.status_code == 405
    assert set(wrong_method.data["error"]) >= {"code", "message"}


def test_list_parameters_are_validated(api):
    for query in ("limit=0", "limit=101", "limit=abc", "cursor=%21%21"):
        resp = api.get(f"/connections?{query}")
        assert resp.status_code == 400, query
        assert resp.data["error"]["field"] in ("limit", "cursor")


def test_denied_attempts_are_audited(api):
    api.get("/connections", auth=False)  # anonymous: recorded under "anonymous"
    other = api.as_user(api.user + "-other")
    created = api.post("/connections", {
        "name": "mine", "provider": "openai", "credentials": {"api_key": "sk-abcdefghijklmnop"}})
    assert created.status_code == 201
    cid = created.data["id"]
    assert other.get(f"/connections/{cid}").status_code == 404
    events = other.get("/audit").data["items"]
    denied = [e for e in events if e["outcome"] == "denied"]
    assert denied and denied[0]["target"] == f"connection:{cid}"
    mine = api.get("/audit").data["items"]
    assert [e["action"] for e in mine][:1] == ["connection.create"]
    assert mine[0]["changed_fields"] == ["credentials", "name", "provider"]


def test_unexpected_errors_are_500_with_request_id_and_no_internals(api, monkeypatch):
    from chalicelib.services.connections import ConnectionService

    def boom(*_a, **_k):
        raise RuntimeError("internal detail /secret/path")

    monkeypatch.setattr(ConnectionService, "list", boom)
    resp = api.get("/connections")
    assert resp.status_code == 500
    assert resp.data["error"]["code"] == "internal_error"
    assert resp.data["error"]["request_id"]
    assert "secret/path" not in resp.body.decode()


def test_an_unavailable_aws_dependency_is_503_with_retry_after(api, monkeypatch):
    # Given DynamoDB answering 503 even after the SDK's retries
    from botocore.exceptions import ClientError

    from chalicelib.services.connections import ConnectionService

    def down(*_a, **_k):
        try:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, "Query")
        except ClientError as exc:
            raise RuntimeError("wrapped by the data layer") from exc

    monkeypatch.setattr(ConnectionService, "list", down)
    # When a request needs it / Then a 503 the client can retry, in the error shape
    resp = api.get("/connections")
    assert resp.status_code == 503
    assert resp.data["error"]["code"] == "service_unavailable"
    assert resp.headers["retry-after"] == "2"


def test_bootstrap_runs_twice_without_already_exists(stack_env):
    # `make run` twice in a row, or a bootstrap against a running emulator: no crash, and
    # nothing is created twice.
    import boto3

    from devtools import localstack

    messages: list[str] = []
    localstack.bootstrap(stack_env, log=messages.append)
    assert messages == []  # everything already existed
    topic_subs = boto3.client("sns").list_subscriptions()["Subscriptions"]
    inbox = [s for s in topic_subs if s["Endpoint"].endswith("llmc-local-alerts-inbox")]
    assert len(inbox) == 1
