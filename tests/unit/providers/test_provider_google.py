"""Google Gemini adapter: header auth, page tokens, body-first error mapping, generateContent."""

from __future__ import annotations

import pytest

from chalicelib.providers.base import ChatMessage, TestOutcome
from chalicelib.providers.runner import invoke_target, test_target
from tests.unit.providers.provider_testkit import KEY, FakeClock, Routes, make_target, reply, run

pytestmark = pytest.mark.unit

GEN = ["generateContent", "countTokens"]


def _test(routes: Routes, clock: FakeClock | None = None, **kw: object) -> TestOutcome:
    target = make_target("google", **kw)
    return run(test_target(target, client=routes.client(), clock=clock or FakeClock()))


def _err(code: int, status: str, message: str = "x", details: list | None = None) -> dict:
    return {"error": {"code": code, "message": message, "status": status, "details": details or []}}


def test_lists_pages_with_header_key_and_strips_prefix() -> None:
    pages = [
        reply(
            200,
            {
                "models": [
                    {"name": "models/gemini-2.5-flash", "supportedGenerationMethods": GEN},
                    {
                        "name": "models/text-embedding-004",
                        "supportedGenerationMethods": ["embedContent"],
                    },
                ],
                "nextPageToken": "tok2",
            },
        ),
        reply(
            200, {"models": [{"name": "models/gemini-2.5-pro", "supportedGenerationMethods": GEN}]}
        ),
    ]
    routes = Routes({("GET", "/v1beta/models"): pages})
    out = _test(routes, default_model="models/gemini-2.5-pro")
    assert out.status == "active"
    assert out.available_models == ["gemini-2.5-flash", "gemini-2.5-pro"]
    first, second = routes.requests
    assert first.headers["x-goog-api-key"] == KEY
    assert "key" not in first.url.params
    assert KEY not in str(first.url)
    assert second.url.params["pageToken"] == "tok2"


def test_missing_model_checked_by_lookup() -> None:
    routes = Routes(
        {
            ("GET", "/v1beta/models"): reply(
                200, {"models": [{"name": "models/gemini-2.5-flash"}]}
            ),
            ("GET", "/v1beta/models/gemini-1.0-pro"): reply(
                404, _err(404, "NOT_FOUND", "models/gemini-1.0-pro is not found")
            ),
        }
    )
    out = _test(routes, default_model="gemini-1.0-pro")
    assert out.status == "warning"
    assert out.checks["model_access"].ok is False


def test_bad_key_is_a_400_with_api_key_invalid() -> None:
    body = _err(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ],
    )
    routes = Routes({("GET", "/v1beta/models"): reply(400, body)})
    out = _test(routes)
    assert out.error is not None and out.error["code"] == "invalid_api_key"
    assert out.checks["authentication"].ok is False
    assert len(routes.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            403,
            _err(403, "PERMISSION_DENIED", "denied", [{"reason": "SERVICE_DISABLED"}]),
            "permission_denied",
        ),
        (
            400,
            _err(400, "FAILED_PRECONDITION", "User location is not supported"),
            "permission_denied",
        ),
        (429, _err(429, "RESOURCE_EXHAUSTED", "Quota exceeded"), "quota_exhausted"),
        (500, _err(500, "INTERNAL"), "provider_unavailable"),
        (503, _err(503, "UNAVAILABLE"), "provider_unavailable"),
        (400, _err(400, "INVALID_ARGUMENT", "bad field"), "bad_response"),
    ],
)
def test_error_mapping(status: int, body: dict, code: str) -> None:
    out = _test(Routes({("GET", "/v1beta/models"): reply(status, body)}), max_retries=0)
    assert out.error is not None and out.error["code"] == code


def test_resource_exhausted_honours_retry_info() -> None:
    clock = FakeClock()
    limited = _err(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for metric",
        [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"},
        ],
    )
    routes = Routes(
        {
            ("GET", "/v1beta/models"): [
                reply(429, limited),
                reply(200, {"models": [{"name": "models/g"}]}),
            ]
        }
    )
    out = _test(routes, clock)
    assert out.status == "active"
    assert clock.sleeps == [2.0]


def test_invoke_maps_system_roles_and_generation_config() -> None:
    routes = Routes(
        {
            ("POST", "/v1beta/models/gemini-2.5-flash:generateContent"): reply(
                200,
                {
                    "candidates": [
                        {
                            "content": {
                                "role": "model",
                                "parts": [
                                    {"text": "thinking...", "thought": True},
                                    {"text": "Hel"},
                                    {"text": "lo"},
                                ],
                            },
                            "finishReason": "MAX_TOKENS",
                        }
                    ],
                    "usageMetadata": {
                        "promptTokenCount": 8,
                        "candidatesTokenCount": 2,
                        "thoughtsTokenCount": 3,
                    },
                    "modelVersion": "gemini-2.5-flash-001",
                    "responseId": "resp-1",
                },
            )
        }
    )
    messages = [
        ChatMessage("system", "Be terse"),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Yes"),
        ChatMessage("user", "Again"),
    ]
    out = run(
        invoke_target(
            make_target("google"),
            messages,
            model="models/gemini-2.5-flash",
            max_tokens=5,
            temperature=0.1,
            client=routes.client(),
            clock=FakeClock(),
        )
    )
    assert routes.body() == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Yes"}]},
            {"role": "user", "parts": [{"text": "Again"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be terse"}]},
        "generationConfig": {"maxOutputTokens": 5, "temperature": 0.1},
    }
    assert out.output_text == "Hello"
    assert out.finish_reason == "length"
    assert (out.input_tokens, out.output_tokens) == (8, 5)
    assert out.model == "gemini-2.5-flash-001"
    assert out.provider_request_id == "resp-1"


@pytest.mark.parametrize(
    ("body", "finish"),
    [
        ({"candidates": [{"content": {"parts": []}, "finishReason": "SAFETY"}]}, "content_filter"),
        ({"candidates": [{"finishReason": "STOP", "content": {"parts": [{"text": "a"}]}}]}, "stop"),
        ({"promptFeedback": {"blockReason": "SAFETY"}}, "content_filter"),
        ({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL"}]}, "other"),
    ],
)
def test_invoke_finish_reasons(body: dict, finish: str) -> None:
    routes = Routes({("POST", "/v1beta/models/g:generateContent"): reply(200, body)})
    out = run(
        invoke_target(
            make_target("google"),
            [ChatMessage("user", "x")],
            model="g",
            client=routes.client(),
            clock=FakeClock(),
        )
    )
    assert out.finish_reason == finish
    assert "generationConfig" not in routes.body()
