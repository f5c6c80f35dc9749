"""`make run`'s stack over HTTP: health, identity, a connection's life against the fakes."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.e2e.conftest import dump

pytestmark = pytest.mark.e2e


def test_health_and_openapi_over_http(stack):
    health = httpx.get(f"{stack.api}/health", trust_env=False)
    assert health.status_code == 200
    assert health.json()["checks"] == {
        "dynamodb": {"ok": True, "latency_ms": health.json()["checks"]["dynamodb"]["latency_ms"]},
        "kms": {"ok": True, "latency_ms": health.json()["checks"]["kms"]["latency_ms"]},
    }
    assert httpx.get(f"{stack.api}/openapi.json", trust_env=False).status_code == 200
    assert httpx.get(f"{stack.api}/connections", trust_env=False).status_code == 401


def test_connection_lifecycle_over_http(stack):
    user = f"e2e-{uuid.uuid4().hex[:8]}"
    with stack.client(user) as api, stack.client(user + "-other") as other:
        body = {"name": "Fake OpenAI", "provider": "custom",
                "base_url": f"{stack.fake}/openai/v1",
                "credentials": {"api_key": "fk_ok_e2e_key_0123456789"},
                "default_model": "gpt-4o"}
        created = api.post("/connections", json=body)
        assert created.status_code == 201, dump(created)
        cid = created.json()["id"]
        assert created.headers["location"] == f"/connections/{cid}"
        assert "fk_ok_e2e_key_0123456789" not in created.text

        tested = api.post(f"/connections/{cid}/test")
        assert tested.status_code == 200, dump(tested)
        assert tested.json()["status"] == "active"
        assert "gpt-4o" in tested.json()["available_models"]

        listed = api.get("/connections").json()["items"]
        assert [c["status"] for c in listed] == ["active"]
        assert listed[0]["last_tested_at"] and listed[0]["latency_ms"] is not None

        invoked = api.post(f"/connections/{cid}/invoke",
                           json={"messages": [{"role": "user", "content": "say hi"}]})
        assert invoked.status_code == 200, dump(invoked)
        assert invoked.json()["usage"]["output_tokens"] > 0

        assert other.get(f"/connections/{cid}").status_code == 404
        assert api.delete(f"/connections/{cid}").status_code == 204
        assert api.get(f"/connections/{cid}").status_code == 404


def test_unknown_paths_answer_in_the_error_shape_without_echoing_the_token(stack):
    with stack.client("e2e-unknown") as api:
        resp = api.get("/no/such/route")
        assert resp.status_code == 404
        assert resp.json()["error"]["code"] == "not_found"
        token = api.headers["authorization"].split()[1]
        assert token not in resp.text
    anonymous = httpx.get(f"{stack.api}/nothing-here", trust_env=False)
    assert anonymous.status_code == 404
    assert anonymous.json()["error"]["code"] == "not_found"


def test_response_headers_over_http(stack):
    # Given the real local server (chalice local through devtools/serve.py)
    user = f"e2e-h-{uuid.uuid4().hex[:8]}"
    with stack.client(user) as api:
        answers = [api.get("/connections"), api.post("/connections", json={"name": "x"}),
                   api.get("/connections/conn_nope"), api.get("/no/such/route"),
                   api.put("/connections", json={}),
                   httpx.get(f"{stack.api}/connections", trust_env=False),
                   httpx.get(f"{stack.api}/health", trust_env=False)]
    for resp in answers:
        # Then none names the server software, every one is no-store, and the local
        # (plain HTTP) stage sends no HSTS
        assert "server" not in resp.headers, (resp.request.url, resp.headers)
        assert resp.headers.get("cache-control") == "no-store", (resp.request.url, resp.headers)
        assert "strict-transport-security" not in resp.headers
        assert "python" not in str(resp.headers).lower()
        assert "chalice" not in str(resp.headers).lower()


def test_unknown_verbs_are_a_json_405_and_head_has_no_body(stack):
    """Issue 16: `chalice local` answered TRACE/CONNECT/unknown verbs with http.server's 501
    HTML page, and HEAD with a 405 carrying a body."""
    import socket

    host, port = stack.api.removeprefix("http://").split(":")
    for verb in ("TRACE", "CONNECT", "BREW"):
        resp = httpx.request(verb, f"{stack.api}/health", trust_env=False)
        assert resp.status_code == 405, (verb, resp.text)
        assert resp.headers["content-type"].startswith("application/json")
        assert resp.json()["error"]["code"] == "method_not_allowed"
    # HEAD: the raw bytes on the wire end with the headers
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and body == b"", raw[:400]


def test_the_test_stacks_keep_their_state_out_of_the_checkout(stack):
    """Issue 16: the suite's stack wrote and then deleted the checkout's .local/run.json, so
    `make daily` said a running `make run` was not running."""
    from pathlib import Path

    from devtools import localenv

    mine = Path(stack.state) / "run.json"
    assert json.loads(mine.read_text())["api"] == stack.api
    checkout = localenv.STATE_DIR / "run.json"
    if checkout.exists():  # a `make run` of this checkout: its own file, untouched
        assert json.loads(checkout.read_text())["api"] != stack.api


def test_a_long_test_runs_in_the_background_on_the_stacks_worker(stack):
    """Issue 16 (2): `make run` feeds the work queue to the worker as Lambda would, so a
    background test of a connection allowed 60 s completes and can be polled."""
    import time

    from tests.support.fakes import fake_key

    with stack.client(f"e2e-bg-{uuid.uuid4().hex[:6]}") as api:
        made = api.post("/connections", json={
            "name": "long one", "provider": "custom", "base_url": f"{stack.fake}/openai/v1",
            "credentials": {"api_key": fake_key("openai")}, "default_model": "gpt-4o",
            "settings": {"timeout_seconds": 60}})
        assert made.status_code == 201, dump(made)
        cid = made.json()["id"]
        queued = api.post(f"/connections/{cid}/test", json={"background": True})
        assert queued.status_code == 202, dump(queued)
        location = queued.headers["location"]
        state = {"status": "queued"}
        for _ in range(120):  # polling, as a client would; no time is asserted
            state = api.get(location).json()
            if state["status"] != "queued":
                break
            time.sleep(0.5)
        assert state["status"] == "active", state
        assert state["result"]["checks"]["connectivity"]["ok"] is True
        history = api.get(f"/connections/{cid}/tests").json()["items"]
        assert [h["trigger"] for h in history] == ["manual"]
