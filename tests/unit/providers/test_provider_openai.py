"""OpenAI and OpenAI-compatible adapter: listing, model checks, error mapping, invoke."""

from __future__ import annotations

import pytest

from chalicelib.providers.base import ChatMessage, ProviderError
from chalicelib.providers.runner import invoke_target, test_target
from tests.unit.providers.provider_testkit import KEY, FakeClock, Routes, make_target, reply, run

pytestmark = pytest.mark.unit

MODELS = {"object": "list", "data": [{"id": "gpt-4o", "object": "model"}, {"id": "gpt-4o-mini"}]}


def _test(routes: Routes, **target_kw: object) -> dict:
    clock = FakeClock()
    outcome = run(
        test_target(make_target("openai", **target_kw), client=routes.client(), clock=clock)
    )
    return outcome.to_dict()


def test_lists_models_and_finds_default_model() -> None:
    # Given a key that lists two models including the default
    routes = Routes({("GET", "/v1/models"): reply(200, MODELS)})
    # When the connection is tested
    out = _test(
        routes,
        default_model="gpt-4o",
        credentials={"api_key": KEY, "organization_id": "org-1", "project_id": "proj-1"},
    )
    # Then it is active, with the models and all checks passed
    assert out["status"] == "active"
    assert out["available_models"] == ["gpt-4o", "gpt-4o-mini"]
    assert out["checks"]["authentication"]["ok"] is True
    assert out["checks"]["model_access"]["ok"] is True
    assert out["checks"]["connectivity"]["ok"] is True
    assert out["error"] is None
    sent = routes.requests[0]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["openai-organization"] == "org-1"
    assert sent.headers["openai-project"] == "proj-1"


def test_follows_has_more_cursor_bounded_by_max_list_pages() -> None:
    # Given a compatible service that pages with has_more / after
    pages = [
        reply(200, {"data": [{"id": "a"}], "has_more": True, "last_id": "a"}),
        reply(200, {"data": [{"id": "b"}], "has_more": True, "last_id": "b"}),
        reply(200, {"data": [{"id": "c"}], "has_more": False}),
    ]
    routes = Routes({("GET", "/v1/models"): pages})
    # When listing is bounded to two pages
    out = _test(routes, max_list_pages=2)
    # Then two pages were fetched, the second with the cursor
    assert out["available_models"] == ["a", "b"]
    assert len(routes.requests) == 2
    assert routes.requests[1].url.params["after"] == "a"


def test_accepts_bare_array_listing_from_compatible_services() -> None:
    routes = Routes({("GET", "/v1/models"): reply(200, [{"id": "llama3"}])})
    out = _test(routes, base_url="https://llm.example.com/v1")
    assert out["available_models"] == ["llama3"]


def test_default_model_missing_is_a_warning_when_others_are_accessible() -> None:
    # Given the default model is neither listed nor found by a lookup
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(200, MODELS),
            ("GET", "/v1/models/gpt-9"): reply(
                404,
                {
                    "error": {
                        "message": "The model `gpt-9` does not exist",
                        "code": "model_not_found",
                    }
                },
            ),
        }
    )
    out = _test(routes, default_model="gpt-9")
    # Then: warning, model_access not ok with a detail, no error
    assert out["status"] == "warning"
    assert out["error"] is None
    assert out["checks"]["model_access"]["ok"] is False
    assert "gpt-9" in out["checks"]["model_access"]["detail"]
    assert any(w["code"] == "model_not_available" and "gpt-9" in w["message"]
               for w in out["warnings"])


def test_default_model_found_by_lookup_when_not_listed() -> None:
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(200, MODELS),
            ("GET", "/v1/models/ft:gpt-4o:acme"): reply(200, {"id": "ft:gpt-4o:acme"}),
        }
    )
    out = _test(routes, default_model="ft:gpt-4o:acme")
    assert out["status"] == "active"
    assert out["checks"]["model_access"]["ok"] is True


@pytest.mark.parametrize(
    ("status", "body", "code", "requests"),
    [
        (
            401,
            {"error": {"message": "Incorrect API key", "code": "invalid_api_key"}},
            "invalid_api_key",
            1,
        ),
        (
            401,
            {"error": {"message": "mismatch", "code": "mismatched_organization"}},
            "permission_denied",
            1,
        ),
        (403, {"error": {"message": "Country not supported"}}, "permission_denied", 1),
        (
            429,
            {
                "error": {
                    "message": "You exceeded your quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
            "quota_exhausted",
            1,
        ),
        (
            429,
            {"error": {"message": "Rate limit", "code": "rate_limit_exceeded"}},
            "rate_limited",
            4,
        ),
        (500, {"error": {"message": "boom"}}, "provider_unavailable", 4),
        (400, {"error": {"message": "bad"}}, "bad_response", 1),
        (404, {"detail": "Not Found"}, "provider_unavailable", 1),
    ],
)
def test_error_mapping(status: int, body: dict, code: str, requests: int) -> None:
    routes = Routes({("GET", "/v1/models"): reply(status, body)})
    out = _test(routes)
    assert out["status"] == "error"
    assert out["error"]["code"] == code
    assert out["error"]["remediation"]
    assert len(routes.requests) == requests  # only transient errors are retried


def test_invalid_key_fails_authentication_check() -> None:
    routes = Routes({("GET", "/v1/models"): reply(401, {"error": {"code": "invalid_api_key"}})})
    out = _test(routes)
    assert out["checks"]["authentication"]["ok"] is False
    assert out["checks"]["connectivity"]["ok"] is True


def test_non_json_and_wrong_shape_200_are_bad_response() -> None:
    import httpx

    routes = Routes({("GET", "/v1/models"): httpx.Response(200, text="<html>login</html>")})
    assert _test(routes)["error"]["code"] == "bad_response"
    routes = Routes({("GET", "/v1/models"): reply(200, {"data": "nope"})})
    assert _test(routes)["error"]["code"] == "bad_response"
    routes = Routes({("GET", "/v1/models"): reply(200, {"data": [{"name": "x"}]})})
    assert _test(routes)["error"]["code"] == "bad_response"


def test_redirect_is_blocked_and_not_followed() -> None:
    import httpx

    routes = Routes(
        {
            ("GET", "/v1/models"): httpx.Response(
                302, headers={"location": "https://evil.example/x"}
            ),
            ("GET", "/x"): reply(200, MODELS),
        }
    )
    out = _test(routes)
    assert out["error"]["code"] == "blocked_endpoint"
    assert routes.paths() == ["/v1/models"]


def test_invoke_openai_sends_max_completion_tokens_and_normalises() -> None:
    # Given a chat completion that stopped on length
    routes = Routes(
        {
            ("POST", "/v1/chat/completions"): reply(
                200,
                {
                    "id": "chatcmpl-1",
                    "model": "gpt-4o-2024-08-06",
                    "choices": [
                        {
                            "message": {"role": "assistant", "content": "Hel"},
                            "finish_reason": "length",
                        }
                    ],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 3},
                },
                x_request_id="req_abc",
            )
        }
    )
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hello")]
    # When invoked with limits
    out = run(
        invoke_target(
            make_target("openai", default_model="gpt-4o"),
            messages,
            max_tokens=3,
            temperature=0.2,
            client=routes.client(),
            clock=FakeClock(),
        )
    ).to_dict()
    # Then the request used OpenAI's field names and the answer is normalised
    body = routes.body()
    assert body == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        "max_completion_tokens": 3,
        "temperature": 0.2,
    }
    assert out["output_text"] == "Hel"
    assert out["finish_reason"] == "length"
    assert out["usage"] == {"input_tokens": 12, "output_tokens": 3}
    assert out["model"] == "gpt-4o-2024-08-06"
    assert out["provider_request_id"] == "req_abc"


def test_invoke_compatible_host_sends_max_tokens_and_maps_other_finish() -> None:
    routes = Routes(
        {
            ("POST", "/openai/v1/chat/completions"): reply(
                200, {"choices": [{"message": {"content": None}, "finish_reason": "tool_calls"}]}
            )
        }
    )
    out = run(
        invoke_target(
            make_target("openai", base_url="https://api.groq.com/openai/v1"),
            [ChatMessage("user", "hi")],
            model="llama3",
            max_tokens=5,
            client=routes.client(),
            clock=FakeClock(),
        )
    )
    assert routes.body()["max_tokens"] == 5
    assert "max_completion_tokens" not in routes.body()
    assert out.finish_reason == "other"
    assert out.output_text == ""


def test_invoke_switches_token_field_when_the_service_rejects_it() -> None:
    rejected = reply(
        400,
        {
            "error": {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this "
                "model. Use 'max_completion_tokens' instead.",
                "code": "unsupported_parameter",
            }
        },
    )
    ok = reply(200, {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]})
    routes = Routes({("POST", "/v1/chat/completions"): [rejected, ok]})
    out = run(
        invoke_target(
            make_target("openai", base_url="https://proxy.example.com/v1"),
            [ChatMessage("user", "hi")],
            model="o3-mini",
            max_tokens=5,
            client=routes.client(),
            clock=FakeClock(),
        )
    )
    assert out.finish_reason == "stop"
    assert routes.body(0)["max_tokens"] == 5
    assert routes.body(1)["max_completion_tokens"] == 5


def test_invoke_model_not_found_raises_model_not_available() -> None:
    routes = Routes(
        {("POST", "/v1/chat/completions"): reply(404, {"error": {"code": "model_not_found"}})}
    )
    with pytest.raises(ProviderError) as info:
        run(
            invoke_target(
                make_target("openai"),
                [ChatMessage("user", "hi")],
                model="nope",
                client=routes.client(),
                clock=FakeClock(),
            )
        )
    assert info.value.code == "model_not_available"
    assert info.value.http_status == 404
