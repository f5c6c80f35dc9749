"""The daily run on the local stack: `make daily` and `make alerts` against the fakes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.conftest import dump, fake_control

pytestmark = pytest.mark.e2e


def _create(api, body):
    resp = api.post("/connections", json=body)
    assert resp.status_code == 201, dump(resp)
    return resp.json()["id"]


def test_daily_run_statuses_history_alerts_and_recovery(stack):
    user = f"daily-{uuid.uuid4().hex[:8]}"
    suffix = uuid.uuid4().hex[:8]
    keys = {
        "healthy": f"fk_ok_{suffix}_healthy",
        "failing": f"fk_401_{suffix}_failing",
        "slow": f"fk_slow2500_{suffix}_slow",
        "hanging": f"fk_hang_{suffix}_hanging",
    }
    with stack.client("daily-admin", admin=True) as admin, stack.client(user) as api:
        # Given a provider whose slow threshold is 1500 ms (headroom on a loaded machine), and four
        # connections
        pid = f"fastcheck-{suffix}"
        made = admin.post("/providers", json={
            "id": pid, "name": "Fast check", "adapter": "openai",
            "base_url": f"{stack.fake}/openai/v1",
            "credential_fields": [{"name": "api_key", "label": "API key", "secret": True,
                                   "required": True}],
            "default_settings": {"timeout_seconds": 30, "max_retries": 0,
                                 "slow_threshold_ms": 1500},
        })
        assert made.status_code == 201, dump(made)
        ids = {
            "healthy": _create(api, {"name": "healthy", "provider": pid,
                                     "credentials": {"api_key": keys["healthy"]},
                                     "default_model": "gpt-4o"}),
            "failing": _create(api, {"name": "failing", "provider": "anthropic",
                                     "base_url": f"{stack.fake}/anthropic",
                                     "credentials": {"api_key": keys["failing"]},
                                     "default_model": "claude-sonnet-4-5"}),
            "slow": _create(api, {"name": "slow", "provider": pid,
                                  "credentials": {"api_key": keys["slow"]},
                                  "default_model": "gpt-4o"}),
            "hanging": _create(api, {"name": "hanging", "provider": pid,
                                     "credentials": {"api_key": keys["hanging"]},
                                     "default_model": "gpt-4o",
                                     "settings": {"timeout_seconds": 2, "max_retries": 0}}),
        }

        # When the daily run goes
        first = _summary(stack.run_tool("devtools.daily", "daily", "--json"))
        assert first["connections_queued"] >= 4

        # Then every status and history entry is right
        expected = {"healthy": ("active", None), "failing": ("error", "invalid_api_key"),
                    "slow": ("warning", None), "hanging": ("error", "timeout")}
        for name, cid in ids.items():
            conn = api.get(f"/connections/{cid}").json()
            assert (conn["status"], conn["last_test"]["error_code"]) == expected[name], name
            history = api.get(f"/connections/{cid}/tests").json()["items"]
            assert [(h["trigger"], h["status"]) for h in history] == [
                ("daily", expected[name][0])], name
        hang = api.get(f"/connections/{ids['hanging']}/tests").json()["items"][0]
        assert hang["latency_ms"] <= 3000  # timeout_seconds 2 plus at most 1 s

        # And each failing connection alerted once, without any secret
        lines = [ln for ln in stack.run_tool("devtools.daily", "alerts").splitlines()
                 if f"owner={user}" in ln]
        assert sorted((ln.split()[1], ln.split()[2]) for ln in lines) == sorted([
            ("failure", ids["failing"]), ("failure", ids["hanging"])])
        inbox = (stack_inbox := _inbox_text())
        for key in keys.values():
            assert key not in inbox

        # When it runs again the same day: nothing is tested or alerted again
        second = _summary(stack.run_tool("devtools.daily", "daily", "--json"))
        for cid in ids.values():
            assert len(api.get(f"/connections/{cid}/tests").json()["items"]) == 1
        assert second["alerts_sent"] == 0
        lines2 = [ln for ln in stack.run_tool("devtools.daily", "alerts").splitlines()
                  if f"owner={user}" in ln]
        assert len(lines2) == len(lines)

        # When the failing key recovers and the next day's run goes
        fake_control(stack, "PUT", f"/keys/{keys['failing']}", {"fault": "ok"})
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        stack.run_tool("devtools.daily", "daily", "--json", "--now", tomorrow)
        lines3 = [ln for ln in stack.run_tool("devtools.daily", "alerts").splitlines()
                  if f"owner={user}" in ln]
        new = lines3[len(lines):]
        # Then exactly one recovery message (the hanging one is still failing: no reminder
        # before 7 days)
        assert [(ln.split()[1], ln.split()[2]) for ln in new] == [("recovery", ids["failing"])]
        assert api.get(f"/connections/{ids['failing']}").json()["status"] == "active"

        # When a run plays a day more than a week on (make daily NOW=...): the alert rules use
        # that day too, so the connection still failing gets its reminder
        later = (datetime.now(UTC) + timedelta(days=8)).isoformat()
        stack.run_tool("devtools.daily", "daily", "--json", "--now", later)
        lines4 = [ln for ln in stack.run_tool("devtools.daily", "alerts").splitlines()
                  if f"owner={user}" in ln]
        assert [(ln.split()[1], ln.split()[2]) for ln in lines4[len(lines3):]] == [
            ("reminder", ids["hanging"])]
        assert stack_inbox is not None


def _summary(stdout: str) -> dict:
    # Log lines (JSON too) come first; the summary is the last line.
    return json.loads(stdout.strip().splitlines()[-1])


def _inbox_text() -> str:
    from devtools import localenv

    path = localenv.STATE_DIR / "alerts.jsonl"
    return path.read_text() if path.exists() else ""
