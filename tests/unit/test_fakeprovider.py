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


def probe(
    server: FakeProviderServer, http: httpx.Client, adapter: str, key: str, **headers: str
) -> httpx.Response:
    """The free list call of ``adapter`` (Bedrock through a Bearer API key)."""
    return http.get(
        server.url(adapter) + list_path(adapter), headers={**auth_headers(adapter, key), **headers}
    )


def generation(
    server: FakeProviderServer,
    http: httpx.Client,
    adapter: str,
    key: str,
    model: str | None = None,
    max_tokens: int = 50,
    text: str = "hi there friend",
) -> httpx.Response:
    """A generation request in ``adapter``'s own shape."""
    base = server.url(adapter)
    model = model or DEFAULT_MODELS[adapter]
    headers = auth_headers(adapter, key)
    if adapter == "openai":
        return http.post(
            f"{base}/chat/completions",
            headers=headers,
            json={
                "model": model,
                "messages": [{"role": "user", "content": text}],
                "max_completion_tokens": max_tokens,
            },
        )
    if adapter == "anthropic":
        return http.post(
            f"{base}/v1/messages",
            headers=headers,
            json={
                "model": model,
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": text}],
            },
        )
    if adapter == "azure_openai":
        return http.post(
            f"{base}/openai/deployments/{model}/chat/completions",
            params={"api-version": API_VERSION},
            headers=headers,
            json={"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens},
        )
    if adapter == "bedrock":
        return http.post(
            f"{base}/model/{model}/converse",
            headers=headers,
            json={
                "messages": [{"role": "user", "content": [{"text": text}]}],
                "inferenceConfig": {"maxTokens": max_tokens},
            },
        )
    if adapter == "google":
        return http.post(
            f"{base}/{model}:generateContent",
            headers=headers,
            json={
                "contents": [{"role": "user", "parts": [{"text": text}]}],
                "generationConfig": {"maxOutputTokens": max_tokens},
            },
        )
    return http.post(
        f"{base}/v2/chat",
        headers=headers,
        json={
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
        },
    )


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


def bedrock_client(
    server: FakeProviderServer,
    service: str,
    access_key: str,
    secret: str = FAKE_BEDROCK_SECRET,
    attempts: int = 1,
) -> BaseClient:
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=server.url("bedrock"),
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=2,
            read_timeout=5,
        ),
    )


def error_of(call: Callable[[], Any]) -> tuple[int, str, str]:
    """Status, code and message of the ClientError a boto3 call raises."""
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    return (
        err["ResponseMetadata"]["HTTPStatusCode"],
        err["Error"]["Code"],
        err["Error"]["Message"],
    )


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
    assert one.json() == {
        "id": "gpt-4o",
        "object": "model",
        "created": 1715367049,
        "owned_by": "system",
    }

    chat = generation(server, http, "openai", key, text="one two three")
    body = chat.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": " ".join(REPLY_WORDS),
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": len(REPLY_WORDS),
        "total_tokens": 3 + len(REPLY_WORDS),
    }


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

    unknown = http.get(
        server.url("openai") + "/models/gpt-9", headers=auth_headers("openai", key_for("openai"))
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"


# ------------------------------------------------------------------------------ Anthropic


def test_anthropic_lists_models_in_pages(server: FakeProviderServer, http: httpx.Client) -> None:
    # Given a small page size
    headers = auth_headers("anthropic", key_for("anthropic"))
    seen: list[str] = []
    pages = 0
    params: dict[str, Any] = {"limit": 3}
    # When following after_id until has_more is false
    while True:
        page = http.get(
            server.url("anthropic") + "/v1/models", params=params, headers=headers
        ).json()
        pages += 1
        ids = [m["id"] for m in page["data"]]
        assert page["first_id"] == ids[0] and page["last_id"] == ids[-1]
        seen += ids
        if not page["has_more"]:
            break
        params["after_id"] = page["last_id"]
    # Then every model comes back once, over several pages
    assert seen == list(ANTHROPIC_MODELS)
    assert pages == 3
    default = http.get(server.url("anthropic") + "/v1/models", headers=headers).json()
    assert len(default["data"]) == len(ANTHROPIC_MODELS) and default["has_more"] is False
    one = http.get(server.url("anthropic") + "/v1/models/claude-sonnet-4-5", headers=headers)
    assert one.json()["display_name"] == "Claude Sonnet 4.5"


def test_anthropic_messages(server: FakeProviderServer, http: httpx.Client) -> None:
    resp = generation(server, http, "anthropic", key_for("anthropic"), max_tokens=2, text="a b c d")
    body = resp.json()
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "claude-haiku-4-5"
    assert body["content"] == [{"type": "text", "text": " ".join(REPLY_WORDS[:2])}]
    assert body["stop_reason"] == "max_tokens"
    assert body["usage"] == {"input_tokens": 4, "output_tokens": 2}
    assert resp.headers["request-id"].startswith("req_")
    assert "anthropic-ratelimit-requests-remaining" in resp.headers


def test_anthropic_requires_version_and_key(server: FakeProviderServer, http: httpx.Client) -> None:
    url = server.url("anthropic") + "/v1/models"
    no_version = http.get(url, headers={"x-api-key": key_for("anthropic")})
    assert no_version.status_code == 400
    assert no_version.json()["error"]["type"] == "invalid_request_error"

    bad = probe(server, http, "anthropic", key_for("anthropic", "401"))
    body = bad.json()
    assert bad.status_code == 401
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert body["request_id"] == bad.headers["request-id"]


# ------------------------------------------------------------------------------ Azure


def test_azure_models_need_api_version(server: FakeProviderServer, http: httpx.Client) -> None:
    headers = auth_headers("azure_openai", key_for("azure_openai"))
    url = server.url("azure_openai") + "/openai/models"
    assert http.get(url, headers=headers).status_code == 404
    listing = http.get(url, params={"api-version": API_VERSION}, headers=headers)
    assert listing.status_code == 200
    assert listing.json()["data"][0]["capabilities"]["chat_completion"] is True


def test_azure_chat_on_a_deployment(server: FakeProviderServer, http: httpx.Client) -> None:
    key = key_for("azure_openai")
    ok = generation(server, http, "azure_openai", key, model="gpt-4o-prod")
    assert ok.status_code == 200
    assert ok.json()["model"] == AZURE_DEPLOYMENTS["gpt-4o-prod"]
    assert ok.json()["object"] == "chat.completion"

    missing = generation(server, http, "azure_openai", key, model="no-such-deployment")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "DeploymentNotFound"

    bad = generation(server, http, "azure_openai", key_for("azure_openai", "401"))
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "401"
    assert bad.json()["error"]["message"].startswith("Access denied due to invalid subscription")


# ------------------------------------------------------------------------------ Bedrock (boto3)


def test_bedrock_boto3_control_plane_and_runtime(server: FakeProviderServer) -> None:
    # Given real boto3 clients pointed at the fake and signing with the fake secret
    key = key_for("bedrock")
    bedrock = bedrock_client(server, "bedrock", key)
    runtime = bedrock_client(server, "bedrock-runtime", key)
    # When listing, checking availability and conversing
    summaries = bedrock.list_foundation_models()["modelSummaries"]
    allowed = bedrock.get_foundation_model_availability(modelId=SONNET)
    denied = bedrock.get_foundation_model_availability(modelId=BEDROCK_NOT_AUTHORIZED[0])
    answer = runtime.converse(
        modelId=SONNET,
        messages=[{"role": "user", "content": [{"text": "hello there"}]}],
        inferenceConfig={"maxTokens": 3},
    )
    # Then the shapes are the real ones
    assert [s["modelId"] for s in summaries] == list(BEDROCK_MODELS)
    assert summaries[0]["modelArn"] == f"arn:aws:bedrock:us-east-1::foundation-model/{SONNET}"
    assert summaries[0]["modelLifecycle"] == {"status": "ACTIVE"}
    assert allowed["authorizationStatus"] == "AUTHORIZED"
    assert allowed["agreementAvailability"] == {"status": "AVAILABLE"}
    assert denied["authorizationStatus"] == "NOT_AUTHORIZED"
    assert answer["output"]["message"]["content"] == [{"text": " ".join(REPLY_WORDS[:3])}]
    assert answer["stopReason"] == "max_tokens"
    assert answer["usage"] == {"inputTokens": 2, "outputTokens": 3, "totalTokens": 5}
    assert answer["metrics"]["latencyMs"] >= 1
    # And a model listed but not enabled cannot be used
    status, code, _ = error_of(
        lambda: runtime.converse(
            modelId=BEDROCK_NOT_AUTHORIZED[0],
            messages=[{"role": "user", "content": [{"text": "hi"}]}],
        )
    )
    assert (status, code) == (403, "AccessDeniedException")


def test_bedrock_verifies_sigv4(server: FakeProviderServer) -> None:
    wrong_secret = bedrock_client(server, "bedrock", key_for("bedrock"), secret="not-the-secret")
    status, code, _ = error_of(wrong_secret.list_foundation_models)
    assert (status, code) == (403, "InvalidSignatureException")

    unknown_key = bedrock_client(server, "bedrock", "AKIAREALKEY000000001")
    status, code, _ = error_of(unknown_key.list_foundation_models)
    assert (status, code) == (403, "UnrecognizedClientException")

    # The region comes from the credential scope, so any region verifies.
    runtime = boto3.client(
        "bedrock-runtime",
        region_name="eu-west-3",
        endpoint_url=server.url("bedrock"),
        aws_access_key_id=key_for("bedrock"),
        aws_secret_access_key=FAKE_BEDROCK_SECRET,
    )
    out = runtime.converse(
        modelId="meta.llama3-70b-instruct-v1:0",
        messages=[{"role": "user", "content": [{"text": "hi"}]}],
    )
    assert out["stopReason"] == "end_turn"


@pytest.mark.parametrize(
    ("directive", "status", "code"),
    [
        ("401", 403, "UnrecognizedClientException"),
        ("403", 403, "AccessDeniedException"),
        ("429", 429, "ThrottlingException"),
        ("500", 500, "InternalServerException"),
        ("503", 503, "ServiceUnavailableException"),
    ],
)
def test_bedrock_fault_codes_through_boto3(
    server: FakeProviderServer, directive: str, status: int, code: str
) -> None:
    client = bedrock_client(server, "bedrock", key_for("bedrock", directive))
    assert error_of(client.list_foundation_models)[:2] == (status, code)


def test_bedrock_404_hides_the_catalog(server: FakeProviderServer) -> None:
    client = bedrock_client(server, "bedrock", key_for("bedrock", "404"))
    listed = [s["modelId"] for s in client.list_foundation_models()["modelSummaries"]]
    assert SONNET not in listed and listed
    status, code, _ = error_of(lambda: client.get_foundation_model_availability(modelId=SONNET))
    assert (status, code) == (404, "ResourceNotFoundException")


def test_bedrock_counted_fault_lets_boto3_retry_through(server: FakeProviderServer) -> None:
    # Given a key failing its first two requests and a client making up to three attempts
    key = key_for("bedrock", "503x2")
    client = bedrock_client(server, "bedrock-runtime", key, attempts=3)
    # When conversing once
    out = client.converse(modelId=SONNET, messages=[{"role": "user", "content": [{"text": "x"}]}])
    # Then the third attempt succeeded
    assert out["ResponseMetadata"]["RetryAttempts"] == 2
    log = control.requests(server.base_url, provider="bedrock", fingerprint=key[-4:])
    assert [e["status"] for e in log] == [503, 503, 200]


# ------------------------------------------------------------------------------ Google


def test_google_lists_models_in_pages(server: FakeProviderServer, http: httpx.Client) -> None:
    headers = auth_headers("google", key_for("google"))
    seen: list[str] = []
    params: dict[str, str] = {}
    pages = 0
    while True:
        page = http.get(server.url("google") + "/models", params=params, headers=headers).json()
        pages += 1
        assert len(page["models"]) <= GOOGLE_DEFAULT_PAGE_SIZE
        seen += [m["name"] for m in page["models"]]
        if "nextPageToken" not in page:
            break
        params["pageToken"] = page["nextPageToken"]
    assert seen == list(GOOGLE_MODELS)
    assert pages > 1
    big = http.get(
        server.url("google") + "/models", params={"pageSize": 100}, headers=headers
    ).json()
    assert len(big["models"]) == len(GOOGLE_MODELS) and "nextPageToken" not in big
    one = http.get(server.url("google") + "/models/gemini-2.5-pro", headers=headers).json()
    assert one["name"] == "models/gemini-2.5-pro"
    assert "generateContent" in one["supportedGenerationMethods"]


def test_google_generate_content(server: FakeProviderServer, http: httpx.Client) -> None:
    body = generation(server, http, "google", key_for("google"), text="x y").json()
    candidate = body["candidates"][0]
    assert candidate["content"] == {"role": "model", "parts": [{"text": " ".join(REPLY_WORDS)}]}
    assert candidate["finishReason"] == "STOP"
    assert body["usageMetadata"] == {
        "promptTokenCount": 2,
        "candidatesTokenCount": len(REPLY_WORDS),
        "totalTokenCount": 2 + len(REPLY_WORDS),
    }
    assert body["modelVersion"] == "gemini-2.5-flash" and body["responseId"]


def test_google_bad_key_is_400_api_key_invalid(
    server: FakeProviderServer, http: httpx.Client
) -> None:
    resp = probe(server, http, "google", key_for("google", "401"))
    error = resp.json()["error"]
    assert resp.status_code == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert error["details"][0]["reason"] == "API_KEY_INVALID"


@pytest.mark.parametrize(("directive", "delay"), [("429", "1s"), ("429ra3", "3s")])
def test_google_429_carries_retry_info(
    server: FakeProviderServer, http: httpx.Client, directive: str, delay: str
) -> None:
    resp = probe(server, http, "google", key_for("google", directive))
    error = resp.json()["error"]
    retry = [d for d in error["details"] if d["@type"].endswith("RetryInfo")]
    assert resp.status_code == 429 and error["status"] == "RESOURCE_EXHAUSTED"
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]


# ------------------------------------------------------------------------------ Cohere


def test_cohere_lists_models_in_pages(server: FakeProviderServer, http: httpx.Client) -> None:
    headers = auth_headers("cohere", key_for("cohere"))
    seen: list[str] = []
    params: dict[str, Any] = {"page_size": 4}
    while True:
        page = http.get(server.url("cohere") + "/v1/models", params=params, headers=headers).json()
        seen += [m["name"] for m in page["models"]]
        if not page.get("next_page_token"):
            break
        params["page_token"] = page["next_page_token"]
    assert seen == list(COHERE_MODELS)
    chat_only = http.get(
        server.url("cohere") + "/v1/models", params={"endpoint": "chat"}, headers=headers
    ).json()
    assert [m["name"] for m in chat_only["models"]] == [
        m.name for m in COHERE_CATALOG if "chat" in m.endpoints
    ]


def test_cohere_check_api_key_and_chat(server: FakeProviderServer, http: httpx.Client) -> None:
    url = server.url("cohere") + "/v1/check-api-key"
    good = http.post(url, headers=auth_headers("cohere", key_for("cohere")))
    bad = http.post(url, headers=auth_headers("cohere", key_for("cohere", "401")))
    assert good.json()["valid"] is True
    assert bad.status_code == 200 and bad.json()["valid"] is False

    body = generation(server, http, "cohere", key_for("cohere"), max_tokens=1, text="a b").json()
    assert body["finish_reason"] == "MAX_TOKENS"
    assert body["message"] == {
        "role": "assistant",
        "content": [{"type": "text", "text": REPLY_WORDS[0]}],
    }
    assert body["usage"]["billed_units"] == {"input_tokens": 2, "output_tokens": 1}
    assert body["usage"]["tokens"] == {"input_tokens": 2, "output_tokens": 1}
    full = generation(server, http, "cohere", key_for("cohere")).json()
    assert full["finish_reason"] == "COMPLETE"


def test_cohere_bad_key(server: FakeProviderServer, http: httpx.Client) -> None:
    resp = probe(server, http, "cohere", key_for("cohere", "401"))
    assert resp.status_code == 401 and resp.json()["message"] == "invalid api token"
    invalid = probe(server, http, "cohere", key_for("cohere", "498"))
    assert invalid.status_code == 498


# ------------------------------------------------------------------------------ every provider


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_healthy_key_lists_and_generates(
    server: FakeProviderServer, http: httpx.Client, adapter: str
) -> None:
    key = key_for(adapter)
    assert probe(server, http, adapter, key).status_code == 200
    assert generation(server, http, adapter, key).status_code == 200


# directive -> adapter -> (status, error code as error_code() reads it)
ERROR_MATRIX: dict[str, dict[str, tuple[int, str]]] = {
    "401": {
        "openai": (401, "invalid_api_key"),
        "anthropic": (401, "authentication_error"),
        "azure_openai": (401, "401"),
        "bedrock": (403, "UnrecognizedClientException"),
        "google": (400, "API_KEY_INVALID"),
        "cohere": (401, "invalid api token"),
    },
    "403": {
        "openai": (403, "unsupported_country_region_territory"),
        "anthropic": (403, "permission_error"),
        "azure_openai": (403, "403"),
        "bedrock": (403, "AccessDeniedException"),
        "google": (403, "PERMISSION_DENIED"),
        "cohere": (403, "You do not have permission to access this resource"),
    },
    "429": {
        "openai": (429, "rate_limit_exceeded"),
        "anthropic": (429, "rate_limit_error"),
        "azure_openai": (429, "429"),
        "bedrock": (429, "ThrottlingException"),
        "google": (429, "RESOURCE_EXHAUSTED"),
        "cohere": (
            429,
            "You are past the per minute request limit, please wait and try again later.",
        ),
    },
    "quota": {
        "openai": (429, "insufficient_quota"),
        "anthropic": (429, "rate_limit_error"),
        "azure_openai": (429, "insufficient_quota"),
        "bedrock": (403, "AccessDeniedException"),
        "google": (429, "RESOURCE_EXHAUSTED"),
        "cohere": (
            402,
            "Please add or update your payment method at "
            "https://dashboard.cohere.com/billing?tab=payment to continue",
        ),
    },
    "500": {
        "openai": (500, "server_error"),
        "anthropic": (500, "api_error"),
        "azure_openai": (500, "InternalServerError"),
        "bedrock": (500, "InternalServerException"),
        "google": (500, "INTERNAL"),
        "cohere": (500, "internal server error, this has been reported to our developers"),
    },
    "503": {
        "openai": (503, "server_error"),
        "anthropic": (503, "api_error"),
        "azure_openai": (503, "ServiceUnavailable"),
        "bedrock": (503, "ServiceUnavailableException"),
        "google": (503, "UNAVAILABLE"),
        "cohere": (503, "service unavailable, please try again later"),
    },
}
ERROR_MATRIX["529"] = {**ERROR_MATRIX["503"], "anthropic": (529, "overloaded_error")}


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("directive", sorted(ERROR_MATRIX))
def test_error_directives_in_each_provider_format(
    server: FakeProviderServer, http: httpx.Client, adapter: str, directive: str
) -> None:
    # Given a key carrying the directive / When listing and generating
    key = key_for(adapter, directive)
    expected = ERROR_MATRIX[directive][adapter]
    for resp in (probe(server, http, adapter, key), generation(server, http, adapter, key)):
        # Then both endpoints fail in the provider's own format
        assert (resp.status_code, error_code(adapter, resp)) == expected
        if directive == "429":
            assert resp.headers["retry-after"] == "1"


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_quota_is_not_retryable(
    server: FakeProviderServer, http: httpx.Client, adapter: str
) -> None:
    resp = probe(server, http, adapter, key_for(adapter, "quota"))
    assert "retry-after" not in resp.headers
    if adapter == "anthropic":
        assert resp.json()["error"]["details"] == {"error_code": "enforced_spend_limit_reached"}
    if adapter == "google":
        assert not [d for d in resp.json()["error"]["details"] if "retryDelay" in d]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_echo_puts_the_full_key_in_the_error(
    server: FakeProviderServer, http: httpx.Client, adapter: str
) -> None:
    key = key_for(adapter, "echo")
    resp = probe(server, http, adapter, key)
    assert resp.status_code in (400, 401, 403)
    assert key in resp.text


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_404_lists_without_the_catalog_and_misses_models(
    server: FakeProviderServer, http: httpx.Client, adapter: str
) -> None:
    key = key_for(adapter, "404")
    listing = probe(server, http, adapter, key)
    assert listing.status_code == 200
    assert DEFAULT_MODELS[adapter].removeprefix("models/") not in listing.text
    assert generation(server, http, adapter, key).status_code == 404


@pytest.mark.parametrize("adapter", ["openai", "anthropic", "azure_openai"])
def test_headroom_reports_under_ten_percent_left(
    server: FakeProviderServer, http: httpx.Client, adapter: str
) -> None:
    resp = probe(server, http, adapter, key_for(adapter, "headroom"))
    assert resp.status_code == 200
    prefix = "anthropic-ratelimit-requests-" if adapter == "anthropic" else "x-ratelimit-"
    if adapter == "anthropic":
        limit, left = resp.headers[prefix + "limit"], resp.headers[prefix + "remaining"]
    else:
        limit = resp.headers["x-ratelimit-limit-requests"]
        left = resp.headers["x-ratelimit-remaining-requests"]
    assert int(left) < int(limit) / 10


def test_slow_and_lat_delay_a_correct_answer(
    server: FakeProviderServer, http: httpx.Client
) -> None:
    for directive, seconds in (("slow300", 0.3), ("lat100", 0.1)):
        start = time.monotonic()
        resp = probe(server, http, "openai", key_for("openai", directive))
        assert resp.status_code == 200
        assert time.monotonic() - start >= seconds


def test_badjson_is_a_200_with_a_broken_body(
    server: FakeProviderServer, http: httpx.Client
) -> None:
    resp = probe(server, http, "anthropic", key_for("anthropic", "badjson"))
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.text)


def test_badjson_through_boto3_yields_an_empty_result(server: FakeProviderServer) -> None:
    # botocore swallows an unparsable success body: the caller sees no modelSummaries at all.
    client = bedrock_client(server, "bedrock", key_for("bedrock", "badjson"))
    assert "modelSummaries" not in client.list_foundation_models()


def test_reset_closes_the_connection_with_rst(server: FakeProviderServer) -> None:
    # Given a raw socket, so the reset is observed as it is
    key = key_for("openai", "reset")
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(
            f"GET /openai/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}"
            "\r\n\r\n".encode()
        )
        # When reading the answer / Then the peer resets without a single byte
        with pytest.raises(ConnectionResetError):
            sock.recv(1024)


def test_reset_surfaces_as_a_transport_error_in_httpx(
    server: FakeProviderServer, http: httpx.Client
) -> None:
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        probe(server, http, "cohere", key_for("cohere", "reset"))


def test_hang_is_cut_by_the_client_timeout(server: FakeProviderServer) -> None:
    key = key_for("google", "hang")
    start = time.monotonic()
    with httpx.Client(timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        client.get(server.url("google") + "/models", headers=auth_headers("google", key))
    assert time.monotonic() - start < 2
    assert control.health(server.base_url)  # the server keeps serving


def test_hang_does_not_block_shutdown() -> None:
    # Given a private server with a request hanging on it
    srv = start_server()
    errors: list[BaseException] = []

    def hang() -> None:
        try:
            httpx.get(
                srv.url("openai") + "/models",
                timeout=10,
                headers={"Authorization": "Bearer sk-fake-fk_hang"},
            )
        except httpx.HTTPError as exc:
            errors.append(exc)

    worker = threading.Thread(target=hang)
    worker.start()
    deadline = time.monotonic() + 2
    while not any(e["outcome"] == "hang" for e in srv.state.requests()):
        assert time.monotonic() < deadline, "the hanging request never arrived"
        time.sleep(0.01)
    # When stopping the server
    start = time.monotonic()
    srv.stop()
    worker.join(timeout=3)
    # Then it stops at once and the client sees the connection go away
    assert time.monotonic() - start < 2
    assert not worker.is_alive()
    assert errors


def test_redirect_points_elsewhere_and_records_followers(
    server: FakeProviderServer, http: httpx.Client
) -> None:
    key = key_for("anthropic", "redirect")
    first = probe(server, http, "anthropic", key)
    assert first.status_code == 302
    assert first.headers["location"].startswith(f"http://127.0.0.2:{server.redirect_port}/")
    assert first.headers["location"].endswith("/anthropic/v1/models")
    assert not any(e["redirect_followed"] for e in control.requests(server.base_url))
    # When a careless client follows it (httpx drops Authorization across hosts, not x-api-key)
    with httpx.Client(follow_redirects=True, timeout=5) as careless:
        followed = careless.get(
            server.url("anthropic") + "/v1/models", headers=auth_headers("anthropic", key)
        )
    # Then the other host answered and the follow, with the leaked key, is on record
    assert followed.status_code == 200
    follows = [e for e in control.requests(server.base_url) if e["redirect_followed"]]
    assert [(e["host"], e["key_fingerprint"]) for e in follows] == [
        (f"127.0.0.2:{server.redirect_port}", key[-4:])
    ]


# ------------------------------------------------------------------------------ counting


def test_counted_fault_recovers_after_n_requests(
    server: FakeProviderServer, http: httpx.Client
) -> None:
    key = key_for("openai", "429x1")
    assert probe(server, http, "openai", key).status_code == 429
    assert probe(server, http, "openai", key).status_code == 200


def test_count_is_per_key_across_endpoints(server: FakeProviderServer, http: httpx.Client) -> None:
    # Given a key whose first two requests fail, whatever the endpoint
    key = key_for("anthropic", "503x2")
    # When listing, then generating, then getting one model
    statuses = [
        probe(server, http, "anthropic", key).status_code,
        generation(server, http, "anthropic", key).status_code,
        http.get(
            server.url("anthropic") + "/v1/models/claude-haiku-4-5",
            headers=auth_headers("anthropic", key),
        ).status_code,
    ]
    # Then the count is shared by all endpoints of the key
    assert statuses == [503, 503, 200]
    other = key_for("anthropic", "503x2")
    assert probe(server, http, "anthropic", other).status_code == 503  # its own counter


# ------------------------------------------------------------------------------ precedence


def test_header_beats_override_beats_key(server: FakeProviderServer, http: httpx.Client) -> None:
    key = key_for("openai", "401")
    assert probe(server, http, "openai", key).status_code == 401
    control.set_fault(server.base_url, key, "ok")  # make the failing key recover
    assert probe(server, http, "openai", key).status_code == 200
    assert probe(server, http, "openai", key, **{"x-fake-fault": "500"}).status_code == 500
    assert control.clear_fault(server.base_url, key) is True
    assert probe(server, http, "openai", key).status_code == 401


def test_override_on_a_bedrock_access_key(server: FakeProviderServer) -> None:
    key = key_for("bedrock")
    client = bedrock_client(server, "bedrock", key)
    control.set_fault(server.base_url, key, "429")
    assert error_of(client.list_foundation_models)[1] == "ThrottlingException"
    control.clear_fault(server.base_url, key)
    assert client.list_foundation_models()["modelSummaries"]


def test_unknown_directive_is_refused_loudly(
    server: FakeProviderServer, http: httpx.Client
) -> None:
    resp = probe(server, http, "openai", key_for("openai"), **{"x-fake-fault": "explode"})
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "fakeprovider_error"
    with pytest.raises(control.ControlError):
        control.set_fault(server.base_url, "k", "explode")


# ------------------------------------------------------------------------------ control API


def test_control_health_and_reset(server: FakeProviderServer, http: httpx.Client) -> None:
    assert http.get(server.base_url + "/_control/health").status_code == 200
    key = key_for("openai", "429x1")
    control.set_fault(server.base_url, key_for("openai"), "500")
    assert probe(server, http, "openai", key).status_code == 429
    control.reset(server.base_url)
    assert control.requests(server.base_url) == []
    assert http.get(server.base_url + "/_control/keys").json() == {"overrides": {}}
    assert probe(server, http, "openai", key).status_code == 429  # the counter restarted


def test_request_log_redacts_credentials(server: FakeProviderServer, http: httpx.Client) -> None:
    # Given requests from several providers, one with the Google key in the query string
    openai_key = key_for("openai")
    google_key = key_for("google")
    generation(server, http, "openai", openai_key, text="log me")
    http.get(server.url("google") + "/models", params={"key": google_key})
    bedrock_client(server, "bedrock", key_for("bedrock")).list_foundation_models()
    # When reading the log
    everything = control.requests(server.base_url)
    openai_log = control.requests(server.base_url, provider="openai", limit=5)
    # Then entries are complete, newest last, and no credential appears in full
    assert [e["provider"] for e in everything] == ["openai", "google", "bedrock"]
    entry = openai_log[-1]
    assert entry["method"] == "POST" and entry["path"] == "/openai/v1/chat/completions"
    assert entry["body"]["messages"][0]["content"] == "log me"
    assert entry["key_fingerprint"] == openai_key[-4:]
    assert entry["headers"]["authorization"] == f"Bearer ***{openai_key[-4:]}"
    assert entry["status"] == 200 and isinstance(entry["time"], float)
    assert everything[1]["query"]["key"] == f"***{google_key[-4:]}"
    dump = json.dumps(everything)
    assert openai_key not in dump and google_key not in dump
    assert "AKIAFAKE" not in dump
    assert len(control.requests(server.base_url, limit=1)) == 1


# ------------------------------------------------------------------------------ process


def test_the_service_never_imports_the_fake() -> None:
    chalicelib = Path(__file__).resolve().parents[2] / "chalicelib"
    offenders = [str(p) for p in chalicelib.rglob("*.py") if "fakeprovider" in p.read_text()]
    assert offenders == []


def test_cli_prints_its_url_and_stops_on_sigterm() -> None:
    # Given the server started as `python -m fakeprovider`
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakeprovider", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("fakeprovider listening on http://127.0.0.1:")
        base = line.rsplit(" ", 1)[-1]
        assert control.health(base)
        # When it receives SIGTERM / Then it exits cleanly
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_readme_and_make_key_bedrock_keys_pass_the_catalogues_own_pattern():
    """Issue 16: the README's Bedrock example (and make_key's) had a '-' the catalogue's
    access key id pattern refuses."""
    import re as _re
    from pathlib import Path

    from chalicelib.services.catalogue import SEED_PROVIDERS
    from fakeprovider import make_key

    bedrock = next(p for p in SEED_PROVIDERS if p["id"] == "bedrock")
    pattern = next(f["pattern"] for f in bedrock["credential_fields"]
                   if f["name"] == "access_key_id")
    readme = (Path(__file__).resolve().parents[2] / "fakeprovider" / "README.md").read_text()
    examples = _re.findall(r"`(AKIA[A-Za-z0-9_.-]*fk_[A-Za-z0-9_.-]*)`", readme)
    assert examples
    for key in [*examples, make_key("bedrock", "429x1", "t1"), make_key("bedrock")]:
        assert _re.fullmatch(pattern, key), key
