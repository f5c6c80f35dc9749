"""Streamed generations in the runner: retries before the first byte only, a stream that
breaks after text arrived, server-sent event parsing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from chalicelib.providers.adapter import sse_events
from chalicelib.providers.base import ChatMessage, ProviderError
from chalicelib.providers.runner import StreamOutcome, stream_target
from tests.unit.providers.provider_testkit import KEY, FakeClock, Routes, make_target, reply, run

pytestmark = pytest.mark.unit

HI = [ChatMessage("user", "hi")]


def chunk(text: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    body = {"model": "gpt-4o", "choices": [{"index": 0, "delta": delta,
                                            "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


def sse(*parts: bytes) -> httpx.Response:
    return httpx.Response(200, content=b"".join(parts),
                          headers={"content-type": "text/event-stream"})


def broken_after(*parts: bytes) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            yield part
        raise httpx.ReadError("connection reset by peer")

    return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})


def _stream(routes: Routes, **kw: Any) -> StreamOutcome:
    target = make_target("openai", **kw)
    return run(stream_target(target, HI, model="gpt-4o", client=routes.client(),
                             clock=FakeClock()))


def test_deltas_and_usage_from_openai_chunks() -> None:
    usage = {"model": "gpt-4o", "choices": [],
             "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    routes = Routes({("POST", "/v1/chat/completions"): sse(
        chunk("Hel"), chunk("lo"), chunk(finish="stop"),
        f"data: {json.dumps(usage)}\n\n".encode(), b"data: [DONE]\n\n")})
    out = _stream(routes)
    assert out.deltas == ["Hel", "lo"] and out.error is None
    assert out.final()["usage"] == {"input_tokens": 1, "output_tokens": 2}
    assert out.finish_reason == "stop"
    sent = json.loads(routes.requests[0].content)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_a_503_before_the_first_byte_is_retried() -> None:
    routes = Routes({("POST", "/v1/chat/completions"): [
        reply(503, {"error": {"message": "overloaded"}}),
        sse(chunk("ok"), chunk(finish="stop"), b"data: [DONE]\n\n")]})
    out = _stream(routes)
    assert out.deltas == ["ok"] and len(routes.requests) == 2


def test_a_stream_that_breaks_after_text_is_not_retried_and_keeps_the_text() -> None:
    # Given a provider whose stream breaks after the first delta
    routes = Routes({("POST", "/v1/chat/completions"): [
        broken_after(chunk("Hel")), sse(chunk("never"), chunk(finish="stop"))]})
    # When the generation is streamed
    out = _stream(routes)
    # Then the text so far is kept, the error follows it, and nothing was sent twice
    assert out.deltas == ["Hel"]
    assert out.error is not None and out.error.code == "network_error"
    assert out.finish_reason is None
    assert len(routes.requests) == 1


def test_a_stream_that_ends_without_finishing_is_bad_response() -> None:
    routes = Routes({("POST", "/v1/chat/completions"): sse(chunk("Hel"))})
    out = _stream(routes)
    assert out.error is not None and out.error.code == "bad_response"


def test_a_failure_before_any_text_raises_like_invoke() -> None:
    routes = Routes({("POST", "/v1/chat/completions"): reply(
        401, {"error": {"message": f"Incorrect API key provided: {KEY}",
                        "code": "invalid_api_key"}})})
    with pytest.raises(ProviderError) as info:
        _stream(routes)
    assert info.value.code == "invalid_api_key"
    assert KEY not in info.value.message  # scrubbed like every provider error


def test_echoed_key_is_scrubbed_from_deltas() -> None:
    routes = Routes({("POST", "/v1/chat/completions"): sse(
        chunk(f"your key is {KEY}"), chunk(finish="stop"), b"data: [DONE]\n\n")})
    out = _stream(routes)
    assert KEY not in "".join(out.deltas)


def test_sse_parsing_of_names_comments_and_multiline_data() -> None:
    lines = [": keep-alive", "event: a", "data: {\"x\":", "data: 1}", "", "data: two",
             "id: 7", ""]

    async def feed() -> AsyncIterator[str]:
        for line in lines:
            yield line

    async def collect() -> list[tuple[str, str]]:
        return [e async for e in sse_events(feed())]

    assert run(collect()) == [("a", "{\"x\":\n1}"), ("message", "two")]
