"""Issue 17: a stored key goes only where its owner sent it, also from a warm Lambda.

An attacker with write access to the connections table (and none to KMS) edits a warm
connection's ``base_url``, ``owner`` or ``provider``, or destroys its sealed blob: the next
invoke must not use the decrypted key the instance cached. Written against the code before the
cache was keyed on the binding (it failed there: the cache answered for up to 5 minutes).
"""

from __future__ import annotations

import pytest

from tests.integration.test_invoke import create, invoke, last_seq, sent
from tests.support.builders import ddb, set_raw, table

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
