"""The fake provider server: wire formats, SigV4, fault directives and the control API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from fakeprovider import control
from fakeprovider.catalog import (
    ANTHROPIC_MODELS,
    AZURE_DEPLOYMENTS,
    BEDROCK_MODELS,
    BEDROCK_NOT_AUTHORIZED,
    COHERE_CATALOG,
    COHERE_MODELS,
    DEFAULT_MODELS,
    FAKE_BEDROCK_SECRET,
    GOOGLE_DEFAULT_PAGE_SIZE,
    GOOGLE_MODELS,
    OPENAI_MODELS,
    PREFIXES,
    REPLY_WORDS,
    base_url_for,
    make_key,
)
from fakeprovider.faults import DirectiveError, parse_directive, plan_for
from fakeprovider.providers import PROVIDERS
from fakeprovider.server import FakeProviderServer, start_server
from fakeprovider.state import State

pytestmark = pytest.mark.unit

ADAPTERS = ("openai", "anthropic", "azure_openai", "bedrock", "google", "cohere")
API_VERSION = "2024-10-21"
SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
_counter = iter(range(1_000_000))


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProviderServer]:
    srv = start_server("127.0.0.1", 0)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _clean(server: FakeProviderServer) -> None:
    control.reset(server.base_url)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as client:
        yield client


def key_for(adapter: str, directive: str | None = None) -> str:
    """A key unique to the calling test, so counted faults never share a counter."""
    return make_key(adapter, directive, tag=f"t{next(_counter):05d}")


def auth_headers(adapter: str, key: str) -> dict[str, str]:
    if adapter == "anthropic":
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    if adapter == "azure_openai":
        return {"api-key": key}
    if adapter == "google":
        return {"x-goog-api-key": key}
    return {"Authorization": f"Bearer {key}"}  # openai, cohere, bedrock API keys


def list_path(adapter: str) -> str:
    return {
        "openai": "/models",
        "anthropic": "/v1/models",
        "azure_openai": f"/openai/models?api-version={API_VERSION}",
        "bedrock": "/foundation-models",
        "google": "/models",
        "cohere": "/v1/models",
    }[adapter]


def probe(server: FakeProviderServer, http: httpx.Client, adapter: str, key: str,
          **headers: str) -> httpx.Response:
    """The free list call of ``adapter`` (Bedrock through a Bearer API key)."""
    return http.get(server.url(adapter) + list_path(adapter),
                    headers={**auth_headers(adapter, key), **headers})


def generation(server: FakeProviderServer, http: httpx.Client, adapter: str, key: str,
               model: str | None = None, max_tokens: int = 50,
               text: str = "hi there friend") -> httpx.Response:
    """A generation request in ``adapter``'s own shape."""
    base = server.url(adapter)
    model = model or DEFAULT_MODELS[adapter]
    headers = auth_headers(adapter, key)
    if adapter == "openai":
        return http.post(f"{base}/chat/completions", headers=headers, json={
            "model": model, "messages": [{"role": "user", "content": text}],
            "max_completion_tokens": max_tokens})
    if adapter == "anthropic":
        return http.post(f"{base}/v1/messages", headers=headers, json={
            "model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": text}]})
    if adapter == "azure_openai":
        return http.post(f"{base}/openai/deployments/{model}/chat/completions",
                         params={"api-version": API_VERSION}, headers=headers, json={
                             "messages": [{"role": "user", "content": text}],
                             "max_tokens": max_tokens})
    if adapter == "bedrock":
        return http.post(f"{base}/model/{model}/converse", headers=headers, json={
            "messages": [{"role": "user", "content": [{"text": text}]}],
            "inferenceConfig": {"maxTokens": max_tokens}})
    if adapter == "google":
        return http.post(f"{base}/{model}:generateContent", headers=headers, json={
            "contents": [{"role": "user", "parts": [{"text": text}]}],
            "generationConfig": {"maxOutputTokens": max_tokens}})
    return http.post(f"{base}/v2/chat", headers=headers, json={
        "model": model, "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens})


def error_code(adapter: str, resp: httpx.Response) -> str:
    """The provider-specific error code a client would branch on."""
    if adapter == "bedrock":
        return resp.headers["x-amzn-ErrorType"].split(":")[0]
    body = resp.json()
    if adapter == "openai":
        return str(body["error"]["code"] or body["error"]["type"])
    if adapter == "anthropic":
        return str(body["error"]["type"])
    if adapter == "azure_openai":
        return str(body["error"]["code"])
    if adapter == "google":
        reasons = [d.get("reason") for d in body["error"].get("details", []) if "reason" in d]
        return str(reasons[0] if reasons else body["error"]["status"])
    return str(body["message"])


def bedrock_client(server: FakeProviderServer, service: str, access_key: str,
                   secret: str = FAKE_BEDROCK_SECRET, attempts: int = 1) -> BaseClient:
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=server.url("bedrock"),
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts},
                      connect_timeout=2, read_timeout=5),
    )


def error_of(call: Callable[[], Any]) -> tuple[int, str, str]:
    """Status, code and message of the ClientError a boto3 call raises."""
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    return (err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"],
            err["Error"]["Message"])


# ------------------------------------------------------------------------------ helpers


def test_base_url_for_maps_every_adapter_to_its_prefix() -> None:
    # Given the server root / When mapping every adapter / Then each gets its own prefix
    root = "http://127.0.0.1:9/"
    assert base_url_for("openai", root) == "http://127.0.0.1:9/openai/v1"
    assert base_url_for("anthropic", root) == "http://127.0.0.1:9/anthropic"
    assert base_url_for("azure_openai", root) == "http://127.0.0.1:9/azure"
    assert base_url_for("bedrock", root) == "http://127.0.0.1:9/bedrock"
    assert base_url_for("google", root) == "http://127.0.0.1:9/google/v1beta"
    assert base_url_for("cohere", root) == "http://127.0.0.1:9/cohere"
    assert {p.name: p.prefix for p in PROVIDERS} == PREFIXES
    with pytest.raises(ValueError, match="unknown adapter"):
        base_url_for("nope", root)


def test_make_key_embeds_the_directive() -> None:
    assert make_key("openai", "429x1", tag="a").endswith("-fk_429x1")
    assert make_key("bedrock", "401").startswith("AKIAFAKE")
    assert "fk_" not in make_key("cohere", "ok")


def test_directive_parsing_and_counted_plans() -> None:
    # Given a combined directive with counted parts
    directive = parse_directive("lat10.429x1.503x3")
    # When planning successive requests / Then counts are absolute, first failing part wins
    kinds = [plan_for(directive, n).kind for n in range(1, 6)]
    assert kinds == ["429", "503", "503", "ok", "ok"]
    assert all(plan_for(directive, n).delay_ms == 10 for n in range(1, 6))
    assert plan_for(parse_directive("429ra3"), 1).retry_after == 3
    assert plan_for(parse_directive("headroom"), 1).headroom
    with pytest.raises(DirectiveError):
        parse_directive("explode")


def test_request_log_is_a_bounded_ring_buffer() -> None:
    state = State(log_size=3)
    for i in range(5):
        state.record({"provider": "openai", "i": i})
    assert [e["i"] for e in state.requests()] == [2, 3, 4]
    assert [e["i"] for e in state.requests(limit=1)] == [4]


# ------------------------------------------------------------------------------ OpenAI


def test_openai_lists_gets_and_chats(server: FakeProviderServer, http: httpx.Client) -> None:
    key = key_for("openai")
    listing = probe(server, http, "openai", key)
    assert listing.status_code == 200
    assert [m["id"] for m in listing.json()["data"]] == list(OPENAI_MODELS)
    assert listing.headers["x-request-id"].startswith("req_")
    assert int(listing.headers["x-ratelimit-remaining-requests"]) > 9000

    one = http.get(server.url("openai") + "/models/gpt-4o", headers=auth_headers("openai", key))
    assert one.json() == {"id": "gpt-4o", "object": "model", "created": 1715367049,
                          "owned_by": "system"}

    chat = generation(server, http, "openai", key, text="one two three")
    body = chat.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"] == {"role": "assistant",
                                             "content": " ".join(REPLY_WORDS), "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": len(REPLY_WORDS),
                             "total_tokens": 3 + len(REPLY_WORDS)}


def test_openai_max_tokens_cuts_the_reply(server: FakeProviderServer, http: httpx.Client) -> None:
    body = generation(server, http, "openai", key_for("openai"), max_tokens=1).json()
    assert body["choices"][0]["message"]["content"] == REPLY_WORDS[0]
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 1


def test_openai_auth_errors(server: FakeProviderServer, http: httpx.Client) -> None:
    missing = http.get(server.url("openai") + "/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"

    key = key_for("openai", "401")
    bad = probe(server, http, "openai", key)
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "invalid_api_key"
    assert key not in bad.text  # real OpenAI only quotes a redacted key

    unknown = http.get(server.url("openai") + "/models/gpt-9", headers=auth_headers("openai", key_for("openai")))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
