"""The console's server side: the page and its assets (headers, caching), its config, the
local sign-in (local stage only), and the draft test an edit form runs before saving."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CANARY
from tests.support.fakes import fake_credentials, fake_key

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _get(api, path: str, headers: dict[str, str] | None = None):
    return api._client.http.request("GET", path, headers=headers or {})


def test_root_redirects_to_the_console(api):
    resp = _get(api, "/")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/console"


def test_console_page_has_strict_security_headers(api):
    resp = _get(api, "/console")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    csp = resp.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-cache"
    page = resp.body.decode()
    # No inline script or style at all (the CSP would block it anyway).
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert "style=" not in page and "<style" not in page
    assert '<base href="/console/">' in page


def test_assets_are_hashed_immutable_and_revalidated_by_etag(api):
    page = _get(api, "/console").body.decode()
    urls = re.findall(r'(?:src|href)="(assets/[^"]+)"', page)
    assert any(u.startswith("assets/app.js?v=") for u in urls)
    assert any(u.startswith("assets/app.css?v=") for u in urls)
    for url in urls:
        resp = _get(api, f"/console/{url}")
        assert resp.status_code == 200, url
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        etag = resp.headers["ETag"]
        again = _get(api, f"/console/{url}", {"If-None-Match": etag})
        assert again.status_code == 304 and not again.body
    # A stale or missing hash is never cached for long.
    stale = _get(api, "/console/assets/app.js?v=0000")
    assert stale.status_code == 200 and stale.headers["Cache-Control"] == "no-cache"
    assert stale.headers["Content-Type"].startswith("text/javascript")


@pytest.mark.parametrize("name", ["nope.js", "..%2Fapp.py", "app.py", "%2E%2E"])
def test_unknown_or_traversing_asset_names_are_404(api, name):
    resp = _get(api, f"/console/assets/{name}")
    assert resp.status_code == 404
    assert json.loads(resp.body)["error"]["code"] == "not_found"


def test_config_names_the_local_sign_in_in_the_local_stage(api):
    resp = _get(api, "/console/config.json")
    body = json.loads(resp.body)
    assert body["stage"] == "local" and body["auth"] == {"mode": "local"}


def test_cloud_config_names_cognito_and_the_csp_allows_only_its_domain(env):
    from dataclasses import replace

    from chalicelib.api.console import config_body, security_headers
    from chalicelib.settings import get_settings

    domain = "https://llmc-dev.auth.eu-west-1.amazoncognito.com"
    cloud = replace(get_settings(), stage="dev", local_signin_key_file="",
                    cognito_domain_url=domain, cognito_client_id="abc123")
    assert config_body(cloud)["auth"] == {"mode": "cognito", "domain": domain,
                                          "client_id": "abc123",
                                          "scopes": ["openid", "email", "profile"]}
    csp = str(security_headers(cloud)["Content-Security-Policy"])
    assert f"connect-src 'self' {domain};" in csp
    bare = replace(cloud, cognito_domain_url="", cognito_client_id="")
    assert config_body(bare)["auth"] == {"mode": "token"}
    assert "connect-src 'self';" in str(security_headers(bare)["Content-Security-Policy"])


def test_local_sign_in_key_file_is_refused_outside_the_local_stage(monkeypatch, env):
    from chalicelib.settings import SettingsError, get_settings

    monkeypatch.setenv("STAGE", "dev")
    monkeypatch.delenv("OUTBOUND_ALLOW_HOSTS")
    monkeypatch.delenv("OUTBOUND_ALLOW_HTTP")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="LOCAL_SIGNIN_KEY_FILE"):
            get_settings()
    finally:
        monkeypatch.setenv("STAGE", "local")
        get_settings.cache_clear()


def test_local_sign_in_mints_a_token_the_api_accepts(env):
    from chalicelib.services.identity import authenticate
    from chalicelib.services.local_signin import mint
    from chalicelib.settings import get_settings

    settings = get_settings()
    out = mint(settings, {"user": "carol", "admin": True})
    principal = authenticate(f"Bearer {out['id_token']}", settings)
    assert principal.user_id == "carol" and principal.is_admin
    plain = mint(settings, {"user": "dave"})
    assert not authenticate(f"Bearer {plain['id_token']}", settings).is_admin


@pytest.mark.parametrize("body, field", [
    ({}, "user"), ({"user": ""}, "user"), ({"user": "a b"}, "user"),
    ({"user": "x" * 65}, "user"), ({"user": "ok", "admin": "yes"}, "admin"), ([], "body"),
])
def test_local_sign_in_refuses_bad_input(env, body, field):
    from chalicelib.errors import InvalidInput
    from chalicelib.services.local_signin import mint
    from chalicelib.settings import get_settings

    with pytest.raises(InvalidInput) as exc:
        mint(get_settings(), body)
    assert exc.value.field == field


def test_local_sign_in_refused_outside_the_local_stage(env):
    from dataclasses import replace

    from chalicelib.errors import NotFound
    from chalicelib.services.local_signin import mint
    from chalicelib.settings import get_settings

    with pytest.raises(NotFound):
        mint(replace(get_settings(), stage="dev"), {"user": "mallory", "admin": True})


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1:8000", True), ("localhost:8000", True), ("[::1]:8000", True),
    ("127.0.0.1", True), ("attacker.example", False), ("attacker.example:8000", False),
    ("127.0.0.1.nip.io:8000", False), ("", False),
])
def test_local_sign_in_only_for_requests_addressed_to_loopback(host, allowed):
    # DNS rebinding: a page on attacker.example rebound to 127.0.0.1 is same-origin with the
    # local stack, but its requests still name its own host.
    from chalicelib.api.console_local import LOOPBACK_HOSTS, _host_name

    assert (_host_name(host) in LOOPBACK_HOSTS) is allowed


ROUTES = "import app, json; print(json.dumps(sorted(app.app.routes)))"


@pytest.mark.parametrize("stage, present", [("local", True), ("dev", False), ("prod", False),
                                            (None, False)])
def test_local_sign_in_route_exists_only_in_the_local_stage(stage, present):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    if stage:
        env["STAGE"] = stage
    out = subprocess.run([sys.executable, "-c", ROUTES], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    routes = json.loads(out.stdout)
    assert ("/console/local-signin" in routes) is present
    assert "/console" in routes


# ----------------------------------------------------------------- draft test of an edit


def _create(api, fake_provider, directive="ok"):
    key = fake_key("openai", directive)
    resp = api.post("/connections", {
        "name": f"draft {directive} {key[-6:]}", "provider": "custom",
        "base_url": fake_provider.url("openai"),
        "credentials": fake_credentials("openai", key), "default_model": "gpt-4o"})
    assert resp.status_code == 201, resp.data
    return resp.data


def test_draft_test_uses_stored_secret_and_records_nothing(api, fake_provider):
    # Given a saved connection
    conn = _create(api, fake_provider)
    # When its edit form tests a new default model, leaving the secret empty (kept)
    resp = api.post(f"/connections/{conn['id']}/test",
                    {"changes": {"default_model": "gpt-4o-mini", "settings": {"max_retries": 0}}})
    # Then the test ran with the stored key and the draft's model
    assert resp.status_code == 200, resp.data
    assert resp.data["status"] == "active"
    assert resp.data["checks"]["model_access"]["ok"] is True
    # And nothing was recorded: status, history and version are unchanged
    after = api.get(f"/connections/{conn['id']}").data
    assert after["status"] == "untested" and after["version"] == conn["version"]
    assert after["default_model"] == "gpt-4o"
    assert api.get(f"/connections/{conn['id']}/tests").data["items"] == []
    audit = api.get("/audit").data["items"]
    assert any(e["action"] == "connection.test_draft" for e in audit)


def test_draft_test_with_a_new_base_url_needs_the_secret_again(api, fake_provider):
    conn = _create(api, fake_provider)
    resp = api.post(f"/connections/{conn['id']}/test",
                    {"changes": {"base_url": fake_provider.url("openai") + "/"}})
    # Same URL but for a trailing slash: not a change of endpoint
    assert resp.status_code == 200, resp.data
    moved = api.post(f"/connections/{conn['id']}/test",
                     {"changes": {"base_url": fake_provider.url("azure_openai")}})
    assert moved.status_code == 400
    assert moved.data["error"]["field"] == "changes.credentials.api_key"


def test_draft_test_with_a_new_key_tests_that_key(api, fake_provider):
    conn = _create(api, fake_provider)
    resp = api.post(f"/connections/{conn['id']}/test",
                    {"changes": {"credentials": {"api_key": fake_key("openai", "401")},
                                 "settings": {"max_retries": 0}}})
    assert resp.status_code == 200
    assert resp.data["status"] == "error"
    assert resp.data["error"]["code"] == "invalid_api_key"
    assert resp.data["checks"]["authentication"]["ok"] is False


@pytest.mark.parametrize("changes, field", [
    ({"nope": 1}, "changes.nope"),
    ({"settings": {"timeout_seconds": 0}}, "changes.settings.timeout_seconds"),
    ({"credentials": {"api_key": "bad key with spaces"}}, "credentials.api_key"),
    ({}, "changes"),
])
def test_draft_test_bad_changes_name_the_field(api, fake_provider, changes, field):
    conn = _create(api, fake_provider)
    resp = api.post(f"/connections/{conn['id']}/test", {"changes": changes})
    assert resp.status_code == 400, resp.data
    assert resp.data["error"]["field"] == field


def test_draft_test_of_another_users_connection_is_404(api, fake_provider):
    conn = _create(api, fake_provider)
    other = api.as_user("someone-else")
    resp = other.post(f"/connections/{conn['id']}/test", {"changes": {"default_model": "x"}})
    assert resp.status_code == 404


def test_draft_test_never_shows_the_secret(api, fake_provider, app_logs):
    conn = _create(api, fake_provider)
    resp = api.post(f"/connections/{conn['id']}/test",
                    {"changes": {"credentials": {"api_key": CANARY}}})
    assert CANARY not in json.dumps(resp.data)
    assert CANARY not in app_logs()
