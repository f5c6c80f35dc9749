"""Streaming invoke (``"stream": true``): one server-sent event format for all six families.

The fake streams in each provider's own wire format (SSE for five, the AWS event stream for
Bedrock); the API answers with the normalised events, buffered (README, "Streaming invoke").
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.app import CaseInsensitiveMapping

from tests.integration.test_invoke import ADAPTERS, HELLO, create, last_seq, sent

pytestmark = pytest.mark.integration

REPLY = "Hello from fakeprovider. This is a deterministic test reply."
STREAM_PATHS = {
    "openai": "/openai/v1/chat/completions",
    "azure_openai": "/azure/openai/deployments/gpt-4o-prod/chat/completions",
    "anthropic": "/anthropic/v1/messages",
    "google": "/google/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    "cohere": "/cohere/v2/chat",
    "bedrock": "/bedrock/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse-stream",
}


def stream_invoke(api: Any, cid: str, **extra: Any) -> Any:
    body = {"messages": HELLO, "stream": True, **extra}
    resp = api._client.http.request(
        "POST", f"/connections/{cid}/invoke", body=json.dumps(body),
        headers={"content-type": "application/json", "authorization": f"Bearer {api.token}"})
    resp.headers = CaseInsensitiveMapping(resp.headers)
    resp.events = parse_sse(resp.body.decode()) if resp.status_code == 200 else None
    resp.json = json.loads(resp.body) if resp.status_code != 200 else None
    return resp


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_every_family_streams_in_one_event_format(api, fake_provider, adapter):
    # Given a connection of each family on the fake
    cid, key = create(api, fake_provider, adapter)
    since = last_seq(fake_provider)
    # When it is invoked with stream: true
    resp = stream_invoke(api, cid)
    # Then the answer is server-sent events: deltas, then one end event with usage and latency
    assert resp.status_code == 200, resp.body
    assert resp.headers["content-type"].startswith("text/event-stream")
    names = [name for name, _ in resp.events]
    assert names[-1] == "end" and set(names[:-1]) == {"delta"} and len(names) > 2
    assert "".join(data["text"] for name, data in resp.events if name == "delta") == REPLY
    end = resp.events[-1][1]
    assert end["finish_reason"] == "stop"
    assert end["usage"] == {"input_tokens": 2, "output_tokens": 9}
    assert isinstance(end["latency_ms"], int) and end["first_token_ms"] is not None
    # and the provider was asked to stream, in its own way
    calls = sent(fake_provider, key, since)
    assert [c["path"] for c in calls] == [STREAM_PATHS[adapter]]
    if adapter in ("openai", "azure_openai", "anthropic", "cohere"):
        assert calls[0]["body"]["stream"] is True


@pytest.mark.parametrize("adapter", ["openai", "anthropic", "google", "bedrock"])
def test_max_tokens_limits_the_stream(api, fake_provider, adapter):
    cid, _ = create(api, fake_provider, adapter)
    resp = stream_invoke(api, cid, max_tokens=3)
    assert resp.status_code == 200, resp.body
    text = "".join(data["text"] for name, data in resp.events if name == "delta")
    assert text.split() == REPLY.split()[:3]
    end = resp.events[-1][1]
    assert end["finish_reason"] == "length" and end["usage"]["output_tokens"] == 3


@pytest.mark.parametrize(("adapter", "directive", "status", "code"), [
    ("openai", "401", 424, "invalid_api_key"),
    ("anthropic", "404", 422, "model_not_available"),
    ("google", "quota", 429, "quota_exhausted"),
    ("cohere", "403", 424, "permission_denied"),
    ("bedrock", "401", 424, "invalid_api_key"),
])
def test_errors_before_the_first_byte_map_as_without_streaming(api, fake_provider, adapter,
                                                               directive, status, code):
    cid, _ = create(api, fake_provider, adapter, directive)
    streamed = stream_invoke(api, cid)
    plain = api.post(f"/connections/{cid}/invoke", {"messages": HELLO})
    assert streamed.status_code == plain.status_code == status
    assert streamed.json["error"]["code"] == plain.data["error"]["code"] == code


@pytest.mark.parametrize("adapter", ["openai", "anthropic", "bedrock"])
def test_retried_before_the_first_byte(api, fake_provider, adapter):
    # Given a provider that fails the first request with a 503, then answers
    cid, key = create(api, fake_provider, adapter, "503x1")
    since = last_seq(fake_provider)
    resp = stream_invoke(api, cid)
    # Then the stream is retried once, before any byte of it went out
    assert resp.status_code == 200, resp.body
    assert resp.events[-1][0] == "end"
    assert [c["status"] for c in sent(fake_provider, key, since)] == [503, 200]


def test_usage_of_a_streamed_call_is_recorded(api, fake_provider):
    cid, _ = create(api, fake_provider, "cohere")
    assert stream_invoke(api, cid).status_code == 200
    stats = api.get(f"/connections/{cid}/stats")
    assert stats.status_code == 200, stats.data
    week = stats.data["usage"]["7d"]
    assert week["requests"] == 1 and week["output_tokens"] == 9


def test_stream_must_be_a_boolean(api, fake_provider):
    cid, _ = create(api, fake_provider, "openai")
    resp = api.post(f"/connections/{cid}/invoke", {"messages": HELLO, "stream": "yes"})
    assert resp.status_code == 400
    assert "stream" in json.dumps(resp.data)

