"""Issue 17 (3, 4): what a hostile provider of our own can make us store, say or leak.

Written against the code before the change: there a 1.7 MB model listing made ``POST /test``
a 500 (a DynamoDB item over 400 KB), and a key echoed back upper-cased, reversed, in hex, as
HTML entities or base64 reached the test result, the history, the alert and invoke output.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_daily_faults import inbox, message, sqs, test_batch  # noqa: F401
from tests.support.builders import ddb, raw_connection, table
from tests.support.hostile import HostileProvider, encodings
from tests.support.leaks import recoverable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileProvider]:
    server = HostileProvider().start()
    yield server
    server.stop()


def connect(api: Any, hostile: HostileProvider, mode: str) -> tuple[str, str]:
    key = f"sk-hostile-{mode}-{secrets.token_hex(16)}"
    resp = api.post("/connections", {
        "name": f"hostile {mode} {key[-6:]}", "provider": "custom",
        "base_url": hostile.base_url, "credentials": {"api_key": key},
        "default_model": "gpt-4o", "settings": {"max_retries": 0}})
    assert resp.status_code == 201, resp.data
    return resp.data["id"], key


def test_a_huge_model_listing_is_capped_before_it_is_stored(api, hostile):
    cid, _ = connect(api, hostile, "huge")
    resp = api.post(f"/connections/{cid}/test", {})
    assert resp.status_code == 200, resp.data
    models = api.get(f"/connections/{cid}").data["available_models"]
    # What the README promises (chalicelib.providers.adapter.MAX_MODELS, MAX_MODELS_CHARS)
    assert 0 < len(models) <= 1000
    assert sum(len(m) for m in models) <= 64 * 1024
    # The history item and the connection stay far under DynamoDB's 400 KB
    history = api.get(f"/connections/{cid}/tests").data["items"]
    assert len(history) == 1
    assert len(json.dumps(raw_connection(cid), default=str)) < 200_000


def test_every_encoding_a_hostile_provider_echoes_is_caught_everywhere(api, hostile, inbox,  # noqa: F811
                                                                       app_logs):
    read = inbox(api.user)
    cid, key = connect(api, hostile, "echo")
    assert all(recoverable(form, key) for form in encodings(key))  # the sweep can see them

    seen: list[str] = []
    tested = api.post(f"/connections/{cid}/test", {})
    assert tested.status_code == 200 and tested.data["status"] == "error", tested.data
    assert tested.data["error"]["code"] == "invalid_api_key"
    seen.append(tested.body.decode())
    invoked = api.post(f"/connections/{cid}/invoke",
                       {"messages": [{"role": "user", "content": "hi"}]})
    assert invoked.status_code == 200, invoked.data
    assert "[REDACTED]" in invoked.data["output_text"]
    seen.append(invoked.body.decode())
    assert test_batch([message([cid])]) == {"batchItemFailures": []}
    alerts = read()
    assert alerts, "the daily failure was alerted"
    seen += [json.dumps(a) for a in alerts]
    # A second key, tested on its own as a credential set
    added = api.post(f"/connections/{cid}/credentials",
                     {"name": "spare", "credentials": {"api_key": key + "-2"}})
    assert added.status_code == 201, added.data
    seen.append(added.body.decode())
    seen.append(api.post(f"/connections/{cid}/credentials/spare/test", {}).body.decode())
    unsaved = api.post("/connections/test", {
        "name": "draft", "provider": "custom", "base_url": hostile.base_url,
        "credentials": {"api_key": key}, "default_model": "gpt-4o"})
    seen.append(unsaved.body.decode())
    draft = api.post(f"/connections/{cid}/test", {"changes": {"default_model": "gpt-4o-mini"}})
    seen.append(draft.body.decode())
    for path in ("", "/tests", "/stats", "/credentials", "/dependents"):
        seen.append(api.get(f"/connections/{cid}{path}").body.decode())
    for path in ("/connections", "/connections/export", f"/audit?target=connection:{cid}",
                 "/audit", f"/usage?owner={api.user}", "/incidents",
                 "/notifications/subscriptions"):
        seen.append(api.get(path).body.decode())
    seen.append(json.dumps(raw_connection(cid), default=str))
    # Every table of the stack (history, audit, usage, idempotency, run state, ...)
    from chalicelib.settings import TABLE_ENV

    for name in TABLE_ENV:
        seen.append(json.dumps(ddb().scan(TableName=table(name)).get("Items", []), default=str))
    seen.append(app_logs())
    leaks = [text[:200] for text in seen if recoverable(text, key)]
    assert leaks == []


# --------------------------------------------------------------------------- bounded work


def _settings(monkeypatch: Any, **values: Any) -> None:
    import dataclasses

    from chalicelib.api.deps import services

    svc = services()
    for holder in (svc.testing, svc.connections):
        monkeypatch.setattr(holder, "_settings", dataclasses.replace(holder._settings, **values))


def test_a_test_sends_a_bounded_number_of_requests_whatever_max_retries(api, hostile):
    from chalicelib.api.deps import services

    cid, key = connect(api, hostile, "busy")
    assert api.patch(f"/connections/{cid}", {"settings": {"max_retries": 10}}).status_code == 200
    resp = api.post(f"/connections/{cid}/test", {})
    assert resp.status_code == 200 and resp.data["error"]["code"] == "rate_limited", resp.data
    sent = [c for c in hostile.calls if c[2] == key]
    cap = services().settings.provider_calls_per_test
    assert len(sent) == cap < 11, sent  # 1 + 10 retries before
    assert f"stopped after {cap} requests" in resp.data["error"]["message"]


def test_tests_per_user_and_minute_are_limited(api, hostile, monkeypatch):
    _settings(monkeypatch, tests_per_minute=3)
    cid, key = connect(api, hostile, "fine")
    codes = [api.post(f"/connections/{cid}/test", {}).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    before = len([c for c in hostile.calls if c[2] == key])
    refused = api.post(f"/connections/{cid}/test", {})
    assert refused.status_code == 429, refused.data
    assert refused.data["error"]["code"] == "too_many_tests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # An unsaved test and a credential set's test count too; nothing reached the provider
    unsaved = api.post("/connections/test", {
        "name": "draft", "provider": "custom", "base_url": hostile.base_url,
        "credentials": {"api_key": key}, "default_model": "gpt-4o"})
    assert unsaved.status_code == 429
    assert api.post(f"/connections/{cid}/credentials/primary/test", {}).status_code == 429
    assert len([c for c in hostile.calls if c[2] == key]) == before
    # Another user is not affected
    other = api.as_user(f"other-{secrets.token_hex(4)}")
    theirs, _ = connect(other, hostile, "fine")
    assert other.post(f"/connections/{theirs}/test", {}).status_code == 200


def test_connections_per_user_are_capped_for_creates_and_imports(api, hostile, monkeypatch):
    _settings(monkeypatch, max_connections_per_user=2)
    connect(api, hostile, "fine")
    connect(api, hostile, "fine")
    resp = api.post("/connections", {
        "name": "third", "provider": "custom", "base_url": hostile.base_url,
        "credentials": {"api_key": f"sk-hostile-fine-{secrets.token_hex(16)}"},
        "default_model": "gpt-4o"})
    assert resp.status_code == 409 and resp.data["error"]["code"] == "too_many_connections"
    doc = {"format": "llm-connections-export", "version": 1, "connections": [
        {"name": "imported", "provider": "custom", "base_url": hostile.base_url,
         "default_model": "gpt-4o"}]}
    imported = api.post("/connections/import", doc)
    assert imported.status_code == 409, imported.data
    assert len(api.get("/connections").data["items"]) == 2
