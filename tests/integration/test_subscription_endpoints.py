"""Issue 17 (8): an alert address belongs to one owner.

SNS keeps one subscription per (topic, protocol, address). Written against the code before the
change, where a second user subscribing the first user's address took the subscription over
(its filter moved to the second owner on the emulator) and the second user's DELETE ended the
first user's alerts.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest

from tests.integration.test_daily_faults import _arn_of, _sub_attrs
from tests.support.builders import caller

pytestmark = pytest.mark.integration


def address() -> str:
    return f"shared-{uuid.uuid4().hex[:10]}@Example.com"


def subscribe(api: Any, endpoint: str) -> Any:
    return api.post("/notifications/subscriptions", {"protocol": "email", "endpoint": endpoint})


def test_another_owners_address_is_a_409_and_her_subscription_is_untouched(api):
    alice, bob = api, api.as_user(f"bob-{uuid.uuid4().hex[:8]}")
    endpoint = address()
    mine = subscribe(alice, endpoint)
    assert mine.status_code == 201, mine.data
    arn = _arn_of(mine.data["id"], alice.user)

    # Bob tries the same address, also spelt in another case
    for spelling in (endpoint, endpoint.upper().replace("@EXAMPLE.COM", "@example.com")):
        resp = subscribe(bob, spelling)
        assert resp.status_code == 409, resp.data
        assert resp.data["error"]["code"] == "endpoint_taken"
        assert resp.data["error"]["field"] == "endpoint"
    assert bob.get("/notifications/subscriptions").data["items"] == []

    # Alice's subscription still filters on her, and still exists in SNS
    assert json.loads(_sub_attrs(arn)["FilterPolicy"]) == {"owner": [alice.user]}
    assert [s["id"] for s in alice.get("/notifications/subscriptions").data["items"]] == [
        mine.data["id"]]

    # Once she deletes it, the address is free for Bob
    assert alice.delete(f"/notifications/subscriptions/{mine.data['id']}").status_code == 204
    theirs = subscribe(bob, endpoint)
    assert theirs.status_code == 201, theirs.data
    assert json.loads(_sub_attrs(_arn_of(theirs.data["id"], bob.user))["FilterPolicy"]) == {
        "owner": [bob.user]}


def test_two_owners_racing_for_one_address_have_one_winner(api):
    # At the service (the in-process test client shares one current request across threads)
    from chalicelib.api.deps import services
    from chalicelib.errors import Conflict

    endpoint = address()
    users = [f"racer-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    barrier = threading.Barrier(len(users))
    outcome: dict[str, str] = {}

    def go(user: str) -> None:
        barrier.wait()
        try:
            services().subscriptions.subscribe(caller(user), {"protocol": "email",
                                                              "endpoint": endpoint})
            outcome[user] = "created"
        except Conflict as exc:
            outcome[user] = exc.code

    threads = [threading.Thread(target=go, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcome.values()) == ["created"] + ["endpoint_taken"] * 3, outcome
    winner = next(u for u in users if outcome[u] == "created")
    sub = api.as_user(winner).get("/notifications/subscriptions").data["items"][0]
    assert json.loads(_sub_attrs(_arn_of(sub["id"], winner))["FilterPolicy"]) == {
        "owner": [winner]}


def test_a_failed_sns_subscribe_leaves_the_address_free(api, monkeypatch):
    from chalicelib.data import aws

    endpoint = address()
    sns = aws.client("sns")
    real = sns.subscribe

    def broken(**_: Any) -> Any:
        raise RuntimeError("SNS down")

    monkeypatch.setattr(sns, "subscribe", broken)
    assert subscribe(api, endpoint).status_code == 500
    monkeypatch.setattr(sns, "subscribe", real)
    other = api.as_user(f"later-{uuid.uuid4().hex[:8]}")
    assert subscribe(other, endpoint).status_code == 201
