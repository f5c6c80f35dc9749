"""The provider catalogue: readable by every user, changed by admins only, and a disabled
provider keeps its connections but takes no new ones."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import CANARY
from tests.support.builders import provider_body, unique

pytestmark = pytest.mark.integration

SEEDED = {"openai", "anthropic", "bedrock", "azure_openai", "google", "cohere", "custom"}
OPENAI_COMPATIBLE = {"mistral", "groq", "deepseek", "openrouter", "together"}


def _all_providers(api: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    path = "/providers?limit=100"
    while path:
        resp = api.get(path)
        assert resp.status_code == 200, resp.data
        out.update({p["id"]: p for p in resp.data["items"]})
        cursor = resp.data["next_cursor"]
        path = f"/providers?limit=100&cursor={cursor}" if cursor else ""
    return out


@pytest.fixture()
def admin(api: Any) -> Any:
    return api.as_user(unique("admin-"), admin=True)


@pytest.fixture()
def provider(admin: Any) -> dict[str, Any]:
    resp = admin.post("/providers", provider_body(unique("p")))
    assert resp.status_code == 201, resp.data
    return resp.data


def test_every_user_reads_the_seeded_catalogue(api):
    providers = _all_providers(api)
    assert SEEDED | OPENAI_COMPATIBLE <= set(providers)
    for pid in OPENAI_COMPATIBLE:
        assert providers[pid]["adapter"] == "openai"
        assert providers[pid]["base_url"].startswith("https://")
    bedrock = {f["name"]: f for f in providers["bedrock"]["credential_fields"]}
    assert bedrock["region"]["secret"] is False and bedrock["region"]["required"] is True
    assert bedrock["secret_access_key"]["secret"] is True
    assert bedrock["session_token"]["required"] is False
    assert providers["azure_openai"]["base_url_required"] is True
    assert providers["custom"]["base_url_required"] is True

    one = api.get("/providers/openai")
    assert one.status_code == 200
    assert one.headers["ETag"] == f'"v{one.data["version"]}"'
    assert one.data == providers["openai"]
    assert api.get("/providers/no-such-provider").status_code == 404
    assert api.get("/providers", auth=False).status_code == 401


def test_listing_pages_with_a_cursor(api):
    first = api.get("/providers?limit=3")
    assert len(first.data["items"]) == 3 and first.data["next_cursor"]
    second = api.get(f"/providers?limit=3&cursor={first.data['next_cursor']}")
    ids = [p["id"] for p in first.data["items"] + second.data["items"]]
    assert len(set(ids)) == 6
    assert ids == sorted(ids)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_only_admins_change_the_catalogue(api, provider, method):
    pid = provider["id"]
    path = "/providers" if method == "POST" else f"/providers/{pid}"
    body = None if method == "DELETE" else (
        provider_body(unique("p")) if method == "POST" else {"name": "hijacked"})
    resp = api.request(method, path, body)
    assert resp.status_code == 403, resp.data
    assert resp.data["error"]["code"] == "forbidden"
    assert api.get(f"/providers/{pid}").data == provider
    if method == "POST":
        assert api.get(f"/providers/{body['id']}").status_code == 404
    # Not even for a provider that does not exist (no existence oracle for non-admins).
    ghost = api.request(method, "/providers" if method == "POST" else "/providers/ghost", body)
    assert ghost.status_code == 403


def test_admin_lifecycle_with_etags_and_audit(api, admin):
    pid = unique("p")
    created = admin.post("/providers", provider_body(pid))
    assert created.status_code == 201, created.data
    assert created.headers["Location"] == f"/providers/{pid}"
    assert created.headers["ETag"] == '"v1"'
    assert created.data["enabled"] is True
    dup = admin.post("/providers", provider_body(pid))
    assert dup.status_code == 409 and dup.data["error"]["code"] == "already_exists"

    full = provider_body(pid, name="Acme v2", known_models=["acme-2"])
    del full["id"]
    replaced = admin.put(f"/providers/{pid}", full, headers={"If-Match": '"v1"'})
    assert replaced.status_code == 200, replaced.data
    assert replaced.headers["ETag"] == '"v2"'
    assert (replaced.data["name"], replaced.data["known_models"]) == ("Acme v2", ["acme-2"])
    stale = admin.put(f"/providers/{pid}", full, headers={"If-Match": '"v1"'})
    assert stale.status_code == 412

    patched = admin.patch(f"/providers/{pid}", {"description": "patched"})
    assert patched.status_code == 200, patched.data
    assert patched.data["description"] == "patched"
    assert patched.data["name"] == "Acme v2" and patched.data["version"] == 3
    # PUT replaces: what it leaves out goes back to its default.
    bare = admin.put(f"/providers/{pid}", full)
    assert bare.data["description"] is None

    assert admin.patch(f"/providers/{pid}", {"id": "renamed"}).data["error"]["field"] == "id"
    assert admin.delete(f"/providers/{pid}", headers={"If-Match": '"v1"'}).status_code == 412
    assert admin.delete(f"/providers/{pid}").status_code == 204
    assert api.get(f"/providers/{pid}").status_code == 404
    assert admin.delete(f"/providers/{pid}").status_code == 404

    events = [e for e in admin.get("/audit").data["items"] if e["target"] == f"provider:{pid}"]
    assert [e["action"] for e in reversed(events)] == [
        "provider.create", "provider.update", "provider.update", "provider.update",
        "provider.delete"]


def _field(fid: str = "api_key", **over: Any) -> dict[str, Any]:
    return {"name": fid, "label": "Key", "secret": True, "required": True, **over}


BAD_PROVIDERS: list[tuple[str, dict[str, Any], str]] = [
    ("id missing", {"id": ...}, "id"),
    ("id upper case", {"id": "Acme"}, "id"),
    ("id too short", {"id": "a"}, "id"),
    ("id with a dot", {"id": "acme.x"}, "id"),
    ("name missing", {"name": ...}, "name"),
    ("name empty", {"name": ""}, "name"),
    ("adapter unknown", {"adapter": "soap"}, "adapter"),
    ("base_url not http", {"base_url": "ftp://files.example.com"}, "base_url"),
    ("base_url type", {"base_url": 5}, "base_url"),
    ("no credential fields", {"credential_fields": []}, "credential_fields"),
    ("credential field name", {"credential_fields": [_field("Api Key")]},
     "credential_fields[0].name"),
    ("credential field pattern", {"credential_fields": [_field(pattern="([a-z]")]},
     "credential_fields[0].pattern"),
    ("credential field secret type", {"credential_fields": [_field(secret="yes")]},
     "credential_fields[0].secret"),
    ("credential field unknown key", {"credential_fields": [_field(hidden=True)]},
     "credential_fields[0].hidden"),
    ("no secret field", {"credential_fields": [_field(secret=False)]}, "credential_fields"),
    ("duplicate fields", {"credential_fields": [_field(), _field()]}, "credential_fields"),
    ("default timeout", {"default_settings": {"timeout_seconds": 0}},
     "default_settings.timeout_seconds"),
    ("default temperature range", {"default_settings": {"temperature_min": 2,
                                                        "temperature_max": 1}},
     "default_settings"),
    ("known models type", {"known_models": "gpt"}, "known_models"),
    ("enabled type", {"enabled": "no"}, "enabled"),
    ("unknown field", {"secret_sauce": True}, "secret_sauce"),
    ("no base_url anywhere", {"base_url": None}, "base_url"),
]


@pytest.mark.parametrize(("case", "over", "field"), BAD_PROVIDERS,
                         ids=[c[0] for c in BAD_PROVIDERS])
def test_bad_provider_input_is_400_naming_the_field(admin, case, over, field):
    pid = unique("p")
    body = provider_body(pid)
    for key, value in over.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    resp = admin.post("/providers", body)
    assert resp.status_code == 400, (case, resp.data)
    assert resp.data["error"]["field"] == field, (case, resp.data)
    assert admin.get(f"/providers/{body.get('id', pid)}").status_code == 404


def test_an_admin_added_provider_takes_connections_without_a_code_change(api, provider):
    resp = api.post("/connections", {"name": "acme", "provider": provider["id"],
                                     "credentials": {"api_key": CANARY}})
    assert resp.status_code == 201, resp.data
    assert resp.data["provider"] == provider["id"]
    bad = api.post("/connections", {"name": "acme2", "provider": provider["id"],
                                    "credentials": {"api_key": CANARY, "region": "x"}})
    assert bad.status_code == 400 and bad.data["error"]["field"] == "credentials.region"


def test_a_disabled_provider_keeps_its_connections_but_takes_no_new_ones(api, admin, provider):
    pid = provider["id"]
    body = {"name": "kept", "provider": pid, "credentials": {"api_key": CANARY}}
    kept = api.post("/connections", body)
    assert kept.status_code == 201, kept.data
    cid = kept.data["id"]

    off = admin.patch(f"/providers/{pid}", {"enabled": False})
    assert off.status_code == 200 and off.data["enabled"] is False
    assert api.get(f"/providers/{pid}").data["enabled"] is False

    assert [c["id"] for c in api.get("/connections").data["items"]] == [cid]
    assert api.get(f"/connections/{cid}").status_code == 200
    assert api.patch(f"/connections/{cid}", {"description": "still editable"}).status_code == 200

    refused = api.post("/connections", {**body, "name": "new"})
    assert refused.status_code == 422, refused.data
    assert refused.data["error"]["code"] == "provider_disabled"
    assert refused.data["error"]["field"] == "provider"
    imported = api.post("/connections/import", {
        "format": "llm-connections-export", "version": 1,
        "connections": [{"name": "imp", "provider": pid}]})
    assert imported.status_code == 422
    assert imported.data["error"]["code"] == "provider_disabled"
    assert imported.data["error"]["field"] == "connections[0].provider"
    other = api.post("/connections", {"name": "other", "provider": "openai",
                                      "credentials": {"api_key": CANARY}}).data["id"]
    moved = api.patch(f"/connections/{other}", {"provider": pid,
                                                "credentials": {"api_key": CANARY}})
    assert moved.status_code == 422 and moved.data["error"]["code"] == "provider_disabled"
    assert len(api.get("/connections").data["items"]) == 2

    assert admin.patch(f"/providers/{pid}", {"enabled": True}).status_code == 200
    assert api.post("/connections", {**body, "name": "new"}).status_code == 201


def test_a_deleted_provider_leaves_its_connections_readable(api, admin, provider):
    resp = api.post("/connections", {"name": "orphan", "provider": provider["id"],
                                     "credentials": {"api_key": CANARY}})
    cid = resp.data["id"]
    # The API refuses to delete a provider in use (409; ?force=true disables it instead);
    # one removed before that guard existed, or by an operator in the table, behaves so:
    assert admin.delete(f"/providers/{provider['id']}").status_code == 409
    from chalicelib.data.models import ProviderModel

    ProviderModel.get("provider", provider["id"]).delete()
    assert api.get(f"/connections/{cid}").status_code == 200
    assert [c["id"] for c in api.get("/connections").data["items"]] == [cid]
    patched = api.patch(f"/connections/{cid}", {"description": "x"})
    assert patched.status_code == 422
    assert patched.data["error"]["code"] == "provider_disabled"
    assert api.delete(f"/connections/{cid}").status_code == 204
