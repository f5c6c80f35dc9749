"""The connection list shows each connection's recent activity: last test and last invoke."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_list_shows_last_test_and_last_invocation(api, fake_provider):
    # Given a connection that was tested and then invoked (once fine, once failing)
    base = f"{fake_provider.base_url}/openai/v1"
    cid = api.post("/connections", {"name": "active one", "provider": "custom",
                                    "base_url": base, "default_model": "gpt-4o",
                                    "credentials": {"api_key": "fk_ok_activity_key_01"}}
                   ).data["id"]
    assert api.post(f"/connections/{cid}/test").data["status"] == "active"
    ok = api.post(f"/connections/{cid}/invoke",
                  {"messages": [{"role": "user", "content": "hello"}]})
    assert ok.status_code == 200

    # When the owner lists their connections
    item = api.get("/connections").data["items"][0]

    # Then status, last test time and latency, and the last invocation are there
    assert item["status"] == "active"
    assert item["last_tested_at"] and item["latency_ms"] is not None
    assert item["activity"]["last_invoke_ok"] is True
    assert item["activity"]["last_invoked_at"] >= item["last_tested_at"]
