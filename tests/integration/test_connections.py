"""Connections API: CRUD, listing, masking, partial credential updates, rotation, dependents,
export/import, access control, bad input, and what each request costs in AWS calls."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import CANARY, openai_body
from tests.support.aws_calls import count_aws_calls
from tests.support.builders import (
    BEDROCK_SECRET,
    bedrock_body,
    caller,
    ddb,
    set_raw,
    table,
    unique,
)

pytestmark = pytest.mark.integration

MASK = "\u2022" * 8
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem",
                   "TransactWriteItems"}


def _create(api: Any, body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    resp = api.post("/connections", body or openai_body(**kw))
    assert resp.status_code == 201, resp.data
    return resp.data


def _ids(api: Any, query: str = "") -> list[str]:
    resp = api.get(f"/connections{query}")
    assert resp.status_code == 200, resp.data
    return [c["id"] for c in resp.data["items"]]


def _open(cid: str) -> dict[str, str]:
    from chalicelib.api.deps import services
    from chalicelib.data.models import ConnectionModel

    return services().connections.open_secrets(ConnectionModel.get(cid, consistent_read=True))


# -- create / read / update / delete ---------------------------------------------------------


def test_create_answers_201_with_location_etag_and_no_secret(api):
    resp = api.post("/connections", openai_body("Prod", description="main key",
                                                settings={"temperature": 0.2}))
    assert resp.status_code == 201, resp.data
    conn = resp.data
    assert resp.headers["Location"] == f"/connections/{conn['id']}"
    assert resp.headers["ETag"] == '"v1"'
    assert CANARY not in resp.body.decode()
    assert conn["owner"] == api.user
    assert conn["name"] == "Prod"
    assert conn["provider"] == "openai"
    assert conn["credentials_masked"] == {"api_key": MASK + CANARY[-4:]}
    assert conn["settings"] == {"timeout_seconds": 30, "max_retries": 3, "temperature": 0.2}
    assert conn["status"] == "untested"
    assert conn["needs_credentials"] is False
    assert conn["rotation_due"] is False
    assert conn["version"] == 1
    got = api.get(resp.headers["Location"])
    assert got.status_code == 200
    assert got.headers["ETag"] == '"v1"'
    assert got.data == conn


def test_secrets_shorter_than_12_chars_show_the_mask_only(api):
    short = _create(api, openai_body("short", key="sk-12345678"))         # 11 characters
    exact = _create(api, openai_body("exact", key="sk-123456789"))        # 12 characters
    assert short["credentials_masked"]["api_key"] == MASK
    assert exact["credentials_masked"]["api_key"] == MASK + "6789"


def test_list_is_sorted_by_name_case_insensitively_and_paginated(api):
    for name in ("delta", "Alpha", "echo", "charlie", "Bravo"):
        _create(api, name=name)
    names: list[str] = []
    cursors: list[str] = []
    path = "/connections?limit=2"
    for _page in range(5):
        resp = api.get(path)
        assert resp.status_code == 200, resp.data
        assert len(resp.data["items"]) <= 2
        names += [c["name"] for c in resp.data["items"]]
        cursor = resp.data["next_cursor"]
        if cursor is None:
            break
        cursors.append(cursor)
        path = f"/connections?limit=2&cursor={cursor}"
    assert names == ["Alpha", "Bravo", "charlie", "delta", "echo"]
    assert len(cursors) == 2
    # Opaque, and bound to its listing: another user cannot replay it.
    assert all(api.user not in c and "charlie" not in c for c in cursors)
    other = api.as_user(api.user + "-other")
    resp = other.get(f"/connections?limit=2&cursor={cursors[0]}")
    assert resp.status_code == 400
    assert resp.data["error"]["field"] == "cursor"


def test_admin_lists_another_owner_and_users_cannot(api):
    cid = _create(api)["id"]
    admin = api.as_user(unique("admin-"), admin=True)
    resp = admin.get(f"/connections?owner={api.user}")
    assert resp.status_code == 200
    assert [c["id"] for c in resp.data["items"]] == [cid]
    assert _ids(admin) == []  # without owner=, an admin sees their own
    other = api.as_user(api.user + "-other")
    denied = other.get(f"/connections?owner={api.user}")
    assert denied.status_code == 404
    assert other.get(f"/connections?owner={other.user}").status_code == 200


def test_patch_changes_named_fields_and_bumps_etag(api):
    cid = _create(api, settings={"max_tokens": 100})["id"]
    resp = api.patch(f"/connections/{cid}", {"name": "Renamed", "description": "d",
                                             "settings": {"temperature": 1.0}},
                     headers={"If-Match": '"v1"'})
    assert resp.status_code == 200, resp.data
    assert resp.headers["ETag"] == '"v2"'
    conn = resp.data
    assert conn["name"] == "Renamed" and conn["description"] == "d"
    assert conn["settings"]["max_tokens"] == 100 and conn["settings"]["temperature"] == 1.0
    assert conn["default_model"] == "gpt-4o"
    stale = api.patch(f"/connections/{cid}", {"name": "x"}, headers={"If-Match": '"v1"'})
    assert stale.status_code == 412
    assert api.get(f"/connections/{cid}").data["name"] == "Renamed"
    # The old name is free again; the new one is taken (names are unique per owner).
    assert api.post("/connections", openai_body("My OpenAI")).status_code == 201
    clash = api.post("/connections", openai_body("renamed"))
    assert clash.status_code == 409
    assert clash.data["error"]["code"] == "name_taken"


def test_rename_to_a_taken_name_is_409_and_changes_nothing(api):
    first = _create(api, name="one")["id"]
    _create(api, name="two")
    resp = api.patch(f"/connections/{first}", {"name": "TWO"})
    assert resp.status_code == 409
    assert resp.data["error"]["field"] == "name"
    conn = api.get(f"/connections/{first}").data
    assert (conn["name"], conn["version"]) == ("one", 1)


def test_patch_replaces_only_the_named_credential_fields(api):
    cid = _create(api, bedrock_body())["id"]
    token = "NewSessionToken0123456789xyz"
    resp = api.patch(f"/connections/{cid}", {"credentials": {"session_token": token}})
    assert resp.status_code == 200, resp.data
    masked = resp.data["credentials_masked"]
    assert masked["session_token"] == MASK + token[-4:]
    assert masked["secret_access_key"] == MASK + BEDROCK_SECRET[-4:]
    assert masked["region"] == "us-east-1"
    secrets = _open(cid)
    assert secrets == {"access_key_id": "AKIAEXAMPLEKEY123456",
                       "secret_access_key": BEDROCK_SECRET, "session_token": token}

    # A public field alone: the sealed secrets are untouched.
    resp = api.patch(f"/connections/{cid}", {"credentials": {"region": "eu-west-1"}})
    assert resp.status_code == 200, resp.data
    assert resp.data["credentials_masked"]["region"] == "eu-west-1"
    assert _open(cid) == secrets

    # The two required secrets: the optional session token, not named, is kept.
    resp = api.patch(f"/connections/{cid}", {"credentials": {
        "access_key_id": "AKIAROTATEDKEY987654", "secret_access_key": "Rotated" + "x" * 30}})
    assert resp.status_code == 200, resp.data
    assert _open(cid) == {"access_key_id": "AKIAROTATEDKEY987654",
                          "secret_access_key": "Rotated" + "x" * 30, "session_token": token}
    assert resp.data["credentials_masked"]["session_token"] == MASK + token[-4:]


def test_an_optional_secret_can_be_removed_with_null(api):
    cid = _create(api, bedrock_body())["id"]
    resp = api.patch(f"/connections/{cid}", {"credentials": {"session_token": None}})
    assert resp.status_code == 200, resp.data
    assert "session_token" not in resp.data["credentials_masked"]
    assert "session_token" not in _open(cid)
    required = api.patch(f"/connections/{cid}", {"credentials": {"access_key_id": None}})
    assert required.status_code == 400
    assert required.data["error"]["field"] == "credentials.access_key_id"


def test_openai_public_credential_fields_patch_without_touching_the_key(api):
    cid = _create(api)["id"]
    resp = api.patch(f"/connections/{cid}", {"credentials": {"organization_id": "org-abc123"}})
    assert resp.status_code == 200, resp.data
    assert resp.data["credentials_masked"] == {"api_key": MASK + CANARY[-4:],
                                               "organization_id": "org-abc123"}
    assert _open(cid) == {"api_key": CANARY}
    resp = api.patch(f"/connections/{cid}", {"credentials": {"organization_id": None}})
    assert resp.data["credentials_masked"] == {"api_key": MASK + CANARY[-4:]}


def test_sending_the_masked_value_back_is_400(api):
    conn = _create(api)
    masked = conn["credentials_masked"]["api_key"]
    for value in (masked, "****" + CANARY[-4:]):
        resp = api.patch(f"/connections/{conn['id']}", {"credentials": {"api_key": value}})
        assert resp.status_code == 400, value
        assert resp.data["error"]["field"] == "credentials.api_key"
    assert _open(conn["id"]) == {"api_key": CANARY}


@pytest.mark.parametrize("change", [
    {"base_url": "https://proxy.example.com/v1"},
    {"provider": "anthropic"},
    {"provider": "custom", "base_url": "https://llm.example.com/v1"},
])
def test_changing_the_endpoint_without_the_secret_is_400(api, change):
    conn = _create(api)
    resp = api.patch(f"/connections/{conn['id']}", change)
    assert resp.status_code == 400, resp.data
    assert resp.data["error"]["field"] == "credentials.api_key"
    assert api.get(f"/connections/{conn['id']}").data == conn
    # With the secret it goes through, and the new secret is bound to the new endpoint.
    new_key = "sk-new-endpoint-key-0123456789"
    resp = api.patch(f"/connections/{conn['id']}",
                     {**change, "credentials": {"api_key": new_key}})
    assert resp.status_code == 200, resp.data
    assert resp.data["provider"] == change.get("provider", "openai")
    assert resp.data["base_url"] == change.get("base_url")
    assert _open(conn["id"]) == {"api_key": new_key}


def test_bedrock_endpoint_change_asks_for_the_first_missing_secret(api):
    cid = _create(api, bedrock_body())["id"]
    resp = api.patch(f"/connections/{cid}", {
        "base_url": "https://bedrock-runtime.eu-west-1.amazonaws.com",
        "credentials": {"access_key_id": "AKIAEXAMPLEKEY123456"}})
    assert resp.status_code == 400
    assert resp.data["error"]["field"] == "credentials.secret_access_key"


def test_rotation_due_flips_after_90_days(api):
    from chalicelib.services.common import iso, utcnow

    cid = _create(api)["id"]
    for days, due in ((89, False), (91, True)):
        stamp = iso(utcnow() - timedelta(days=days))
        set_raw(cid, "SET credentials_updated_at = :t", {":t": {"S": stamp}})
        conn = api.get(f"/connections/{cid}").data
        assert conn["rotation_due"] is due, days
        assert conn["credentials_updated_at"] == stamp
    # A new secret resets the clock.
    resp = api.patch(f"/connections/{cid}", {"credentials": {"api_key": "sk-rotated-0123456789"}})
    assert resp.data["rotation_due"] is False


def test_delete_then_gone_and_name_free(api):
    cid = _create(api)["id"]
    stale = api.delete(f"/connections/{cid}", headers={"If-Match": '"v9"'})
    assert stale.status_code == 412
    resp = api.delete(f"/connections/{cid}", headers={"If-Match": '"v1"'})
    assert resp.status_code == 204
    assert api.get(f"/connections/{cid}").status_code == 404
    assert api.delete(f"/connections/{cid}").status_code == 404
    assert _ids(api) == []
    assert api.post("/connections", openai_body()).status_code == 201


# -- dependents ------------------------------------------------------------------------------


def test_dependents_block_delete_until_removed_or_forced(api):
    cid = _create(api)["id"]
    dep = {"kind": "prompt", "display_name": "Weekly summary"}
    first = api.put(f"/connections/{cid}/dependents/prompt-1", dep)
    assert first.status_code == 201, first.data
    again = api.put(f"/connections/{cid}/dependents/prompt-1", {**dep, "display_name": "W2"})
    assert again.status_code == 200
    assert api.put(f"/connections/{cid}/dependents/prompt-2", dep).status_code == 201
    assert api.get(f"/connections/{cid}").data["dependents_count"] == 2

    blocked = api.delete(f"/connections/{cid}")
    assert blocked.status_code == 409
    assert blocked.data["error"]["code"] == "has_dependents"
    listed = {d["id"]: d["display_name"] for d in blocked.data["error"]["details"]["dependents"]}
    assert listed == {"prompt-1": "W2", "prompt-2": "Weekly summary"}
    assert api.get(f"/connections/{cid}").status_code == 200

    assert api.delete(f"/connections/{cid}/dependents/prompt-1").status_code == 204
    assert api.delete(f"/connections/{cid}/dependents/prompt-1").status_code == 404
    assert api.get(f"/connections/{cid}").data["dependents_count"] == 1
    assert api.delete(f"/connections/{cid}").status_code == 409

    assert api.delete(f"/connections/{cid}?force=true").status_code == 204
    assert api.get(f"/connections/{cid}").status_code == 404
    left = ddb().query(TableName=table("dependents"), KeyConditionExpression="connection_id = :c",
                       ExpressionAttributeValues={":c": {"S": cid}}, ConsistentRead=True)
    assert left["Items"] == []


def test_dependents_of_others_and_bad_ids_are_refused(api):
    cid = _create(api)["id"]
    other = api.as_user(api.user + "-other")
    dep = {"kind": "prompt", "display_name": "x"}
    assert other.put(f"/connections/{cid}/dependents/p1", dep).status_code == 404
    assert api.get(f"/connections/{cid}").data["dependents_count"] == 0
    bad = api.put(f"/connections/{cid}/dependents/{'x' * 129}", dep)
    assert bad.status_code == 400 and bad.data["error"]["field"] == "dependent_id"
    bad = api.put(f"/connections/{cid}/dependents/p1", {"kind": "Prompt!", "display_name": "x"})
    assert bad.status_code == 400 and bad.data["error"]["field"] == "kind"
    ghost = api.put("/connections/conn_doesnotexist00/dependents/p1", dep)
    assert ghost.status_code == 404


# -- export / import -------------------------------------------------------------------------


def test_export_carries_no_secret_and_imports_as_needing_credentials(api):
    _create(api, openai_body("a", credentials={"api_key": CANARY,
                                               "organization_id": "org-team42"}))
    _create(api, bedrock_body("b"))
    export = api.get("/connections/export")
    assert export.status_code == 200
    doc = export.data
    text = export.body.decode()
    assert CANARY not in text and BEDROCK_SECRET not in text and MASK not in text
    assert doc["format"] == "llm-connections-export" and doc["version"] == 1
    by_name = {c["name"]: c for c in doc["connections"]}
    assert by_name["a"]["credentials"] == {"organization_id": "org-team42"}
    assert by_name["b"]["credentials"] == {"region": "us-east-1"}

    other = api.as_user(api.user + "-imports")
    resp = other.post("/connections/import", doc)
    assert resp.status_code == 201, resp.data
    imported = {c["name"]: c for c in resp.data["items"]}
    assert set(imported) == {"a", "b"}
    for conn in imported.values():
        assert conn["needs_credentials"] is True
        assert conn["status"] == "untested"
        assert conn["owner"] == other.user
    assert imported["a"]["credentials_masked"] == {"organization_id": "org-team42"}
    assert sorted(_ids(other)) == sorted(c["id"] for c in imported.values())

    # Supplying the secret makes it usable.
    aid = imported["a"]["id"]
    partial = other.patch(f"/connections/{aid}", {"credentials": {"organization_id": "org-x1234"}})
    assert partial.status_code == 200 and partial.data["needs_credentials"] is True
    resp = other.patch(f"/connections/{aid}", {"credentials": {"api_key": "sk-supplied-0123456"}})
    assert resp.status_code == 200, resp.data
    assert resp.data["needs_credentials"] is False
    assert _open(aid) == {"api_key": "sk-supplied-0123456"}
    bid = imported["b"]["id"]
    half = other.patch(f"/connections/{bid}", {"credentials": {"access_key_id":
                                                               "AKIAEXAMPLEKEY123456"}})
    assert half.status_code == 400
    assert half.data["error"]["field"] == "credentials.secret_access_key"


def _doc(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"format": "llm-connections-export", "version": 1, "connections": list(entries)}


GOOD = {"name": "ok", "provider": "openai", "default_model": "gpt-4o"}


@pytest.mark.parametrize(("doc", "field"), [
    (_doc(GOOD, {"name": "x", "provider": "nope"}), "connections[1].provider"),
    (_doc(GOOD, {"name": "x", "provider": "openai", "credentials": {"api_key": CANARY}}),
     "connections[1].credentials"),
    (_doc(GOOD, {"name": "OK ", "provider": "openai"}), "connections[1].name"),
    (_doc(GOOD, {"name": "x", "provider": "openai", "settings": {"timeout_seconds": 0}}),
     "connections[1].settings.timeout_seconds"),
    (_doc(GOOD, {"name": "x", "provider": "custom"}), "connections[1].base_url"),
    (_doc(GOOD, {"name": "x", "provider": "openai", "base_url": "ftp://example.com"}),
     "connections[1].base_url"),
    (_doc(GOOD, {"name": "x", "provider": "bedrock", "credentials": {"region": "mars"}}),
     "connections[1].credentials.region"),
    (_doc(GOOD, {"name": "x", "provider": "openai", "owner": "someone"}),
     "connections[1].owner"),
    (_doc(GOOD, {"name": "", "provider": "openai"}), "connections[1].name"),
    ({**_doc(GOOD), "format": "other"}, "format"),
    ({**_doc(GOOD), "version": 2}, "version"),
    (_doc(), "connections"),
    (_doc(*[{**GOOD, "name": f"n{i}"} for i in range(41)]), "connections"),
    ({"connections": [GOOD]}, "format"),
])
def test_import_is_all_or_nothing(api, doc, field):
    resp = api.post("/connections/import", doc)
    assert resp.status_code == 400, resp.data
    assert resp.data["error"]["field"] == field
    assert CANARY not in resp.body.decode()
    assert _ids(api) == []


def test_import_clashing_with_an_existing_name_creates_nothing(api):
    _create(api, name="taken")
    resp = api.post("/connections/import", _doc(GOOD, {"name": "Taken", "provider": "openai"}))
    assert resp.status_code == 409
    assert resp.data["error"]["code"] == "name_taken"
    assert len(_ids(api)) == 1


# -- access ----------------------------------------------------------------------------------


def test_another_users_connection_is_a_404_like_a_missing_one(api):
    cid = _create(api, bedrock_body())["id"]
    other = api.as_user(api.user + "-other")
    missing = other.get("/connections/conn_AAAAAAAAAAAAAAAA")
    with count_aws_calls() as calls:
        foreign = other.get(f"/connections/{cid}")
        patched = other.patch(f"/connections/{cid}",
                              {"credentials": {"session_token": "Other0123456789abcdefgh"}})
        deleted = other.delete(f"/connections/{cid}?force=true")
    assert calls.of("kms") == {}, "a denied request must cost no KMS call"

    def shape(resp: Any) -> tuple[int, dict[str, Any]]:
        err = dict(resp.data["error"])
        assert err.pop("request_id")
        return resp.status_code, err

    assert shape(foreign) == shape(missing) == (404, {"code": "not_found",
                                                      "message": "connection not found"})
    assert shape(patched) == shape(missing)
    assert shape(deleted) == shape(missing)
    assert api.get(f"/connections/{cid}").data["version"] == 1
    assert _ids(other) == []

    denied = [e for e in other.get("/audit").data["items"] if e["outcome"] == "denied"]
    assert len(denied) == 3
    assert {e["target"] for e in denied} == {f"connection:{cid}"}
    assert all(e["actor"] == other.user for e in denied)


def test_admins_act_on_every_connection_and_are_audited_as_admin(api):
    cid = _create(api)["id"]
    admin = api.as_user(unique("admin-"), admin=True)
    assert admin.get(f"/connections/{cid}").status_code == 200
    resp = admin.patch(f"/connections/{cid}", {"description": "checked by admin"})
    assert resp.status_code == 200, resp.data
    assert resp.data["owner"] == api.user
    assert admin.put(f"/connections/{cid}/dependents/d1",
                     {"kind": "prompt", "display_name": "x"}).status_code == 201
    assert admin.delete(f"/connections/{cid}?force=true").status_code == 204
    events = admin.get("/audit").data["items"]
    by_action = {e["action"]: e for e in events}
    for action in ("connection.read", "connection.update", "connection.dependent.put",
                   "connection.delete"):
        assert by_action[action]["admin_action"] is True, action
        assert by_action[action]["target_owner"] == api.user
    # The owner's own actions are not admin actions.
    own = api.get("/audit").data["items"]
    assert [e["admin_action"] for e in own if e["action"] == "connection.create"] == [False]


# -- bad input -------------------------------------------------------------------------------


def _with(**over: Any) -> dict[str, Any]:
    body = openai_body("bad")
    for key, value in over.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


def _creds(**creds: Any) -> dict[str, Any]:
    return _with(credentials=creds)


BAD_CREATES: list[tuple[str, dict[str, Any], str]] = [
    ("name missing", _with(name=...), "name"),
    ("name empty", _with(name=""), "name"),
    ("name too long", _with(name="n" * 101), "name"),
    ("name not a string", _with(name=12), "name"),
    ("name null", _with(name=None), "name"),
    ("description too long", _with(description="d" * 1001), "description"),
    ("description not a string", _with(description=["d"]), "description"),
    ("provider missing", _with(provider=...), "provider"),
    ("provider unknown", _with(provider="no-such-provider"), "provider"),
    ("provider empty", _with(provider=""), "provider"),
    ("provider too long", _with(provider="p" * 41), "provider"),
    ("provider not a string", _with(provider=7), "provider"),
    ("credentials missing", _with(credentials=...), "credentials"),
    ("credentials not an object", _with(credentials="sk-abc"), "credentials"),
    ("secret missing", _creds(), "credentials.api_key"),
    ("secret not a string", _creds(api_key=12345678901234), "credentials.api_key"),
    ("secret null", _creds(api_key=None), "credentials.api_key"),
    ("secret too short", _creds(api_key="sk-1234"), "credentials.api_key"),
    ("secret with a space", _creds(api_key="sk-abc def-0123456789"), "credentials.api_key"),
    ("secret with a newline", _creds(api_key=CANARY + "\n"), "credentials.api_key"),
    ("secret too long", _creds(api_key="k" * 513), "credentials.api_key"),
    ("unknown credential", _creds(api_key=CANARY, token="x"), "credentials.token"),
    ("public field format", _creds(api_key=CANARY, organization_id="acme"),
     "credentials.organization_id"),
    ("public field type", _creds(api_key=CANARY, project_id=5), "credentials.project_id"),
    ("model empty", _with(default_model=""), "default_model"),
    ("model with a space", _with(default_model="gpt 4o"), "default_model"),
    ("model too long", _with(default_model="m" * 201), "default_model"),
    ("model not a string", _with(default_model=4), "default_model"),
    ("base_url empty", _with(base_url=""), "base_url"),
    ("base_url too long", _with(base_url="https://a.example/" + "p" * 2040), "base_url"),
    ("base_url not a string", _with(base_url=443), "base_url"),
    ("base_url ftp", _with(base_url="ftp://files.example.com"), "base_url"),
    ("base_url no scheme", _with(base_url="api.example.com/v1"), "base_url"),
    ("base_url localhost", _with(base_url="http://localhost:8000/v1"), "base_url"),
    ("base_url metadata", _with(base_url="http://169.254.169.254/latest"), "base_url"),
    ("base_url metadata, decimal", _with(base_url="https://2852039166/"), "base_url"),
    ("base_url private", _with(base_url="https://10.1.2.3/v1"), "base_url"),
    ("base_url userinfo", _with(base_url="https://u:p@api.example.com"), "base_url"),
    ("base_url required", {"name": "c", "provider": "custom",
                           "credentials": {"api_key": CANARY}}, "base_url"),
    ("settings not an object", _with(settings=[1]), "settings"),
    ("settings unknown key", _with(settings={"retries": 1}), "settings.retries"),
    ("timeout zero", _with(settings={"timeout_seconds": 0}), "settings.timeout_seconds"),
    ("timeout too big", _with(settings={"timeout_seconds": 301}), "settings.timeout_seconds"),
    ("timeout as string", _with(settings={"timeout_seconds": "30"}), "settings.timeout_seconds"),
    ("timeout as bool", _with(settings={"timeout_seconds": True}), "settings.timeout_seconds"),
    ("retries negative", _with(settings={"max_retries": -1}), "settings.max_retries"),
    ("retries too many", _with(settings={"max_retries": 11}), "settings.max_retries"),
    ("rpm zero", _with(settings={"rate_limit_rpm": 0}), "settings.rate_limit_rpm"),
    ("max_tokens float", _with(settings={"max_tokens": 1.5}), "settings.max_tokens"),
    ("temperature negative", _with(settings={"temperature": -0.1}), "settings.temperature"),
    ("temperature over provider max", _with(settings={"temperature": 2.5}),
     "settings.temperature"),
    ("quota zero", _with(settings={"monthly_request_quota": 0}),
     "settings.monthly_request_quota"),
    ("token quota zero", _with(settings={"monthly_token_quota": 0}),
     "settings.monthly_token_quota"),
    ("probe flag as string", _with(settings={"probe_model_daily": "yes"}),
     "settings.probe_model_daily"),
    ("unknown field", _with(colour="blue"), "colour"),
    ("owner is not settable", _with(owner="someone-else"), "owner"),
    ("id is not settable", _with(id="conn_mine"), "id"),
    ("status is not settable", _with(status="active"), "status"),
    ("bedrock region", bedrock_body(region="mars-north-1"), "credentials.region"),
    ("bedrock region missing", bedrock_body(region=None), "credentials.region"),
    ("bedrock access key format", bedrock_body(access_key_id="akia-lower"),
     "credentials.access_key_id"),
    ("bedrock secret missing", {**bedrock_body(), "credentials": {
        "access_key_id": "AKIAEXAMPLEKEY123456", "region": "us-east-1"}},
     "credentials.secret_access_key"),
    ("anthropic temperature", {"name": "a", "provider": "anthropic",
                               "credentials": {"api_key": CANARY},
                               "settings": {"temperature": 1.5}}, "settings.temperature"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_CREATES, ids=[c[0] for c in BAD_CREATES])
def test_bad_create_input_is_400_naming_the_field_and_writes_nothing(api, case, body, field):
    with count_aws_calls() as calls:
        resp = api.post("/connections", body)
    assert resp.status_code == 400, (case, resp.data)
    assert resp.data["error"]["code"] == "invalid_field"
    assert resp.data["error"]["field"] == field, case
    assert CANARY not in resp.body.decode()
    assert not set(calls.of("dynamodb")) & DYNAMODB_WRITES
    assert calls.of("kms") == {}
    assert _ids(api) == []


BAD_PATCHES: list[tuple[str, dict[str, Any], str]] = [
    ("empty body", {}, "body"),
    ("name null", {"name": None}, "name"),
    ("name empty", {"name": ""}, "name"),
    ("name too long", {"name": "n" * 101}, "name"),
    ("description type", {"description": 3}, "description"),
    ("provider unknown", {"provider": "nope", "credentials": {"api_key": CANARY}}, "provider"),
    ("credentials type", {"credentials": ["x"]}, "credentials"),
    ("unknown credential", {"credentials": {"secret": "x"}}, "credentials.secret"),
    ("secret type", {"credentials": {"api_key": 1}}, "credentials.api_key"),
    ("secret null", {"credentials": {"api_key": None}}, "credentials.api_key"),
    ("secret format", {"credentials": {"api_key": "short"}}, "credentials.api_key"),
    ("public format", {"credentials": {"project_id": "p1"}}, "credentials.project_id"),
    ("model", {"default_model": "a b"}, "default_model"),
    ("base_url scheme", {"base_url": "gopher://x.example", "credentials": {"api_key": CANARY}},
     "base_url"),
    ("base_url private", {"base_url": "https://192.168.0.1", "credentials": {"api_key": CANARY}},
     "base_url"),
    ("settings", {"settings": {"max_retries": 99}}, "settings.max_retries"),
    ("settings temperature", {"settings": {"temperature": 9}}, "settings.temperature"),
    ("unknown field", {"owner": "someone-else"}, "owner"),
    ("version", {"version": 7}, "version"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_PATCHES, ids=[c[0] for c in BAD_PATCHES])
def test_bad_patch_input_is_400_naming_the_field_and_changes_nothing(api, case, body, field):
    before = _create(api)
    resp = api.patch(f"/connections/{before['id']}", body)
    assert resp.status_code == 400, (case, resp.data)
    assert resp.data["error"]["field"] == field, case
    assert api.get(f"/connections/{before['id']}").data == before


def test_base_url_must_be_https_outside_the_local_stage(api):
    from chalicelib.api.deps import services
    from chalicelib.crypto import EnvelopeCipher
    from chalicelib.data import aws
    from chalicelib.data.connections_repo import ConnectionRepository
    from chalicelib.errors import InvalidInput
    from chalicelib.providers.netguard import check_url
    from chalicelib.services.connections import ConnectionService

    svc = services()
    settings = dataclasses.replace(svc.settings, stage="prod", outbound_allow_http=False,
                                   outbound_allow_hosts=frozenset())

    def url_check(url: str) -> None:
        check_url(url, allow_hosts=settings.outbound_allow_hosts,
                  allow_http=settings.outbound_allow_http)

    prod = ConnectionService(ConnectionRepository(), svc.providers, svc.audit,
                             lambda: EnvelopeCipher(aws.client("kms"), settings.kms_key_id),
                             settings, url_check)
    who = caller(api.user)
    for url in ("http://api.example.com/v1", "http://127.0.0.1:8080/v1"):
        with pytest.raises(InvalidInput) as err:
            prod.create(who, openai_body("prod", base_url=url))
        assert err.value.field == "base_url", url
    assert _ids(api) == []
    made = prod.create(who, openai_body("prod", base_url="https://api.example.com/v1"))
    assert made["base_url"] == "https://api.example.com/v1"

    # The local stage allows http and the loopback fake providers, nothing more.
    assert api.post("/connections", openai_body(
        "local", base_url="http://127.0.0.1:9/v1")).status_code == 201
    assert api.post("/connections", openai_body(
        "local2", base_url="http://api.example.com/v1")).status_code == 201
    for url in ("http://localhost:9/v1", "http://127.0.0.2:9/v1", "http://[::1]:9/v1"):
        resp = api.post("/connections", openai_body("local3", base_url=url))
        assert resp.status_code == 400, url
        assert resp.data["error"]["field"] == "base_url"


# -- per-request cost ------------------------------------------------------------------------


def test_each_request_costs_a_known_number_of_aws_calls(api):
    with count_aws_calls() as create:
        resp = api.post("/connections", openai_body())
    assert resp.status_code == 201
    cid = resp.data["id"]
    assert create.of("kms") == {"GenerateDataKey": 1}
    writes = [(op, p) for svc, op, p in create.params
              if svc == "dynamodb" and op in DYNAMODB_WRITES]
    write_items = sum(len(p.get("TransactItems", [None])) for _op, p in writes)
    assert write_items <= 3, writes
    assert [op for op, _p in writes] == ["TransactWriteItems"]

    with count_aws_calls() as listing:
        assert api.get("/connections").status_code == 200
    assert listing == {("dynamodb", "Query"): 1}

    with count_aws_calls() as get:
        assert api.get(f"/connections/{cid}").status_code == 200
    assert get == {("dynamodb", "GetItem"): 1}

    with count_aws_calls() as everything:
        api.patch(f"/connections/{cid}", {"name": "n2"})
        api.patch(f"/connections/{cid}", {"credentials": {"api_key": "sk-rotated-0123456789"}})
        api.put(f"/connections/{cid}/dependents/d", {"kind": "prompt", "display_name": "d"})
        api.get(f"/connections/{cid}/dependents")
        api.get("/connections/export")
        api.post("/connections/import", _doc(GOOD))
        api.get("/audit")
        api.get("/providers")
        api.as_user(api.user + "-x").get(f"/connections/{cid}")
        api.delete(f"/connections/{cid}?force=true")
    assert everything.of("kms") == {"GenerateDataKey": 1}
    scans = [k for k in everything if k[1] == "Scan"]
    assert scans == [] and ("dynamodb", "Scan") not in create | listing | get
