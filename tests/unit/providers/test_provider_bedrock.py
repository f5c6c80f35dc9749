"""Bedrock adapter with botocore's Stubber: listing, availability, Converse, error codes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.providers import bedrock
from chalicelib.providers.base import ChatMessage, ProviderError, TestOutcome
from chalicelib.providers.runner import invoke_target, test_target
from tests.unit.providers.provider_testkit import (
    BEDROCK_CREDENTIALS,
    FakeClock,
    make_target,
    run,
)

pytestmark = pytest.mark.unit

ARN = "arn:aws:bedrock:us-east-1::foundation-model/"
SUMMARIES = {
    "modelSummaries": [
        {
            "modelArn": ARN + "anthropic.claude-3-haiku-20240307-v1:0",
            "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "outputModalities": ["TEXT"],
        },
        {
            "modelArn": ARN + "amazon.titan-image-generator-v2:0",
            "modelId": "amazon.titan-image-generator-v2:0",
            "outputModalities": ["IMAGE"],
        },
        {
            "modelArn": ARN + "amazon.nova-lite-v1:0",
            "modelId": "amazon.nova-lite-v1:0",
            "outputModalities": ["TEXT"],
        },
    ]
}
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def _available(model_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "modelId": model_id,
        "agreementAvailability": {"status": "AVAILABLE"},
        "authorizationStatus": "AUTHORIZED",
        "entitlementAvailability": "AVAILABLE",
        "regionAvailability": "AVAILABLE",
        **overrides,
    }


class Stubs:
    def __init__(self) -> None:
        session = boto3.session.Session(
            aws_access_key_id="AKIASTUB", aws_secret_access_key="stub", region_name="us-east-1"
        )
        self.control = session.client("bedrock")
        self.runtime = session.client("bedrock-runtime")
        self.control_stub = Stubber(self.control)
        self.runtime_stub = Stubber(self.runtime)
        self.created: list[tuple[str | None, float]] = []

    def factory(self, target: Any, endpoint_url: str | None, timeout: float) -> tuple[Any, Any]:
        self.created.append((endpoint_url, timeout))
        return self.control, self.runtime


@pytest.fixture()
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubs]:
    s = Stubs()
    monkeypatch.setattr(bedrock, "create_clients", s.factory)
    with s.control_stub, s.runtime_stub:
        yield s
    s.control_stub.assert_no_pending_responses()
    s.runtime_stub.assert_no_pending_responses()


def _test(probe: bool = False, **kw: Any) -> TestOutcome:
    return run(test_target(make_target("bedrock", **kw), probe_model=probe, clock=FakeClock()))


def test_lists_text_models_and_checks_availability(stubs: Stubs) -> None:
    stubs.control_stub.add_response("list_foundation_models", SUMMARIES, {})
    stubs.control_stub.add_response(
        "get_foundation_model_availability", _available(HAIKU), {"modelId": HAIKU}
    )
    out = _test(default_model=f"us.{HAIKU}")  # a cross-region profile id
    assert out.status == "active"
    assert out.available_models == [HAIKU, "amazon.nova-lite-v1:0"]
    assert out.checks["model_access"].ok is True
    assert out.checks["connectivity"].ok is True
    assert stubs.created == [(None, 30.0)]


def test_not_authorized_model_is_a_warning(stubs: Stubs) -> None:
    stubs.control_stub.add_response("list_foundation_models", SUMMARIES, {})
    stubs.control_stub.add_response(
        "get_foundation_model_availability",
        _available(
            HAIKU, authorizationStatus="NOT_AUTHORIZED", entitlementAvailability="NOT_AVAILABLE"
        ),
        {"modelId": HAIKU},
    )
    out = _test(default_model=HAIKU)
    assert out.status == "warning"
    assert out.checks["model_access"].ok is False
    assert "not enabled" in (out.checks["model_access"].detail or "")


def test_availability_permission_missing_falls_back_to_listing(stubs: Stubs) -> None:
    stubs.control_stub.add_response("list_foundation_models", SUMMARIES, {})
    stubs.control_stub.add_client_error(
        "get_foundation_model_availability",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform bedrock:GetFoundationModelAvailability",
        http_status_code=403,
    )
    out = _test(default_model=HAIKU)
    assert out.status == "active"
    assert out.checks["model_access"].ok is True
    assert "not verified" in (out.checks["model_access"].detail or "")


@pytest.mark.parametrize(
    ("error_code", "status", "message", "code"),
    [
        (
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid.",
            "invalid_api_key",
        ),
        (
            "InvalidSignatureException",
            403,
            "The request signature we calculated does not match",
            "invalid_api_key",
        ),
        (
            "ExpiredTokenException",
            403,
            "The security token included in the request is expired",
            "invalid_api_key",
        ),
        (
            "AccessDeniedException",
            403,
            "User is not authorized to perform bedrock:ListFoundationModels",
            "permission_denied",
        ),
        (
            "AccessDeniedException",
            403,
            "Model access is denied due to INVALID_PAYMENT_INSTRUMENT:"
            "A valid payment instrument must be provided.",
            "quota_exhausted",
        ),
        ("ThrottlingException", 429, "Too many requests", "rate_limited"),
        ("ServiceUnavailableException", 503, "Service unavailable", "provider_unavailable"),
        ("InternalServerException", 500, "Internal", "provider_unavailable"),
    ],
)
def test_error_mapping(stubs: Stubs, error_code: str, status: int, message: str, code: str) -> None:
    stubs.control_stub.add_client_error(
        "list_foundation_models",
        service_error_code=error_code,
        service_message=message,
        http_status_code=status,
    )
    out = _test(max_retries=0)
    assert out.error is not None and out.error["code"] == code


def test_throttling_is_retried(stubs: Stubs) -> None:
    stubs.control_stub.add_client_error(
        "list_foundation_models", service_error_code="ThrottlingException", http_status_code=429
    )
    stubs.control_stub.add_response("list_foundation_models", SUMMARIES, {})
    assert _test().status == "active"


def test_converse_maps_system_and_inference_config(stubs: Stubs) -> None:
    stubs.runtime_stub.add_response(
        "converse",
        {
            "output": {
                "message": {"role": "assistant", "content": [{"text": "Hi"}, {"text": "!"}]}
            },
            "stopReason": "max_tokens",
            "usage": {"inputTokens": 11, "outputTokens": 2, "totalTokens": 13},
            "metrics": {"latencyMs": 120},
        },
        {
            "modelId": HAIKU,
            "messages": [
                {"role": "user", "content": [{"text": "Hello"}]},
                {"role": "assistant", "content": [{"text": "Yes?"}]},
                {"role": "user", "content": [{"text": "More"}]},
            ],
            "system": [{"text": "Be kind"}],
            "inferenceConfig": {"maxTokens": 2, "temperature": 0.7},
        },
    )
    messages = [
        ChatMessage("system", "Be kind"),
        ChatMessage("user", "Hello"),
        ChatMessage("assistant", "Yes?"),
        ChatMessage("user", "More"),
    ]
    out = run(
        invoke_target(
            make_target("bedrock", default_model=HAIKU),
            messages,
            max_tokens=2,
            temperature=0.7,
            clock=FakeClock(),
        )
    )
    assert out.output_text == "Hi!"
    assert out.finish_reason == "length"
    assert (out.input_tokens, out.output_tokens) == (11, 2)


def test_converse_access_denied_is_model_not_available(stubs: Stubs) -> None:
    stubs.runtime_stub.add_client_error(
        "converse",
        service_error_code="AccessDeniedException",
        service_message="You don't have access to the model with the specified model ID.",
        http_status_code=403,
    )
    with pytest.raises(ProviderError) as info:
        run(
            invoke_target(
                make_target("bedrock"), [ChatMessage("user", "x")], model=HAIKU, clock=FakeClock()
            )
        )
    assert info.value.code == "model_not_available"


def test_probe_uses_converse_with_one_token(stubs: Stubs) -> None:
    stubs.control_stub.add_response("list_foundation_models", SUMMARIES, {})
    stubs.control_stub.add_response(
        "get_foundation_model_availability", _available(HAIKU), {"modelId": HAIKU}
    )
    stubs.runtime_stub.add_response(
        "converse",
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "H"}]}},
            "stopReason": "max_tokens",
            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
            "metrics": {"latencyMs": 1},
        },
        {
            "modelId": HAIKU,
            "messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "inferenceConfig": {"maxTokens": 1},
        },
    )
    assert _test(probe=True, default_model=HAIKU).status == "active"


def test_blocked_endpoint_override_creates_no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_: Any) -> Any:
        raise AssertionError("no client may be created for a blocked endpoint")

    monkeypatch.setattr(bedrock, "create_clients", never)
    out = _test(base_url="https://169.254.169.254")
    assert out.error is not None and out.error["code"] == "blocked_endpoint"

    def private_dns(*_: Any, **__: Any) -> list:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.0.9", 443))]

    monkeypatch.setattr(socket, "getaddrinfo", private_dns)
    out = _test(base_url="https://bedrock.attacker.example")
    assert out.error is not None and out.error["code"] == "blocked_endpoint"


def test_missing_region_or_keys_are_reported() -> None:
    out = _test(credentials={**BEDROCK_CREDENTIALS, "region": "evil.com/"})
    assert out.error is not None and out.error["code"] == "invalid_api_key"
    out = _test(credentials={**BEDROCK_CREDENTIALS, "secret_access_key": ""})
    assert out.error is not None and out.error["code"] == "invalid_api_key"


def test_clients_use_only_the_users_keys_and_no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an environment with other credentials, an endpoint override and a proxy
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    target = make_target("bedrock")
    # When the adapter builds its clients
    control, runtime = bedrock.create_clients(target, None, 7.5)
    # Then they carry the user's keys, AWS endpoints, no proxies, no botocore retries
    for client in (control, runtime):
        creds = client._request_signer._credentials
        assert creds.access_key == BEDROCK_CREDENTIALS["access_key_id"]
        assert creds.secret_key == BEDROCK_CREDENTIALS["secret_access_key"]
        assert client.meta.endpoint_url.endswith(".us-east-1.amazonaws.com")
        assert client.meta.config.proxies == {}
        assert client.meta.config.retries["total_max_attempts"] == 1
        assert client.meta.config.read_timeout == 7.5
        assert client.meta.config.connect_timeout == 7.5
        assert (
            client._endpoint.http_session._proxy_config.proxy_url_for(client.meta.endpoint_url)
            is None
        )
    control, runtime = bedrock.create_clients(target, "https://bedrock.example.com/prefix", 30.0)
    assert control.meta.endpoint_url == "https://bedrock.example.com/prefix"
    assert runtime.meta.endpoint_url == "https://bedrock.example.com/prefix"
    assert control.meta.config.connect_timeout == 10.0


def test_profile_ids_map_to_foundation_ids() -> None:
    assert bedrock.foundation_model_id(f"eu.{HAIKU}") == HAIKU
    assert bedrock.foundation_model_id(f"global.{HAIKU}") == HAIKU
    assert bedrock.foundation_model_id(HAIKU) == HAIKU
    assert (
        bedrock.foundation_model_id(f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}") == HAIKU
    )
