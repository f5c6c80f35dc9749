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
    for path in ("", "/tests", "/stats"):
        seen.append(api.get(f"/connections/{cid}{path}").body.decode())
    seen.append(api.get(f"/audit?target=connection:{cid}").body.decode())
    seen.append(api.get("/connections/export").body.decode())
    seen.append(json.dumps(raw_connection(cid), default=str))
    for name in ("tests", "audit", "usage"):
        seen.append(json.dumps(ddb().scan(TableName=table(name)).get("Items", []), default=str))
    seen.append(app_logs())
    leaks = [text[:200] for text in seen if recoverable(text, key)]
    assert leaks == []
