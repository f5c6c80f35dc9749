"""Azure OpenAI adapter: api-key header, api-version, deployments and the probe."""

from __future__ import annotations

import pytest

from chalicelib.providers.base import ChatMessage, TestOutcome
from chalicelib.providers.runner import invoke_target, test_target
from tests.unit.providers.provider_testkit import KEY, FakeClock, Routes, make_target, reply, run

pytestmark = pytest.mark.unit

MODELS = {
    "object": "list",
    "data": [
        {"id": "gpt-4o", "status": "succeeded", "capabilities": {"chat_completion": True}},
        {
            "id": "text-embedding-3-small",
            "capabilities": {"chat_completion": False, "embeddings": True},
        },
        {"id": "gpt-4.1-mini", "status": "succeeded"},
    ],
}
CHAT = {
    "choices": [{"message": {"content": "ok"}, "finish_reason": "content_filter"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1},
    "model": "gpt-4o-2024-11-20",
}


def _test(routes: Routes, probe: bool = False, **kw: object) -> TestOutcome:
    target = make_target("azure_openai", **kw)
    return run(test_target(target, probe_model=probe, client=routes.client(), clock=FakeClock()))


def test_lists_chat_models_with_api_key_and_version() -> None:
    routes = Routes({("GET", "/openai/models"): reply(200, MODELS)})
    out = _test(
        routes, base_url="https://contoso.openai.azure.com/openai/", default_model="prod-4o"
    )
    sent = routes.requests[0]
    assert sent.headers["api-key"] == KEY
    assert "authorization" not in sent.headers
    assert sent.url.params["api-version"] == "2024-10-21"
    assert out.available_models == ["gpt-4o", "gpt-4.1-mini"]
    # The deployment is not verifiable without a probe: reported, not guessed
    assert out.status == "active"
    assert out.checks["model_access"].ok is None
    assert "deployment" in (out.checks["model_access"].detail or "")


def test_probe_proves_the_deployment_on_its_chat_path() -> None:
    routes = Routes(
        {
            ("GET", "/openai/models"): reply(200, MODELS),
            ("POST", "/openai/deployments/prod-4o/chat/completions"): reply(200, CHAT),
        }
    )
    out = _test(
        routes,
        probe=True,
        default_model="prod-4o",
        credentials={"api_key": KEY, "api_version": "2025-01-01-preview"},
    )
    assert out.status == "active"
    assert out.checks["model_access"].ok is True
    chat = routes.requests[-1]
    assert chat.url.params["api-version"] == "2025-01-01-preview"
    assert routes.body() == {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def test_probe_of_a_missing_deployment_is_the_missing_model_warning() -> None:
    routes = Routes(
        {
            ("GET", "/openai/models"): reply(200, MODELS),
            ("POST", "/openai/deployments/nope/chat/completions"): reply(
                404,
                {
                    "error": {
                        "code": "DeploymentNotFound",
                        "message": "The API deployment for this resource does not exist.",
                    }
                },
            ),
        }
    )
    out = _test(routes, probe=True, default_model="nope")
    assert out.status == "warning"
    assert out.checks["model_access"].ok is False


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            401,
            {"error": {"code": "401", "message": "Access denied due to invalid subscription key"}},
            "invalid_api_key",
        ),
        (
            403,
            {"error": {"code": "AuthenticationTypeDisabled", "message": "Key auth disabled"}},
            "permission_denied",
        ),
        (429, {"error": {"code": "insufficient_quota", "message": "quota"}}, "quota_exhausted"),
        (404, {"error": {"code": "404", "message": "Resource not found"}}, "provider_unavailable"),
    ],
)
def test_error_mapping(status: int, body: dict, code: str) -> None:
    out = _test(Routes({("GET", "/openai/models"): reply(status, body)}))
    assert out.error is not None and out.error["code"] == code


def test_429_honours_retry_after_ms() -> None:
    clock = FakeClock()
    routes = Routes(
        {
            ("GET", "/openai/models"): [
                reply(
                    429,
                    {"error": {"code": "429", "message": "Please retry after 1 second"}},
                    retry_after_ms="1500",
                    retry_after="2",
                ),
                reply(200, MODELS),
            ]
        }
    )
    out = run(test_target(make_target("azure_openai"), client=routes.client(), clock=clock))
    assert out.status == "active"
    assert clock.sleeps == [1.5]


def test_invoke_uses_deployment_path_without_model_field() -> None:
    routes = Routes({("POST", "/openai/deployments/prod-4o/chat/completions"): reply(200, CHAT)})
    out = run(
        invoke_target(
            make_target("azure_openai", default_model="prod-4o"),
            [ChatMessage("system", "S"), ChatMessage("user", "U")],
            max_tokens=20,
            temperature=0,
            client=routes.client(),
            clock=FakeClock(),
        )
    )
    assert routes.body() == {
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
        "max_tokens": 20,
        "temperature": 0,
    }
    assert out.finish_reason == "content_filter"
    assert out.model == "gpt-4o-2024-11-20"


def test_azure_needs_a_base_url() -> None:
    out = run(test_target(make_target("azure_openai", base_url=""), clock=FakeClock()))
    assert out.error is not None and out.error["code"] == "blocked_endpoint"
