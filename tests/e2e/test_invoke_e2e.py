"""Issue 7 over HTTP: `make run`'s stack (chalice local, moto, the fake providers) invoked for
all six adapters; what the fake received is read back from its request log.

``chalice local`` serves each connection on its own thread (``ThreadedHTTPServer``), so the
rate limit test below is a real race through the whole stack; it checks that the provider
calls overlapped. Its listen backlog is socketserver's default of 5, so 20 simultaneous
connects can be reset: the test opens its 20 keep-alive connections one by one first.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from fakeprovider.catalog import REPLY_TEXT
from tests.e2e.conftest import dump, fake_control
from tests.support.fakes import fake_credentials, fake_key, tag

pytestmark = pytest.mark.e2e

ADAPTERS = ("openai", "anthropic", "azure_openai", "bedrock", "google", "cohere")
PREFIX = {"openai": "/openai/v1", "anthropic": "/anthropic", "azure_openai": "/azure",
          "bedrock": "/bedrock", "google": "/google/v1beta", "cohere": "/cohere"}
MODELS = {
    "openai": ("gpt-4o-mini", "gpt-4o"),
    "anthropic": ("claude-haiku-4-5", "claude-sonnet-4-5"),
    "azure_openai": ("gpt-4o-prod", "gpt-4o-mini"),  # deployment names
    "bedrock": ("anthropic.claude-3-5-sonnet-20240620-v1:0", "amazon.titan-text-express-v1"),
    "google": ("gemini-2.5-flash", "gemini-2.5-pro"),
    "cohere": ("command-a-03-2025", "command-r-plus"),
}
TEMP_MAX = {"openai": 2.0, "anthropic": 1.0, "azure_openai": 2.0, "bedrock": 1.0,
            "google": 2.0, "cohere": 1.0}
HELLO = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hi"}]
REPLY_WORDS = len(REPLY_TEXT.split())


def new_connection(api: httpx.Client, stack: Any, adapter: str, key: str,
                   **extra: Any) -> str:
    body = {"name": f"{adapter} {tag()}", "provider": adapter,
            "credentials": fake_credentials(adapter, key),
            "base_url": stack.fake + PREFIX[adapter], "default_model": MODELS[adapter][0]}
    body.update(extra)
    resp = api.post("/connections", json=body)
    assert resp.status_code == 201, dump(resp)
    return str(resp.json()["id"])


def last_seq(stack: Any) -> int:
    entries = fake_control(stack, "GET", "/requests?limit=1")["requests"]
    return int(entries[-1]["seq"]) if entries else 0


def received(stack: Any, key: str, since: int) -> list[dict[str, Any]]:
    return list(fake_control(stack, "GET", f"/requests?fingerprint={key[-4:]}&since={since}"
                             )["requests"])


def generation_params(adapter: str, call: dict[str, Any]) -> tuple[str, Any, Any]:
    """(model, max tokens, temperature) as the provider received them."""
    body, path = call["body"] or {}, call["path"]
    if adapter in ("openai", "anthropic", "cohere"):
        tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        return body["model"], tokens, body.get("temperature")
    if adapter == "azure_openai":
        model = path.split("/deployments/")[1].split("/")[0]
        return model, body.get("max_tokens", body.get("max_completion_tokens")), \
            body.get("temperature")
    if adapter == "bedrock":
        cfg = body.get("inferenceConfig", {})
        return path.split("/model/")[1].split("/")[0], cfg.get("maxTokens"), \
            cfg.get("temperature")
    cfg = body.get("generationConfig", {})  # google
    model = path.split("/models/")[1].split(":")[0]
    return model, cfg.get("maxOutputTokens"), cfg.get("temperature")


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_invoke_each_adapter_over_http(stack, adapter):
    user = f"e2e-inv-{uuid.uuid4().hex[:8]}"
    key = fake_key(adapter)
    with stack.client(user) as api:
        # Given a connection with a default model, max_tokens and temperature
        cid = new_connection(api, stack, adapter, key,
                             settings={"max_tokens": 4, "temperature": 0.25})
        since = last_seq(stack)

        # When it is invoked with its settings, then with overrides
        first = api.post(f"/connections/{cid}/invoke", json={"messages": HELLO})
        second = api.post(f"/connections/{cid}/invoke", json={
            "messages": HELLO, "model": MODELS[adapter][1], "max_tokens": 50,
            "temperature": 0.75})

        # Then the answers are normalized
        assert first.status_code == 200, dump(first)
        assert second.status_code == 200, dump(second)
        out = first.json()
        assert set(out) == {"output_text", "model", "finish_reason", "usage", "latency_ms",
                            "provider_request_id", "credential_set", "failover_from",
                            "timeout_capped_at"}
        # The default 30 s timeout is longer than an API request may take: said so
        assert out["timeout_capped_at"] == 25
        # one key, so the primary answered and nothing failed over
        assert out["credential_set"] == "primary" and out["failover_from"] == []
        assert out["output_text"] == " ".join(REPLY_TEXT.split()[:4])
        assert out["finish_reason"] == "length"  # cut at the connection's max_tokens
        assert out["usage"] == {"input_tokens": 4, "output_tokens": 4}
        assert isinstance(out["latency_ms"], int) and out["latency_ms"] >= 0
        # the model that answered (Azure: the deployment's model, not its name)
        assert out["model"] == ("gpt-4o" if adapter == "azure_openai" else MODELS[adapter][0])
        assert out["provider_request_id"]
        assert second.json()["output_text"] == REPLY_TEXT
        assert second.json()["finish_reason"] == "stop"
        assert second.json()["usage"] == {"input_tokens": 4, "output_tokens": REPLY_WORDS}

        # And the provider received the connection's settings, then the overrides
        calls = [c for c in received(stack, key, since) if c["method"] == "POST"]
        assert [generation_params(adapter, c) for c in calls] == [
            (MODELS[adapter][0], 4, 0.25), (MODELS[adapter][1], 50, 0.75)]

        # And usage is counted
        usage = api.get(f"/connections/{cid}/stats").json()["usage"]
        assert usage["7d"]["requests"] == 2 and usage["7d"]["errors"] == 0
        assert usage["7d"]["input_tokens"] == 8
        assert usage["7d"]["output_tokens"] == 4 + REPLY_WORDS
        assert usage["7d"]["latency_p50_ms"] is not None

        # And bad overrides are refused before the provider is called
        since = last_seq(stack)
        for body, field in [
            ({"messages": HELLO, "temperature": TEMP_MAX[adapter] + 0.5}, "temperature"),
            ({"messages": HELLO, "stream": "yes"}, "stream"),
            ({"messages": []}, "messages"),
            ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
            ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
        ]:
            resp = api.post(f"/connections/{cid}/invoke", json=body)
            assert resp.status_code == 400, (body, dump(resp))
            assert resp.json()["error"]["field"] == field, dump(resp)
        assert received(stack, key, since) == []


def test_rate_limit_over_http_under_20_concurrent_calls(stack):
    user = f"e2e-rl-{uuid.uuid4().hex[:8]}"
    key = fake_key("openai", "slow1000")  # each provider call takes a second
    clients = [stack.client(user) for _ in range(20)]
    try:
        # Given a connection limited to 5 requests a minute, and 20 open connections
        cid = new_connection(clients[0], stack, "openai", key, settings={"rate_limit_rpm": 5})
        second = time.time() % 60
        if second > 50:  # the window is a calendar minute: keep the burst inside one
            time.sleep(60.5 - second)
        # Opened after any wait: httpx drops connections idle for 5 s, and 20 fresh
        # connects at once overflow chalice local's backlog of 5 (the client sees a reset).
        for c in clients:
            assert c.get("/health").status_code == 200
        since = last_seq(stack)
        barrier = threading.Barrier(20)

        def one(c: httpx.Client) -> httpx.Response:
            barrier.wait()
            return c.post(f"/connections/{cid}/invoke", json={"messages": HELLO})

        # When 20 invokes are sent at once
        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(one, clients))
    finally:
        for c in clients:
            c.close()

    # Then exactly 5 reach the provider and 15 are refused with 429 and Retry-After
    assert Counter(r.status_code for r in results) == {200: 5, 429: 15}, \
        [dump(r) for r in results]
    for r in results:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(r.headers["retry-after"]) <= 60
    posts = [c for c in received(stack, key, since) if c["method"] == "POST"]
    assert len(posts) == 5
    # And they were in flight together: chalice local did not serialize them
    arrivals = sorted(c["time"] for c in posts)
    assert arrivals[-1] - arrivals[0] < 1.0, arrivals


def test_provider_failures_over_http(stack):
    """The retry timing, hangs and the whole error mapping are proven in the integration
    tier; here the parts HTTP adds: the status, the Retry-After header and the error body."""
    user = f"e2e-err-{uuid.uuid4().hex[:8]}"
    with stack.client(user) as api:
        # A lasting provider 429 is our 429 with Retry-After and remediation
        cid = new_connection(api, stack, "openai", fake_key("openai", "429"),
                             settings={"max_retries": 0})
        resp = api.post(f"/connections/{cid}/invoke", json={"messages": HELLO})
        assert resp.status_code == 429, dump(resp)
        assert resp.json()["error"]["code"] == "rate_limited"
        assert resp.headers["retry-after"] == "1"
        assert resp.json()["error"]["remediation"]

        # A bad key is not retried and comes back as invalid_api_key, without the key
        key = fake_key("bedrock", "401")
        cid = new_connection(api, stack, "bedrock", key)
        since = last_seq(stack)
        resp = api.post(f"/connections/{cid}/invoke", json={"messages": HELLO})
        assert resp.status_code == 424, dump(resp)
        assert resp.json()["error"]["code"] == "invalid_api_key"
        assert len(received(stack, key, since)) == 1
        assert key not in resp.text


@pytest.mark.parametrize("adapter", ["anthropic", "bedrock"])
def test_streamed_invoke_over_http_is_buffered_server_sent_events(stack, adapter):
    # Given a connection on the local stack (chalice local: the Lambda handler as deployed)
    api = stack.client(f"e2e-stream-{uuid.uuid4().hex[:6]}")
    cid = new_connection(api, stack, adapter, fake_key(adapter))
    # When it is invoked with stream: true over HTTP
    resp = api.post(f"/connections/{cid}/invoke", json={"messages": HELLO, "stream": True})
    # Then the whole answer arrives as text/event-stream: deltas, then the end event
    assert resp.status_code == 200, dump(resp)
    assert resp.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in resp.text.split("\n\n") if b]
    events = [(b.split("\n")[0].removeprefix("event: "),
               json.loads(b.split("\n")[1].removeprefix("data: "))) for b in blocks]
    assert "".join(d["text"] for name, d in events if name == "delta") == REPLY_TEXT
    assert events[-1][0] == "end"
    assert events[-1][1]["usage"]["output_tokens"] == REPLY_WORDS
