"""Issue 16: the API keeps the contract the README and the OpenAPI document state.

Each test was written against the code before its fix and failed there.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import openai_body
from tests.support.builders import provider_body
from tests.support.spies import spy_budgets

pytestmark = pytest.mark.integration


def _walk(api: Any, path: str) -> list[list[str]]:
    """Every page of a listing at limit=1, as lists of item ids."""
    pages, cursor = [], None
    for _ in range(10):
        sep = "&" if "?" in path else "?"
        url = f"{path}{sep}limit=1" + (f"&cursor={cursor}" if cursor else "")
        resp = api.get(url)
        assert resp.status_code == 200, resp.data
        key = "connection_id" if path.startswith("/usage") else "id"
        pages.append([i[key] for i in resp.data["items"]])
        cursor = resp.data["next_cursor"]
        if not cursor:
            break
    return pages


# --------------------------------------------------------------------------- pagination


def test_every_list_honours_limit_and_cursor(api):
    admin = api.as_user(f"admin-{uuid.uuid4().hex[:6]}", admin=True)
    cid = api.post("/connections", openai_body("paged one")).data["id"]
    api.post("/connections", openai_body("paged two"))
    for n in (1, 2):
        assert api.put(f"/connections/{cid}/dependents/prompt-{n}",
                       {"kind": "prompt", "display_name": f"P{n}"}).status_code == 201
        assert api.post("/notifications/subscriptions", {
            "protocol": "email",
            "endpoint": f"paged-{n}-{uuid.uuid4().hex[:8]}@example.com"}).status_code == 201
    for who, path in ((api, "/notifications/subscriptions"),
                      (api, f"/connections/{cid}/dependents"),
                      (admin, f"/usage?owner={api.user}")):
        pages = _walk(who, path)
        # Two items, one per page, none twice
        assert [len(p) for p in pages if p] == [1, 1], (path, pages)
        assert len({i for p in pages for i in p}) == 2, (path, pages)
        # A bad limit or cursor is a 400 naming it
        sep = "&" if "?" in path else "?"
        for query, field in (("limit=abc", "limit"), ("limit=0", "limit"),
                             ("cursor=not-a-cursor", "cursor")):
            bad = who.get(f"{path}{sep}{query}")
            assert bad.status_code == 400, (path, query, bad.data)
            assert bad.data["error"]["field"] == field


def test_a_cursor_of_another_users_listing_is_refused(api):
    other = api.as_user(f"other-{uuid.uuid4().hex[:6]}")
    for n in (1, 2):
        other.post("/notifications/subscriptions", {
            "protocol": "email", "endpoint": f"theirs-{n}-{uuid.uuid4().hex[:8]}@example.com"})
    cursor = other.get("/notifications/subscriptions?limit=1").data["next_cursor"]
    assert cursor
    resp = api.get(f"/notifications/subscriptions?cursor={cursor}")
    assert resp.status_code == 400 and resp.data["error"]["field"] == "cursor"


# --------------------------------------------------------------------------- providers in use


def test_a_provider_in_use_is_not_deleted_unless_forced_and_then_only_disabled(api):
    admin = api.as_user(f"admin-{uuid.uuid4().hex[:6]}", admin=True)
    pid = f"inuse-{uuid.uuid4().hex[:8]}"
    assert admin.post("/providers", provider_body(pid)).status_code == 201
    made = api.post("/connections", {"name": f"uses {pid}", "provider": pid,
                                     "credentials": {"api_key": "sk-" + "a" * 30},
                                     "default_model": "acme-1"})
    assert made.status_code == 201, made.data
    refused = admin.delete(f"/providers/{pid}")
    assert refused.status_code == 409, refused.data
    assert refused.data["error"]["code"] == "provider_in_use"
    assert refused.data["error"]["details"] == {"connections": 1}
    forced = admin.delete(f"/providers/{pid}?force=true")
    assert forced.status_code == 200, forced.data
    assert forced.data["enabled"] is False  # disabled, not deleted: its connections stay
    assert api.get(f"/connections/{made.data['id']}").status_code == 200
    # A provider nobody uses is deleted as before
    unused = f"unused-{uuid.uuid4().hex[:8]}"
    assert admin.post("/providers", provider_body(unused)).status_code == 201
    assert admin.delete(f"/providers/{unused}").status_code == 204


def test_a_disabled_or_deleted_provider_stops_invokes_at_the_next_request(api, fake_provider):
    from fakeprovider import control

    admin = api.as_user(f"admin-{uuid.uuid4().hex[:6]}", admin=True)
    pid = f"cached-{uuid.uuid4().hex[:8]}"
    assert admin.post("/providers", provider_body(
        pid, base_url=control.base_url_for("openai", fake_provider.base_url))).status_code == 201
    from tests.support.fakes import fake_key

    cid = api.post("/connections", {"name": f"warm {pid}", "provider": pid,
                                    "credentials": {"api_key": fake_key("openai")},
                                    "default_model": "gpt-4o"}).data["id"]
    hello = {"messages": [{"role": "user", "content": "hi"}]}
    assert api.post(f"/connections/{cid}/invoke", hello).status_code == 200  # warm caches
    assert admin.patch(f"/providers/{pid}", {"enabled": False}).status_code == 200
    resp = api.post(f"/connections/{cid}/invoke", hello)
    assert resp.status_code == 422, resp.data
    assert resp.data["error"]["code"] == "provider_disabled"


# --------------------------------------------------------------------------- authorization first


def test_authorization_is_checked_before_preconditions(api):
    mine = api.post("/connections", openai_body("guarded")).data["id"]
    stranger = api.as_user(f"stranger-{uuid.uuid4().hex[:6]}")
    # Another user's connection with a stale If-Match: a 404, never a 412
    for method, body in (("PATCH", {"description": "x"}), ("DELETE", None)):
        resp = stranger.request(method, f"/connections/{mine}", body,
                                headers={"If-Match": '"999"'})
        assert resp.status_code == 404, (method, resp.data)
    # A non-admin writing the catalogue with a stale If-Match: a 403, never a 412
    for method, body in (("PATCH", {"name": "x"}), ("DELETE", None)):
        resp = stranger.request(method, "/providers/openai", body,
                                headers={"If-Match": '"999"'})
        assert resp.status_code == 403, (method, resp.data)


def test_a_malformed_if_match_on_ones_own_resource_still_says_what_is_wrong(api):
    mine = api.post("/connections", openai_body("malformed etag")).data["id"]
    resp = api.patch(f"/connections/{mine}", {"description": "x"}, headers={"If-Match": "3"})
    assert resp.status_code == 412
    assert "does not name a version" in resp.data["error"]["message"]


# --------------------------------------------------------------------------- denials audited


def test_every_refused_attempt_is_audited(api):
    admin = api.as_user(f"admin-{uuid.uuid4().hex[:6]}", admin=True)
    other = api.as_user(f"owner-{uuid.uuid4().hex[:6]}")
    theirs = other.post("/notifications/subscriptions", {
        "protocol": "email", "endpoint": f"theirs-{uuid.uuid4().hex[:8]}@example.com"})
    attempts = [
        ("POST", "/providers", provider_body(f"nope-{uuid.uuid4().hex[:6]}"), 403),
        ("PATCH", "/providers/openai", {"name": "x"}, 403),
        ("DELETE", "/providers/openai", None, 403),
        ("GET", f"/usage?owner={other.user}", None, 403),
        ("GET", f"/audit?user={other.user}", None, 403),
        ("POST", "/notifications/subscriptions",
         {"protocol": "email", "endpoint": f"all-{uuid.uuid4().hex[:6]}@example.com",
          "scope": "all"}, 403),
        ("DELETE", f"/notifications/subscriptions/{theirs.data['id']}", None, 404),
    ]
    for method, path, body, status in attempts:
        resp = api.request(method, path, body)
        assert resp.status_code == status, (method, path, resp.data)
    events = admin.get(f"/audit?user={api.user}&limit=100").data["items"]
    denied = [e for e in events if e["outcome"] == "denied"]
    assert len(denied) == len(attempts), [(e["action"], e["target"]) for e in events]


# --------------------------------------------------------------------------- gateway timeout


def test_tests_and_invokes_through_the_api_end_inside_the_gateways_timeout(
        api, fake_provider, monkeypatch):
    from tests.integration.test_invoke import HELLO, create

    budgets = spy_budgets(monkeypatch, "test_target", "invoke_target")
    # A connection whose own timeout is 120 s (allowed: the daily run has its own cap)
    cid, _ = create(api, fake_provider, settings={"timeout_seconds": 120})
    tested = api.post(f"/connections/{cid}/test", {})
    invoked = api.post(f"/connections/{cid}/invoke", {"messages": HELLO})
    assert tested.status_code == invoked.status_code == 200, (tested.data, invoked.data)
    # Then each call's whole budget is 25 s (API Gateway ends a request at 29 s), and the
    # answers say so
    assert len(budgets) == 2 and all(24.0 < b <= 25.0 for b in budgets), budgets
    assert tested.data["timeout_capped_at"] == 25
    assert invoked.data["timeout_capped_at"] == 25
    # A connection within the limit is not cut and nothing is said
    quick, _ = create(api, fake_provider, settings={"timeout_seconds": 10})
    assert "timeout_capped_at" not in api.post(f"/connections/{quick}/test", {}).data
    assert "timeout_capped_at" not in api.post(f"/connections/{quick}/invoke",
                                               {"messages": HELLO}).data


# --------------------------------------------------------------------------- threads


def test_concurrent_requests_keep_their_own_caller_and_log_context(api, app_logs):
    """Chalice keeps the current request on the app object; `chalice local` serves requests
    on threads. Under 16 threads x 8 requests each request must see its own caller, and its
    log line its own request id, path and user."""
    import json as _json
    from concurrent.futures import ThreadPoolExecutor

    users = [api.as_user(f"thread-{i}-{uuid.uuid4().hex[:6]}") for i in range(16)]
    ids = {u.user: u.post("/connections", openai_body(f"mine {u.user}")).data["id"]
           for u in users}

    def hammer(u: Any) -> list[tuple[str, str]]:
        seen = []
        for _ in range(8):
            resp = u.get("/connections")
            seen.append((u.user, ",".join(i["id"] for i in resp.data["items"])))
        return seen

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = [r for rs in pool.map(hammer, users) for r in rs]
    assert all(listed == ids[user] for user, listed in results), results
    lines = [_json.loads(x) for x in app_logs().splitlines() if x.startswith("{")]
    requests = [x for x in lines if x.get("message") == "request" and x.get("method") == "GET"]
    assert len(requests) >= 16 * 8
    assert all(x.get("request_id") and x.get("path") == "/connections" and
               x.get("user_id", "").startswith("thread-") for x in requests), requests[:3]


def test_a_long_test_runs_in_the_background_with_its_own_timeout(api, fake_provider,
                                                                 monkeypatch):
    """Issue 16 (2): a connection whose timeout is longer than an API request may take can
    be tested in full on the queue worker: 202 with a test id, then its result to poll."""
    import json as _json

    from chalicelib.api import events
    from chalicelib.data import aws
    from tests.integration.test_invoke import create

    budgets = spy_budgets(monkeypatch)
    # The message goes to a private queue here (the session's work queue is shared)
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName=f"bg-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    from chalicelib.api.deps import services

    svc = services()
    import dataclasses

    monkeypatch.setattr(svc.testing, "_settings",
                        dataclasses.replace(svc.testing._settings, work_queue_url=url))
    cid, _ = create(api, fake_provider, settings={"timeout_seconds": 120})

    queued = api.post(f"/connections/{cid}/test", {"background": True})
    assert queued.status_code == 202, queued.data
    test_id = queued.data["test_id"]
    assert queued.headers["Location"] == f"/connections/{cid}/tests/{test_id}"
    polled = api.get(f"/connections/{cid}/tests/{test_id}")
    assert polled.status_code == 200 and polled.data["status"] == "queued"
    assert polled.data["result"] is None
    # Another user cannot poll it
    assert api.as_user(f"x-{uuid.uuid4().hex[:6]}").get(
        f"/connections/{cid}/tests/{test_id}").status_code == 404

    # When the worker takes the message
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    assert _json.loads(msgs[0]["Body"])["background_test"]["test_id"] == test_id
    assert events.test_batch([(msgs[0]["MessageId"], msgs[0]["Body"])]) == {
        "batchItemFailures": []}

    # Then it ran with the connection's own 120 s, and its result is there and in history
    assert budgets == [120.0]
    done = api.get(f"/connections/{cid}/tests/{test_id}").data
    assert done["status"] == "active" and done["result"]["status"] == "active"
    history = api.get(f"/connections/{cid}/tests").data["items"]
    assert [(h["trigger"], h["status"]) for h in history] == [("manual", "active")]
    # A redelivered message does not test again
    events.test_batch([(msgs[0]["MessageId"], msgs[0]["Body"])])
    assert budgets == [120.0]


@pytest.mark.parametrize("name", ["   ", "\t", " \u3000 "])
def test_a_name_of_only_whitespace_is_a_400_naming_it_on_create_and_patch(api, name):
    created = api.post("/connections", openai_body(name))
    assert created.status_code == 400 and created.data["error"]["field"] == "name"
    cid = api.post("/connections", openai_body(f"named {uuid.uuid4().hex[:6]}")).data["id"]
    patched = api.patch(f"/connections/{cid}", {"name": name})
    assert patched.status_code == 400 and patched.data["error"]["field"] == "name"
    assert api.get(f"/connections/{cid}").data["name"].startswith("named ")
