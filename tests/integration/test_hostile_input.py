"""Hostile input at the API: the cases from issue 14's "Why" and each rule of strict JSON and
text fields, over the in-process app (chalice.test.Client) on moto."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.conftest import CANARY, openai_body
from tests.support.builders import ddb, provider_body, set_raw, table, unique

pytestmark = pytest.mark.integration


def _names(api) -> list[str]:
    return [c["name"] for c in api.get("/connections").data["items"]]


def _invalid_json(resp) -> str:
    assert resp.status_code == 400, resp.data
    err = resp.data["error"]
    assert err["code"] == "invalid_json"
    assert err["field"] == "body"
    assert err["request_id"]
    return err["message"]


# ----------------------------------------------------------------------- the "Why" cases


def test_twenty_thousand_nested_arrays_is_a_400_not_a_500(api):
    # Given 40 kB of nested arrays (under the 64 KiB cap)
    raw = b"[" * 20_000 + b"]" * 20_000
    # When it is posted to every route that takes a body
    for method, path in [("POST", "/connections"), ("POST", "/connections/test"),
                         ("POST", "/connections/import"), ("PATCH", "/connections/conn_x"),
                         ("POST", "/notifications/subscriptions")]:
        resp = api.request(method, path, raw=raw)
        # Then each is a 400 invalid_json naming the depth (PATCH looks the id up later)
        assert "deeper than 32" in _invalid_json(resp), (method, path)
    # And nothing was created
    assert _names(api) == []


def test_duplicate_keys_are_refused_not_last_wins(api):
    resp = api.post("/connections", raw=b'{"name":"dup","name":"dup2","provider":"openai",'
                                         b'"credentials":{"api_key":"sk-0123456789abcdef"}}')
    assert 'duplicate key "name"' in _invalid_json(resp)
    assert _names(api) == []


@pytest.mark.parametrize("lookalike,why", [("\uff30\uff52\uff4f\uff44", "full-width"),
                                           ("Pro\u200bd", "zero-width space"),
                                           ("PROD", "case"), (" prod\u00a0", "spaces")])
def test_lookalike_names_collide_or_are_refused(api, lookalike, why):
    # Given a connection named Prod
    assert api.post("/connections", openai_body("Prod")).status_code == 201
    # When another is created with a name that looks the same
    resp = api.post("/connections", openai_body(lookalike))
    # Then it is a 409 name_taken (normalised to the same name) or a 400 naming the character
    if why == "zero-width space":
        assert resp.status_code == 400, resp.data
        assert resp.data["error"]["field"] == "name"
        assert "U+200B" in resp.data["error"]["message"]
    else:
        assert resp.status_code == 409, (why, resp.data)
        assert resp.data["error"]["code"] == "name_taken"
    assert _names(api) == ["Prod"]


def test_full_width_name_is_stored_normalised(api):
    created = api.post("/connections", openai_body("\uff30\uff52\uff4f\uff44 \u2460"))
    assert created.status_code == 201
    assert created.data["name"] == "Prod 1"


def test_header_injection_in_a_name_is_refused_and_nothing_is_stored(api):
    resp = api.post("/connections", openai_body("evil\r\nBcc: x@y"))
    assert resp.status_code == 400
    assert resp.data["error"]["field"] == "name"
    assert "U+000D" in resp.data["error"]["message"]
    assert _names(api) == []


# -------------------------------------------------------------- rule 1: strict JSON


@pytest.mark.parametrize("raw,expect", [
    (b'{"name": NaN}', "NaN"),
    (b'{"settings": {"temperature": Infinity}}', "Infinity"),
    (b'{"settings": {"temperature": -Infinity}}', "Infinity"),
    (b'{"settings": {"temperature": 1e999}}', "out of range"),
    (b'{"name": "\xff\xfe"}', "UTF-8"),
    (b'{"name": "\xed\xa0\x80"}', "UTF-8"),  # a surrogate encoded in (invalid) UTF-8
    (b'{"name": "\\ud800"}', "surrogate"),
    (b'{"name": "ok", "description": "\\udfff"}', "surrogate"),
    (b'{"a": ' * 33 + b"1" + b"}" * 33, "deeper than 32"),
    (b'{"a": {"k": 1, "k": 2}}', "duplicate"),
    (b"{not json", "not valid JSON"),
])
def test_strict_json_rules_are_400_invalid_json(api, raw, expect):
    assert expect in _invalid_json(api.post("/connections", raw=raw))


def test_a_body_nested_to_the_bound_reaches_validation(api):
    # 32 levels is allowed by the parser; the schema then names the field
    raw = b'{"name": "x", "settings": ' + b"[" * 31 + b"]" * 31 + b"}"
    resp = api.post("/connections", raw=raw)
    assert resp.status_code == 400
    assert resp.data["error"]["code"] != "invalid_json"


def test_a_deep_cursor_is_a_400_not_a_500(api):
    import base64

    cursor = base64.urlsafe_b64encode(b"[" * 1500).decode().rstrip("=")
    resp = api.get(f"/connections?cursor={cursor}")
    assert resp.status_code == 400
    assert resp.data["error"]["field"] == "cursor"


# -------------------------------------------------------------- rule 2: text fields


REFUSED = [("\x00", "U+0000"), ("\x1b", "U+001B"), ("\x7f", "U+007F"), ("\x85", "U+0085"),
           ("\x9b", "U+009B"), ("\r", "U+000D"), ("\n", "U+000A"), ("\t", "U+0009"),
           ("\u202a", "U+202A"), ("\u202e", "U+202E"), ("\u2066", "U+2066"),
           ("\u2069", "U+2069"), ("\u200b", "U+200B"), ("\u200d", "U+200D"),
           ("\u2060", "U+2060"), ("\ufeff", "U+FEFF"), ("\u2028", "U+2028")]


@pytest.mark.parametrize("char,code", REFUSED)
def test_single_line_fields_refuse_control_bidi_and_invisible_characters(api, char, code):
    # Given one connection to change and a dependent body
    cid = api.post("/connections", openai_body("Base")).data["id"]
    cases = [
        ("POST", "/connections", openai_body(f"a{char}b"), "name"),
        ("POST", "/connections", openai_body("ok", default_model=f"gpt{char}4"),
         "default_model"),
        ("POST", "/connections", {**openai_body("ok2"), "provider": f"open{char}ai"},
         "provider"),
        ("PATCH", f"/connections/{cid}", {"name": f"x{char}y"}, "name"),
        ("PUT", f"/connections/{cid}/dependents/p1", {"kind": "prompt",
                                                       "display_name": f"P{char}1"},
         "display_name"),
        ("POST", "/connections/import", {"format": "llm-connections-export", "version": 1,
                                          "connections": [{"name": f"i{char}j",
                                                           "provider": "openai"}]},
         "connections[0].name"),
    ]
    for method, path, body, field in cases:
        resp = api.request(method, path, body)
        # Then a 400 names the field and the character
        assert resp.status_code == 400, (field, resp.data)
        assert resp.data["error"]["field"] == field
        assert code in resp.data["error"]["message"], resp.data
    # And nothing was written
    assert _names(api) == ["Base"]
    assert api.get(f"/connections/{cid}").data["version"] == 1


def test_descriptions_keep_line_breaks_only(api):
    # Line breaks are kept (CRLF and CR become LF)
    ok = api.post("/connections", openai_body("D", description="line 1\r\nline 2\rline 3\n"))
    assert ok.status_code == 201
    assert ok.data["description"] == "line 1\nline 2\nline 3"
    # Anything else invisible or controlling is refused
    for char, code in REFUSED:
        if char in "\r\n":
            continue
        resp = api.post("/connections", openai_body("E", description=f"a{char}b"))
        assert resp.status_code == 400
        assert resp.data["error"]["field"] == "description"
        assert code in resp.data["error"]["message"]


def test_blank_after_normalising_is_refused(api):
    for name in ("\u3000", "\u00a0 ", "   "):
        resp = api.post("/connections", openai_body(name))
        assert resp.status_code == 400
        assert resp.data["error"]["field"] == "name"


def test_rename_to_a_lookalike_of_another_name_is_a_409(api):
    api.post("/connections", openai_body("Prod"))
    other = api.post("/connections", openai_body("Staging")).data
    resp = api.patch(f"/connections/{other['id']}", {"name": "\uff50\uff52\uff4f\uff44"})
    assert resp.status_code == 409
    assert resp.data["error"]["code"] == "name_taken"
    # Renaming to a new case of its own name is fine (same folded key)
    assert api.patch(f"/connections/{other['id']}", {"name": "STAGING"}).status_code == 200


def test_import_folds_names_within_the_document(api):
    doc = {"format": "llm-connections-export", "version": 1, "connections": [
        {"name": "Prod", "provider": "openai"},
        {"name": "\uff30\uff52\uff4f\uff44", "provider": "openai"}]}
    resp = api.post("/connections/import", doc)
    assert resp.status_code == 400
    assert resp.data["error"]["field"] == "connections[1].name"
    assert _names(api) == []


def test_dependent_ids_are_plain_ascii(api):
    cid = api.post("/connections", openai_body("Deps")).data["id"]
    body = {"kind": "prompt", "display_name": "Prompt"}
    for dep in ("p\u200b1", "\uff501", "p%0D%0A1", "p%E2%80%AE1"):
        resp = api.put(f"/connections/{cid}/dependents/{dep}", body)
        assert resp.status_code in (400, 404), (dep, resp.data)
        if resp.status_code == 400:
            assert resp.data["error"]["field"] == "dependent_id"
    assert api.get(f"/connections/{cid}/dependents").data["items"] == []


def test_admin_provider_text_fields(api):
    admin = api.as_user(unique("admin"), admin=True)
    pid = unique("p")
    for field, value in [("name", "Acme\u202e"), ("description", "a\x00"),
                         ("known_models", ["m\u200b1"])]:
        resp = admin.post("/providers", provider_body(pid, **{field: value}))
        assert resp.status_code == 400, resp.data
        assert resp.data["error"]["field"].startswith(field)
    ok = admin.post("/providers", provider_body(pid, name="\uff21cme", description="a\r\nb"))
    assert ok.status_code == 201, ok.data
    assert (ok.data["name"], ok.data["description"]) == ("Acme", "a\nb")


def test_subscription_emails(api):
    me = api.as_user(unique("subs"))
    for endpoint in ("ops@example.com\r\nBcc: x@y", "ops\u200b@example.com",
                     "\uff4fps@example.com", "ops@example.com\t"):
        resp = me.post("/notifications/subscriptions", {"protocol": "email",
                                                        "endpoint": endpoint})
        assert resp.status_code == 400, (endpoint, resp.data)
        assert resp.data["error"]["field"] == "endpoint"
    first = me.post("/notifications/subscriptions", {"protocol": "email",
                                                     "endpoint": "Ops@Example.COM"})
    assert first.status_code == 201
    assert first.data["endpoint"] == "Ops@example.com"
    again = me.post("/notifications/subscriptions", {"protocol": "email",
                                                     "endpoint": "ops@example.com"})
    assert again.status_code == 409


# -------------------------------------------------------------- names stored before this


def _make_legacy(api, cid: str, name: str, old_key: str, new_key: str) -> None:
    """Rewrite a connection as the previous code stored it: name as given, key
    ``strip().casefold()``, and its name lock under that key."""
    set_raw(cid, "SET #n = :n, name_key = :k", {":n": {"S": name}, ":k": {"S": old_key}},
            names={"#n": "name"})
    owner = quote(api.user, safe="")
    client = ddb()
    client.delete_item(TableName=table("names"), Key={"key": {"S": f"{owner}/{new_key}"}})
    client.put_item(TableName=table("names"), Item={"key": {"S": f"{owner}/{old_key}"},
                                                    "connection_id": {"S": cid}})


def test_an_old_name_that_now_collides_keeps_working_and_is_reported_on_rename(api):
    # Given "Prod", and an older connection stored (before normalising) as full-width Prod
    api.post("/connections", openai_body("Prod"))
    old = api.post("/connections", openai_body("Legacy", key=CANARY)).data
    wide = "\uff30\uff52\uff4f\uff44"
    _make_legacy(api, old["id"], wide, wide.casefold(), "legacy")
    # When it is read, listed, changed otherwise and tested: it keeps working as it was
    assert api.get(f"/connections/{old['id']}").data["name"] == wide
    assert sorted(_names(api)) == sorted(["Prod", wide])
    changed = api.patch(f"/connections/{old['id']}", {"description": "still here"})
    assert changed.status_code == 200
    # And writing its name (even unchanged) reports the collision: 409 name_taken
    resp = api.patch(f"/connections/{old['id']}", {"name": wide})
    assert resp.status_code == 409
    assert resp.data["error"]["code"] == "name_taken"
    # Renaming it to something distinct works, and frees its old lock
    assert api.patch(f"/connections/{old['id']}", {"name": "Prod (old)"}).status_code == 200
    assert api.post("/connections", openai_body("Legacy")).status_code == 201
    # And deleting works whatever key it was stored with
    assert api.delete(f"/connections/{old['id']}").status_code == 204
