"""Issue 17: a stored key goes only where its owner sent it, also from a warm Lambda and
after an admin changes the catalogue.

An attacker with write access to the connections table (and none to KMS) edits a warm
connection's ``base_url``, ``owner`` or ``provider``, or destroys its sealed blob: the next
invoke must not use the decrypted key the instance cached. Written against the code before the
cache was keyed on the binding (it failed there: the cache answered for up to 5 minutes).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.test_invoke import create, invoke, last_seq, sent
from tests.support.builders import ddb, provider_body, set_raw, table
from tests.support.fakes import fake_key

pytestmark = pytest.mark.integration


@pytest.fixture()
def warm(api, fake_provider):
    """A connection invoked once: its decrypted key is in the instance's cache."""
    cid, key = create(api, fake_provider)
    assert invoke(api, cid).status_code == 200
    return cid, key


def test_a_base_url_edited_in_the_table_is_refused_by_a_warm_instance(api, fake_provider, warm):
    cid, key = warm
    since = last_seq(fake_provider)
    # The same fake, another path: a host the owner never chose for this key
    set_raw(cid, "SET base_url = :u", {":u": {"S": f"{fake_provider.base_url}/azure/openai"}})
    resp = invoke(api, cid)
    assert resp.status_code == 409, resp.data
    assert resp.data["error"]["code"] == "credentials_unreadable"
    assert sent(fake_provider, key, since) == []


def test_an_owner_edited_in_the_table_cannot_spend_the_key(api, fake_provider, warm):
    cid, key = warm
    thief = api.as_user(f"thief-{cid[-6:]}")
    since = last_seq(fake_provider)
    set_raw(cid, "SET #o = :o", {":o": {"S": thief.user}}, names={"#o": "owner"})
    resp = invoke(thief, cid)
    assert resp.status_code == 409, resp.data
    assert sent(fake_provider, key, since) == []
    # And its real owner no longer sees it as theirs (the table says otherwise): a 404
    assert invoke(api, cid).status_code == 404


def test_a_destroyed_or_damaged_blob_is_not_served_from_the_cache(api, fake_provider, warm):
    cid, key = warm
    since = last_seq(fake_provider)
    set_raw(cid, "SET sealed.ct = :b", {":b": {"B": b"\x00" * 48}})
    resp = invoke(api, cid)
    assert resp.status_code == 409 and resp.data["error"]["code"] == "credentials_unreadable"
    ddb().update_item(TableName=table("connections"), Key={"id": {"S": cid}},
                      UpdateExpression="REMOVE sealed")
    resp = invoke(api, cid)
    assert resp.status_code == 422 and resp.data["error"]["code"] == "needs_credentials"
    assert sent(fake_provider, key, since) == []


def test_a_provider_edited_in_the_table_is_refused(api, fake_provider, warm):
    cid, key = warm
    since = last_seq(fake_provider)
    # Another catalogue entry with the same wire format (custom, OpenAI-compatible)
    set_raw(cid, "SET provider = :p", {":p": {"S": "custom"}})
    resp = invoke(api, cid)
    assert resp.status_code == 409, resp.data
    assert sent(fake_provider, key, since) == []


# --------------------------------------------------------------------------- catalogue edits


def _follower(api: Any, admin: Any, fake: Any) -> tuple[str, str, str]:
    """An admin's OpenAI-compatible provider on the fake, and a connection that follows its
    base URL (none of its own): (provider id, connection id, key)."""
    from fakeprovider import control

    pid = f"acme-{uuid.uuid4().hex[:8]}"
    made = admin.post("/providers", provider_body(
        pid, base_url=control.base_url_for("openai", fake.base_url)))
    assert made.status_code == 201, made.data
    key = fake_key("openai")
    conn = api.post("/connections", {"name": f"follows {pid}", "provider": pid,
                                     "credentials": {"api_key": key},
                                     "default_model": "gpt-4o"})
    assert conn.status_code == 201, conn.data
    return pid, conn.data["id"], key


@pytest.fixture(scope="module")
def other_host() -> Any:
    """A second fake provider on its own port: the host an admin points the catalogue at."""
    from fakeprovider.server import start_server

    server = start_server(host="127.0.0.1", port=0)
    yield server
    server.stop()


def _to_new_host(other: Any, key: str) -> list[dict[str, Any]]:
    from fakeprovider import control

    return control.requests(other.base_url, fingerprint=key[-4:])


def _new_url(other: Any) -> str:
    from fakeprovider import control

    return control.base_url_for("openai", other.base_url)


def test_a_catalogue_base_url_change_never_redirects_stored_keys(api, fake_provider,
                                                                 other_host):
    admin = api.as_user(f"admin-{uuid.uuid4().hex[:6]}", admin=True)
    pid, cid, key = _follower(api, admin, fake_provider)
    assert invoke(api, cid).status_code == 200  # warm: the key is in the instance's cache
    new_url = _new_url(other_host)

    # An admin's change is refused while connections follow the URL, naming how many
    refused = admin.patch(f"/providers/{pid}", {"base_url": new_url})
    assert refused.status_code == 409, refused.data
    assert refused.data["error"]["code"] == "provider_in_use"
    assert refused.data["error"]["details"] == {"connections_affected": 1}
    assert admin.get(f"/providers/{pid}").data["base_url"] != new_url

    # Forced, it goes through, audited with the count
    forced = admin.patch(f"/providers/{pid}?force=true", {"base_url": new_url})
    assert forced.status_code == 200, forced.data
    events = [e for e in admin.get(f"/audit?target=provider:{pid}").data["items"]
              if e["action"] == "provider.update"]
    assert events and events[0]["detail"] == {"base_url_changed": True,
                                              "connections_affected": 1}

    # ...and the stored key goes nowhere new: tests and invokes refuse it (the warm
    # instance's provider cache may still call the old host, never the new one)
    tested = api.post(f"/connections/{cid}/test", {})
    assert tested.status_code == 409 and tested.data["error"]["code"] == "credentials_unreadable"
    for _ in range(3):
        assert invoke(api, cid).status_code in (200, 409)
    assert _to_new_host(other_host, key) == []

    # The owner enters the key again for the new address: it is sealed for it and used
    assert api.patch(f"/connections/{cid}", {"credentials": {"api_key": key}}).status_code == 200
    assert api.post(f"/connections/{cid}/test", {}).status_code == 200
    assert _to_new_host(other_host, key)


def test_a_key_sealed_before_the_endpoint_was_bound_is_refused_after_the_change(
        api, fake_provider, other_host, monkeypatch):
    import chalicelib.crypto as crypto
    from chalicelib.api.deps import services
    from chalicelib.services.connections import _to_attr

    admin = api.as_user(f"admin-{uuid.uuid4().hex[:6]}", admin=True)
    pid, cid, key = _follower(api, admin, fake_provider)
    # A format-2 blob (bound to the connection's own base URL only, here none)
    item = services().connections._repo.get(cid)
    monkeypatch.setattr(crypto, "FORMAT_VERSION", 2)
    old = services().connections._cipher_factory().seal(
        {"api_key": key}, crypto.Binding(item.owner, item.id, item.provider, item.base_url))
    monkeypatch.undo()
    item.update(actions=[type(item).sealed.set(_to_attr(old))])
    assert api.post(f"/connections/{cid}/test", {}).status_code == 200

    new_url = _new_url(other_host)
    assert admin.patch(f"/providers/{pid}?force=true", {"base_url": new_url}).status_code == 200
    tested = api.post(f"/connections/{cid}/test", {})
    assert tested.status_code == 409, tested.data
    assert "base URL changed" in tested.data["error"]["message"]
    assert invoke(api, cid).status_code in (200, 409)  # the old host, or refused
    assert _to_new_host(other_host, key) == []


def test_connections_with_their_own_base_url_are_not_counted_nor_affected(api, fake_provider):
    from fakeprovider import control

    admin = api.as_user(f"admin-{uuid.uuid4().hex[:6]}", admin=True)
    pid, follower, _ = _follower(api, admin, fake_provider)
    own = api.post("/connections", {
        "name": f"own url {pid}", "provider": pid, "credentials": {"api_key": fake_key("openai")},
        "base_url": control.base_url_for("openai", fake_provider.base_url),
        "default_model": "gpt-4o"})
    assert own.status_code == 201, own.data
    resp = admin.patch(f"/providers/{pid}", {"base_url": f"{fake_provider.base_url}/x/v1"})
    assert resp.data["error"]["details"] == {"connections_affected": 1}
    assert api.delete(f"/connections/{follower}").status_code == 204
    # With no follower left, the change needs no confirmation and the other still works
    assert admin.patch(f"/providers/{pid}",
                       {"base_url": f"{fake_provider.base_url}/x/v1"}).status_code == 200
    assert api.post(f"/connections/{own.data['id']}/test", {}).status_code == 200


# --------------------------------------------------------------------------- rollback


def test_an_older_blob_of_the_same_connection_written_back_does_not_open(api, fake_provider):
    from tests.support.builders import raw_connection

    cid, old_key = create(api, fake_provider)
    old_blob = raw_connection(cid)["sealed"]
    # The owner rotates the key (e.g. the old one leaked and was revoked at the provider)
    new_key = fake_key("openai")
    assert api.patch(f"/connections/{cid}", {"credentials": {"api_key": new_key}}).status_code \
        == 200
    assert invoke(api, cid).status_code == 200  # warm, with the new key
    since = last_seq(fake_provider)
    # A table writer restores the older blob alone
    set_raw(cid, "SET sealed = :z", {":z": old_blob})
    resp = invoke(api, cid)
    assert resp.status_code == 409, resp.data
    assert resp.data["error"]["code"] == "credentials_unreadable"
    tested = api.post(f"/connections/{cid}/test", {})
    assert tested.status_code == 409
    assert sent(fake_provider, old_key, since) == []


def test_an_older_blob_of_a_set_written_back_does_not_open(api, fake_provider):
    from tests.support.builders import raw_connection

    cid, _ = create(api, fake_provider)
    first = fake_key("openai")
    assert api.post(f"/connections/{cid}/credentials",
                    {"name": "next", "credentials": {"api_key": first}}).status_code == 201
    old_blob = raw_connection(cid)["credential_sets"]["L"][0]["M"]["sealed"]
    etag = api.get(f"/connections/{cid}").headers["ETag"]
    # Replaced by a newer key under the same name
    assert api.delete(f"/connections/{cid}/credentials/next",
                      headers={"If-Match": etag}).status_code == 200
    assert api.post(f"/connections/{cid}/credentials",
                    {"name": "next", "credentials": {"api_key": fake_key("openai")}}
                    ).status_code == 201
    since = last_seq(fake_provider)
    set_raw(cid, "SET credential_sets[0].sealed = :z", {":z": old_blob})
    resp = api.post(f"/connections/{cid}/credentials/next/test", {})
    assert resp.status_code == 409, resp.data
    assert sent(fake_provider, first, since) == []
