"""Issue 12, several keys per connection: named credential sets, rotation without downtime,
failover on invoke, revocation, daily tests of every set.

API tier through ``chalice.test.Client`` against moto and the fake provider (nothing in the app
mocked); threads call the service layer itself (the test client is not thread-safe).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fakeprovider import control
from tests.conftest import CANARY
from tests.integration.test_daily_faults import inbox, message, sqs, test_batch  # noqa: F401
from tests.integration.test_invoke import HELLO, create, invoke, last_seq, sent
from tests.support.aws_calls import count_aws_calls
from tests.support.builders import caller, raw_connection, set_raw, table
from tests.support.fakes import fake_key

pytestmark = pytest.mark.integration


def sets_of(api: Any, cid: str) -> Any:
    resp = api.get(f"/connections/{cid}/credentials")
    assert resp.status_code == 200, resp.data
    return resp


def add(api: Any, cid: str, name: str, key: str, etag: str | None = None) -> Any:
    headers = {"if-match": etag} if etag else None
    return api.post(f"/connections/{cid}/credentials",
                    {"name": name, "credentials": {"api_key": key}}, headers=headers)


def etag_of(api: Any, cid: str) -> str:
    return str(api.get(f"/connections/{cid}").headers["etag"])


# --------------------------------------------------------------------------- the routes


def test_a_connection_starts_with_one_set_named_primary(api, fake_provider):
    cid, key = create(api, fake_provider)
    body = sets_of(api, cid).data
    assert body["order"] == ["primary"]
    (only,) = body["items"]
    assert only["primary"] is True and only["credentials_masked"]["api_key"].endswith(key[-4:])
    assert only["rotation_due"] is False and only["auth_failed"] is False
    conn = api.get(f"/connections/{cid}").data
    assert [s["name"] for s in conn["credential_sets"]] == ["primary"]


def test_add_test_promote_remove_with_masks_etags_and_audit(api, fake_provider):
    cid, old_key = create(api, fake_provider)
    new_key = fake_key("openai")

    # Add: 201, masks only, a new ETag; a stale If-Match is a 412 and writes nothing
    stale = etag_of(api, cid)
    added = add(api, cid, "next", new_key, stale)
    assert added.status_code == 201, added.data
    assert added.data["order"] == ["primary", "next"]
    assert added.headers["etag"] != stale
    assert new_key not in json.dumps(added.data)
    assert add(api, cid, "third", fake_key("openai"), stale).status_code == 412
    assert sets_of(api, cid).data["order"] == ["primary", "next"]

    # Test the new set: the result says which set; the connection's own status is untouched
    since = last_seq(fake_provider)
    tested = api.post(f"/connections/{cid}/credentials/next/test")
    assert tested.status_code == 200, tested.data
    assert (tested.data["status"], tested.data["credential_set"]) == ("active", "next")
    assert sent(fake_provider, new_key, since) and not sent(fake_provider, old_key, since)
    listed = sets_of(api, cid).data["items"]
    assert listed[1]["last_test"]["status"] == "active"
    assert api.get(f"/connections/{cid}").data["status"] == "untested"

    # Promote it: first in the order; invokes use it
    promoted = api.post(f"/connections/{cid}/credentials/next/promote",
                        headers={"if-match": sets_of(api, cid).headers["etag"]})
    assert promoted.status_code == 200, promoted.data
    assert promoted.data["order"] == ["next", "primary"]
    # The promoted set brings its test result: the connection shows it
    assert api.get(f"/connections/{cid}").data["status"] == "active"
    since = last_seq(fake_provider)
    out = invoke(api, cid)
    assert out.status_code == 200 and out.data["credential_set"] == "next"
    assert sent(fake_provider, new_key, since) and not sent(fake_provider, old_key, since)

    # Remove the old one; the last set cannot be removed
    gone = api.delete(f"/connections/{cid}/credentials/primary")
    assert gone.status_code == 200 and gone.data["order"] == ["next"]
    last = api.delete(f"/connections/{cid}/credentials/next")
    assert last.status_code == 409 and last.data["error"]["code"] == "last_set"

    actions = [e["action"] for e in api.get(f"/audit?target=connection:{cid}").data["items"]]
    for action in ("connection.credentials.add", "connection.credentials.test",
                   "connection.credentials.promote", "connection.credentials.remove"):
        assert action in actions, actions


def test_bad_input_is_a_named_4xx_and_writes_nothing(api, fake_provider):
    cid, _ = create(api, fake_provider)
    before = raw_connection(cid)
    cases = [
        ({"name": "Bad Name", "credentials": {"api_key": fake_key("openai")}}, 400, "name"),
        ({"name": "x", "credentials": {}}, 400, "credentials.api_key"),
        ({"name": "x", "credentials": {"api_key": "••••1234"}}, 400, "credentials.api_key"),
        ({"name": "x", "credentials": {"organization_id": "org-1"}}, 400,
         "credentials.organization_id"),
        ({"name": "primary", "credentials": {"api_key": fake_key("openai")}}, 409, "name"),
        ({"name": "x"}, 400, "credentials"),
    ]
    for body, status, field in cases:
        resp = api.post(f"/connections/{cid}/credentials", body)
        assert (resp.status_code, resp.data["error"].get("field")) == (status, field), body
    assert raw_connection(cid) == before
    for name in ("a", "b", "c", "d"):
        assert add(api, cid, name, fake_key("openai")).status_code == 201
    full = add(api, cid, "e", fake_key("openai"))
    assert full.status_code == 409 and full.data["error"]["code"] == "too_many_sets"
    assert api.post(f"/connections/{cid}/credentials/nope/promote").status_code == 404
    bad_order = api.put(f"/connections/{cid}/credentials/order", {"order": ["a", "b"]})
    assert bad_order.status_code == 400 and bad_order.data["error"]["field"] == "order"
    order = ["d", "c", "b", "a", "primary"]
    moved = api.put(f"/connections/{cid}/credentials/order", {"order": order})
    assert moved.status_code == 200 and moved.data["order"] == order


def test_another_users_sets_are_a_404_and_an_admin_acts_audited(api, fake_provider):
    cid, _ = create(api, fake_provider)
    mallory = api.as_user(f"mallory-{cid[-6:]}")
    for method, path, body in [
        ("GET", f"/connections/{cid}/credentials", None),
        ("POST", f"/connections/{cid}/credentials",
         {"name": "evil", "credentials": {"api_key": fake_key("openai")}}),
        ("POST", f"/connections/{cid}/credentials/primary/test", None),
        ("POST", f"/connections/{cid}/credentials/primary/revoke", None),
        ("POST", f"/connections/{cid}/credentials/primary/promote", None),
        ("DELETE", f"/connections/{cid}/credentials/primary", None),
    ]:
        assert mallory.request(method, path, body).status_code == 404, (method, path)
    assert sets_of(api, cid).data["order"] == ["primary"]
    admin = api.as_user("root-admin", admin=True)
    assert admin.post(f"/connections/{cid}/credentials",
                      {"name": "ops", "credentials": {"api_key": fake_key("openai")}}
                      ).status_code == 201
    events = admin.get(f"/audit?target=connection:{cid}&action=connection.credentials.add"
                       ).data["items"]
    assert events and events[0]["admin_action"] is True and events[0]["target_owner"] == api.user


# --------------------------------------------------------------------------- secrets


def test_the_canary_key_of_a_set_is_in_no_response_log_audit_event_or_attribute(
        api, fake_provider, app_logs):
    cid, _ = create(api, fake_provider)
    seen = [add(api, cid, "canary", CANARY).body.decode()]
    for path in ("/credentials", "/credentials/canary/test", ""):
        resp = (api.post(f"/connections/{cid}{path}") if path.endswith("test")
                else api.get(f"/connections/{cid}{path}"))
        seen.append(resp.body.decode())
    seen.append(api.post(f"/connections/{cid}/credentials/canary/promote").body.decode())
    seen.append(api.put(f"/connections/{cid}/credentials/order",
                        {"order": ["primary", "canary"]}).body.decode())
    assert add(api, cid, "spare", fake_key("openai")).status_code == 201
    seen.append(api.delete(f"/connections/{cid}/credentials/spare").body.decode())
    seen.append(invoke(api, cid).body.decode())
    seen.append(api.get("/connections/export").body.decode())
    seen.append(api.post(f"/connections/{cid}/credentials/canary/revoke").body.decode())
    seen.append(api.get(f"/audit?target=connection:{cid}").body.decode())
    seen.append(json.dumps(raw_connection(cid), default=str))
    from tests.support.builders import ddb

    for key in ("audit", "tests", "usage"):
        seen.append(json.dumps(ddb().scan(TableName=table(key)).get("Items", []), default=str))
    seen.append(app_logs())
    text = "\n".join(seen)
    assert CANARY not in text
    assert "canary" in text  # the set's name is not a secret: the sweep saw the right things


def test_a_blob_copied_to_another_set_does_not_open(api, fake_provider):
    cid, _ = create(api, fake_provider)
    assert add(api, cid, "next", fake_key("openai")).status_code == 201
    raw = raw_connection(cid)
    # An attacker with table access copies the primary's sealed blob over the other set's
    set_raw(cid, "SET credential_sets[0].sealed = :s", {":s": raw["sealed"]})
    resp = api.post(f"/connections/{cid}/credentials/next/test")
    assert resp.status_code == 409, resp.data
    assert resp.data["error"]["code"] == "credentials_unreadable"


def test_an_item_sealed_before_named_sets_reads_as_primary(api, fake_provider, monkeypatch):
    # Given a connection whose blob has the format-1 associated data (no set name)
    import chalicelib.crypto as crypto
    from chalicelib.api.deps import services

    cid, key = create(api, fake_provider)
    item = services().connections._repo.get(cid)
    monkeypatch.setattr(crypto, "FORMAT_VERSION", 1)
    old = services().connections._cipher_factory().seal(
        {"api_key": key}, crypto.Binding(item.owner, item.id, item.provider, item.base_url))
    monkeypatch.undo()
    assert old.v == 1
    from chalicelib.services.connections import _to_attr

    item.update(actions=[type(item).sealed.set(_to_attr(old))])

    # Then it lists as "primary", invokes, and takes a second set (written in the new shape)
    assert sets_of(api, cid).data["order"] == ["primary"]
    assert invoke(api, cid).status_code == 200
    assert add(api, cid, "next", fake_key("openai")).status_code == 201
    assert raw_connection(cid)["sealed"]["M"]["v"]["N"] == "1"  # the primary kept its blob
    assert invoke(api, cid).data["credential_set"] == "primary"


# --------------------------------------------------------------------------- rotation


def test_rotation_with_50_invokes_running_through_it_has_no_failure(api, fake_provider):
    from chalicelib.api.deps import services

    cid, old_key = create(api, fake_provider)
    new_key = fake_key("openai")
    svc = services()
    who = caller(api.user)
    # (steps of the flow done when the invoke started, status, set that answered)
    results: list[tuple[int, int, str]] = []
    lock = threading.Lock()
    phase = [0]
    stop = threading.Event()

    def invoker() -> None:
        while not stop.is_set():
            started_in = phase[0]
            try:
                out = svc.usage.invoke(who, cid, {"messages": HELLO})
                row = (started_in, 200, str(out["credential_set"]))
            except Exception as exc:  # every failure is counted, not raised
                row = (started_in, getattr(exc, "http_status", 500), type(exc).__name__)
            with lock:
                results.append(row)

    def invokes_in(p: int) -> int:
        with lock:
            return sum(1 for r in results if r[0] == p)

    def settle(p: int, at_least: int = 10) -> None:
        # Let invokes run in this phase before the next step
        while invokes_in(p) < at_least:
            threading.Event().wait(0.01)

    # While invokes run, the whole flow: add next, test it, promote it, remove the old one
    steps = []
    with ThreadPoolExecutor(max_workers=3) as pool:
        running = [pool.submit(invoker) for _ in range(3)]
        for step in (lambda: add(api, cid, "next", new_key),
                     lambda: api.post(f"/connections/{cid}/credentials/next/test"),
                     lambda: api.post(f"/connections/{cid}/credentials/next/promote"),
                     lambda: api.delete(f"/connections/{cid}/credentials/primary")):
            settle(phase[0])
            steps.append(step())
            phase[0] += 1
        settle(phase[0])
        stop.set()
        for f in running:
            f.result()
    assert [s.status_code for s in steps] == [201, 200, 200, 200], [s.data for s in steps]
    assert len(results) >= 50
    assert [r for r in results if r[1] != 200] == []
    answered = Counter((r[0], r[2]) for r in results)
    # Before the promotion the old key answered, once the old set is removed only the new
    assert answered[(0, "primary")] >= 10 and answered[(4, "next")] >= 10, answered
    assert not answered[(4, "primary")], answered
    since = last_seq(fake_provider)
    assert invoke(api, cid).data["credential_set"] == "next"
    assert not sent(fake_provider, old_key, since)


def test_a_set_past_the_rotation_age_is_due_and_said_once_in_the_digest_line(
        api, fake_provider):
    from chalicelib.api.deps import services

    svc = services()
    cid, _ = create(api, fake_provider)
    assert add(api, cid, "next", fake_key("openai")).status_code == 201
    ninety = "2026-01-01T00:00:00Z"
    set_raw(cid, "SET credential_sets[0].created_at = :t", {":t": {"S": ninety}})
    listed = sets_of(api, cid).data["items"]
    assert [s["rotation_due"] for s in listed] == [False, True]
    assert api.get(f"/connections/{cid}").data["rotation_due"] is True
    from datetime import timedelta

    from chalicelib.services.common import parse_iso

    item = svc.connections._repo.get(cid)
    days = svc.settings.rotation_days
    due_day = parse_iso(ninety) + timedelta(days=days)
    assert svc.daily._rotation_due_today(item, due_day) is True
    assert svc.daily._rotation_due_today(item, due_day + timedelta(days=1)) is False


def test_a_key_coming_due_today_is_alerted_once_naming_it(api, fake_provider, inbox):  # noqa: F811
    from datetime import timedelta

    from chalicelib.api.deps import services
    from chalicelib.services.common import iso, utcnow

    read = inbox(api.user)
    cid, _ = create(api, fake_provider)
    assert add(api, cid, "next", fake_key("openai")).status_code == 201
    days = services().settings.rotation_days
    set_raw(cid, "SET credential_sets[0].created_at = :t",
            {":t": {"S": iso(utcnow() - timedelta(days=days, hours=1))}})
    record = message([cid])
    assert test_batch([record]) == {"batchItemFailures": []}
    assert test_batch([record]) == {"batchItemFailures": []}  # redelivered: claimed, no repeat
    got = [e for e in read() if e["MessageAttributes"]["kind"]["Value"] == "rotation_due"]
    assert len(got) == 1, got
    doc = json.loads(got[0]["Message"])
    assert doc["keys"] == ["next"] and doc["connection_id"] == cid
    assert "Rotate the key of connection" in got[0]["Subject"]


# --------------------------------------------------------------------------- failover


def test_a_rate_limited_set_fails_over_to_a_working_one_in_one_invoke(api, fake_provider):
    cid, limited = create(api, fake_provider, "openai", "429")
    spare = fake_key("openai")
    assert add(api, cid, "spare", spare).status_code == 201
    since = last_seq(fake_provider)
    resp = invoke(api, cid)
    assert resp.status_code == 200, resp.data
    assert (resp.data["credential_set"], resp.data["failover_from"]) == ("spare", ["primary"])
    # One request with the limited key (not retried: there was a next set), then the spare
    assert len(sent(fake_provider, limited, since)) == 1
    assert len(sent(fake_provider, spare, since)) == 1
    # The usage records which set answered
    from tests.support.builders import ddb

    day = ddb().query(TableName=table("usage"), KeyConditionExpression="connection_id = :c",
                      ExpressionAttributeValues={":c": {"S": cid}})["Items"]
    day_item = next(i for i in day if i["sk"]["S"].startswith("day#"))
    assert day_item["set_spare"]["N"] == "1"


def test_a_set_failing_auth_is_marked_and_skipped_until_tested_again(api, fake_provider):
    cid, bad = create(api, fake_provider, "openai", "401")
    good = fake_key("openai")
    assert add(api, cid, "good", good).status_code == 201
    since = last_seq(fake_provider)
    first = invoke(api, cid)
    assert first.status_code == 200 and first.data["failover_from"] == ["primary"]
    assert sets_of(api, cid).data["items"][0]["auth_failed"] is True
    for _ in range(3):
        again = invoke(api, cid)
        assert again.status_code == 200 and again.data["failover_from"] == []
    assert len(sent(fake_provider, bad, since)) == 1  # skipped since it was marked
    # The key is fixed at the provider and tested: the mark goes, it is used first again
    control.set_fault(fake_provider.base_url, bad, "ok")
    try:
        assert api.post(f"/connections/{cid}/credentials/primary/test").data["status"] == "active"
        assert sets_of(api, cid).data["items"][0]["auth_failed"] is False
        assert invoke(api, cid).data["credential_set"] == "primary"
    finally:
        control.clear_fault(fake_provider.base_url, bad)


def test_a_single_set_answers_its_own_error(api, fake_provider):
    cid, _ = create(api, fake_provider, "openai", "401")
    resp = invoke(api, cid)
    assert resp.status_code == 424 and resp.data["error"]["code"] == "invalid_api_key"


# --------------------------------------------------------------------------- revocation


def test_a_revoked_key_never_reaches_the_provider_again_with_two_warm_instances(
        api, fake_provider):
    from chalicelib.api import deps

    cid, revoked = create(api, fake_provider)
    spare = fake_key("openai")
    assert add(api, cid, "spare", spare).status_code == 201
    who = caller(api.user)
    first = deps.services().usage
    deps.services.cache_clear()  # a second warm Lambda: its own services and caches
    second = deps.services().usage
    assert first is not second
    for inst in (first, second):
        assert inst.invoke(who, cid, {"messages": HELLO})["credential_set"] == "primary"
    with count_aws_calls() as warm:
        first.invoke(who, cid, {"messages": HELLO})
    assert warm.of("kms") == Counter()  # warm: the revoked key is in both caches

    resp = api.post(f"/connections/{cid}/credentials/primary/revoke")
    assert resp.status_code == 200 and resp.data["order"] == ["spare"]
    assert "sealed" in raw_connection(cid)  # the spare is the primary now
    since = last_seq(fake_provider)
    for _ in range(3):
        for inst in (first, second):
            assert inst.invoke(who, cid, {"messages": HELLO})["credential_set"] == "spare"
    assert sent(fake_provider, revoked, since) == []
    assert len(sent(fake_provider, spare, since)) == 6
    events = api.get(f"/audit?target=connection:{cid}&action=connection.credentials.revoke")
    assert events.data["items"][0]["detail"] == {"name": "primary", "remaining": 1}


def test_revoking_the_last_set_leaves_the_connection_needing_credentials(api, fake_provider):
    cid, _ = create(api, fake_provider)
    resp = api.post(f"/connections/{cid}/credentials/primary/revoke")
    assert resp.status_code == 200 and resp.data["needs_credentials"] is True
    raw = raw_connection(cid)
    assert "sealed" not in raw and "credential_sets" not in raw and "due_shard" not in raw
    conn = api.get(f"/connections/{cid}").data
    assert conn["needs_credentials"] is True and conn["credential_sets"] == []
    out = invoke(api, cid)
    assert out.status_code == 422 and out.data["error"]["code"] == "needs_credentials"
    # A new set brings it back
    assert add(api, cid, "fresh", fake_key("openai")).status_code == 201
    assert invoke(api, cid).data["credential_set"] == "fresh"


def test_concurrent_promote_and_remove_with_if_match_have_one_winner(api, fake_provider):
    from chalicelib.api.deps import services
    from chalicelib.errors import PreconditionFailed

    svc = services().credential_sets
    who = caller(api.user)
    for _round in range(5):
        cid, _ = create(api, fake_provider)
        assert add(api, cid, "next", fake_key("openai")).status_code == 201
        version = int(sets_of(api, cid).data["version"])
        barrier = threading.Barrier(2)

        def promote(c: str = cid, v: int = version, barrier: Any = barrier) -> str:
            barrier.wait()
            try:
                svc.promote(who, c, "next", v)
                return "won"
            except PreconditionFailed:
                return "412"

        def remove(c: str = cid, v: int = version, barrier: Any = barrier) -> str:
            barrier.wait()
            try:
                svc.remove(who, c, "next", v)
                return "won"
            except PreconditionFailed:
                return "412"

        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = sorted(f.result() for f in (pool.submit(promote), pool.submit(remove)))
        assert outcomes == ["412", "won"], outcomes
        after = sets_of(api, cid).data
        assert after["version"] == version + 1
        assert after["order"] in (["next", "primary"], ["primary"])


# --------------------------------------------------------------------------- daily run


def test_the_daily_run_tests_every_set_and_the_status_is_the_primarys(api, fake_provider):
    cid, primary = create(api, fake_provider)
    broken = fake_key("openai", "401")
    assert add(api, cid, "broken", broken).status_code == 201
    since = last_seq(fake_provider)
    with count_aws_calls() as calls:
        out = test_batch([message([cid])])
    assert out == {"batchItemFailures": []}
    assert calls.of("kms") == Counter({"Decrypt": 2}), calls  # one per set
    conn = api.get(f"/connections/{cid}").data
    assert conn["status"] == "active"
    by_name = {s["name"]: s for s in sets_of(api, cid).data["items"]}
    assert by_name["broken"]["last_test"]["status"] == "error"
    assert by_name["broken"]["last_test"]["error_code"] == "invalid_api_key"
    assert by_name["broken"]["auth_failed"] is True
    assert sent(fake_provider, primary, since) and sent(fake_provider, broken, since)


# --------------------------------------------------------------------------- export


def test_export_names_the_sets_and_import_accepts_them_without_secrets(api, fake_provider):
    cid, key = create(api, fake_provider)
    spare = fake_key("openai")
    assert add(api, cid, "spare", spare).status_code == 201
    doc = api.get("/connections/export").data
    entry = next(e for e in doc["connections"] if e["credential_sets"] == ["primary", "spare"])
    assert key not in json.dumps(doc) and spare not in json.dumps(doc)
    other = api.as_user(f"importer-{cid[-6:]}")
    made = other.post("/connections/import", {**doc, "connections": [entry]})
    assert made.status_code == 201, made.data
    (item,) = made.data["items"]
    assert item["needs_credentials"] is True
    assert item["credential_sets_to_add"] == ["primary", "spare"]
