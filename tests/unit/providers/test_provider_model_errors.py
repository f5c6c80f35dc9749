"""Model-missing answers of OpenAI-compatible servers, and checks that agree with the error code.

The bodies are the ones those servers send (LiteLLM proxy, vLLM old and new, Ollama's OpenAI
endpoint and its native one, Mistral, DeepSeek, OpenRouter, Together, OpenAI/Groq).
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.providers.base import ChatMessage, ProviderError, TestOutcome
from chalicelib.providers.runner import invoke_target, test_target
from tests.unit.providers.provider_testkit import FakeClock, Routes, make_target, reply, run

pytestmark = pytest.mark.unit

COMPAT = "https://gateway.example.com/v1"
MODELS = {"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]}

MISSING_MODEL_BODIES: dict[str, tuple[int, Any]] = {
    "litellm_proxy": (
        400,
        {
            "error": {
                "message": "{'error': '/chat/completions: Invalid model name passed in "
                "model=gpt-5-nano. Call `/v1/models` to view available models for your key.'}",
                "type": "None",
                "param": "None",
                "code": "400",
            }
        },
    ),
    "vllm_flat": (
        404,
        {
            "object": "error",
            "message": "The model `gpt-5-nano` does not exist.",
            "type": "NotFoundError",
            "param": None,
            "code": 404,
        },
    ),
    "vllm_nested": (
        404,
        {
            "error": {
                "message": "The model `gpt-5-nano` does not exist.",
                "type": "NotFoundError",
                "param": None,
                "code": 404,
            }
        },
    ),
    "ollama_openai": (
        404,
        {
            "error": {
                "message": 'model "gpt-5-nano" not found, try pulling it first',
                "type": "api_error",
                "param": None,
                "code": None,
            }
        },
    ),
    "ollama_native": (404, {"error": "model 'gpt-5-nano' not found"}),
    "mistral": (
        400,
        {
            "object": "error",
            "message": "Invalid model: gpt-5-nano",
            "type": "invalid_model",
            "param": None,
            "code": "1500",
        },
    ),
    "deepseek": (
        400,
        {
            "error": {
                "message": "Model Not Exist",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_request_error",
            }
        },
    ),
    "openrouter": (400, {"error": {"message": "gpt-5-nano is not a valid model ID", "code": 400}}),
    "together": (
        404,
        {
            "error": {
                "message": "Unable to access model gpt-5-nano. Please visit "
                "https://api.together.ai/models to view the list of supported models.",
                "type": "invalid_request_error",
                "param": None,
                "code": "model_not_available",
            }
        },
    ),
    "param_model": (
        400,
        {"error": {"message": "bad value", "type": "invalid_request_error", "param": "model"}},
    ),
}

# 400s that name a model but are not about a missing one: they stay bad_response.
OTHER_400_BODIES: dict[str, Any] = {
    "unsupported_parameter": {
        "error": {
            "message": "Unsupported parameter: 'temperature' is not supported with this model.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "unsupported_parameter",
        }
    },
    "context_length": {
        "object": "error",
        "message": "This model's maximum context length is 4096 tokens. However, you requested "
        "5000 tokens. Please reduce the length of the messages.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    },
    "missing_field": {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]},
}


def _invoke(routes: Routes) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        run(
            invoke_target(
                make_target("openai", base_url=COMPAT),
                [ChatMessage("user", "hi")],
                model="gpt-5-nano",
                client=routes.client(),
                clock=FakeClock(),
            )
        )
    return info.value


@pytest.mark.parametrize("server", sorted(MISSING_MODEL_BODIES))
def test_generation_for_a_missing_model_is_model_not_available(server: str) -> None:
    # Given a compatible server that answers an unknown model its own way
    status, body = MISSING_MODEL_BODIES[server]
    routes = Routes({("POST", "/v1/chat/completions"): reply(status, body)})
    # When we invoke that model
    err = _invoke(routes)
    # Then it is the model, not the base URL, that the user is told to fix
    assert err.code == "model_not_available"
    assert err.http_status == status
    assert len(routes.requests) == 1


@pytest.mark.parametrize("case", sorted(OTHER_400_BODIES))
def test_other_400s_stay_bad_response(case: str) -> None:
    routes = Routes({("POST", "/v1/chat/completions"): reply(400, OTHER_400_BODIES[case])})
    assert _invoke(routes).code == "bad_response"


@pytest.mark.parametrize("server", ["litellm_proxy", "mistral", "ollama_openai"])
def test_probe_on_a_missing_model_is_the_missing_model_warning(server: str) -> None:
    # Given a gateway that lists other models and rejects the default one at generation
    status, body = MISSING_MODEL_BODIES[server]
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(200, MODELS),
            ("GET", "/v1/models/.+"): reply(200, {"id": "gpt-5-nano", "object": "model"}),
            ("POST", "/v1/chat/completions"): reply(status, body),
        }
    )
    out = _test(routes, default_model="gpt-5-nano", probe=True)
    assert out.status == "warning"
    assert out.error is None
    assert out.checks["model_access"].ok is False
    assert out.checks["authentication"].ok is True


def test_lookup_answering_litellm_400_means_the_model_is_missing() -> None:
    status, body = MISSING_MODEL_BODIES["litellm_proxy"]
    routes = Routes(
        {("GET", "/v1/models"): reply(200, MODELS), ("GET", "/v1/models/.+"): reply(status, body)}
    )
    out = _test(routes, default_model="gpt-5-nano")
    assert out.status == "warning"
    assert out.checks["model_access"].ok is False


def test_listing_404_is_still_the_base_url() -> None:
    routes = Routes({("GET", "/v1/models"): reply(404, {"detail": "Not Found"})})
    out = _test(routes)
    assert out.error is not None and out.error["code"] == "provider_unavailable"


def _test(routes: Routes, *, default_model: str | None = None, probe: bool = False) -> TestOutcome:
    target = make_target("openai", base_url=COMPAT, default_model=default_model, max_retries=0)
    return run(test_target(target, probe_model=probe, client=routes.client(), clock=FakeClock()))


UNAUTHORIZED = reply(401, {"error": {"message": "Invalid API key", "code": "invalid_api_key"}})
FORBIDDEN = reply(403, {"error": {"message": "Key not allowed to access model gpt-4o"}})


def assert_consistent(out: TestOutcome) -> None:
    """No check says ok while the error code says that very thing failed."""
    checks = {name: check.ok for name, check in out.checks.items()}
    code = out.error["code"] if out.error else None
    if code == "invalid_api_key":
        assert checks["authentication"] is False
        assert checks["model_access"] is not True
    if code == "permission_denied":
        assert False in (checks["authentication"], checks["model_access"])
    if code == "model_not_available":
        assert checks["model_access"] is False
    if code is not None:
        assert checks["performance"] is None
        assert out.status == "error"
    if out.error and out.error.get("code") not in ("network_error", "blocked_endpoint", "timeout"):
        assert checks["connectivity"] is True


def test_401_on_the_probe_after_a_listing_fails_authentication() -> None:
    # Given a gateway that lists models without checking the key, then rejects it
    routes = Routes(
        {("GET", "/v1/models"): reply(200, MODELS), ("POST", "/v1/chat/completions"): UNAUTHORIZED}
    )
    # When the test probes the default model
    out = _test(routes, default_model="gpt-4o", probe=True)
    # Then the result says the key is bad, in the code and in the checks alike
    assert out.error is not None and out.error["code"] == "invalid_api_key"
    assert out.checks["authentication"].ok is False
    assert out.checks["authentication"].detail == "Invalid API key"
    assert out.checks["model_access"].ok is None
    assert_consistent(out)


def test_401_on_the_lookup_after_a_listing_fails_authentication() -> None:
    routes = Routes(
        {("GET", "/v1/models"): reply(200, MODELS), ("GET", "/v1/models/.+"): UNAUTHORIZED}
    )
    out = _test(routes, default_model="o3")
    assert out.error is not None and out.error["code"] == "invalid_api_key"
    assert out.checks["authentication"].ok is False
    assert_consistent(out)


def test_403_on_the_probe_after_a_listing_is_about_the_model() -> None:
    routes = Routes(
        {("GET", "/v1/models"): reply(200, MODELS), ("POST", "/v1/chat/completions"): FORBIDDEN}
    )
    out = _test(routes, default_model="gpt-4o", probe=True)
    assert out.error is not None and out.error["code"] == "permission_denied"
    assert out.checks["authentication"].ok is True
    assert out.checks["model_access"].ok is False
    assert out.checks["model_access"].detail == "Key not allowed to access model gpt-4o"
    assert_consistent(out)


@pytest.mark.parametrize(
    ("listing", "probe"),
    [
        (UNAUTHORIZED, None),
        (FORBIDDEN, None),
        (reply(200, MODELS), UNAUTHORIZED),
        (reply(200, MODELS), FORBIDDEN),
        (reply(200, MODELS), reply(*MISSING_MODEL_BODIES["litellm_proxy"])),
        (reply(200, {"data": []}), None),
        (reply(200, MODELS), reply(500, {})),
        (reply(429, {}), None),
    ],
)
def test_checks_never_contradict_the_code(listing: Any, probe: Any) -> None:
    routes = Routes({("GET", "/v1/models"): listing})
    if probe is not None:
        routes = Routes({("GET", "/v1/models"): listing, ("POST", "/v1/chat/completions"): probe})
    out = _test(routes, default_model="gpt-4o", probe=probe is not None)
    assert_consistent(out)
