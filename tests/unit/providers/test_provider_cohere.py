"""Cohere adapter: key check, page tokens, 401/498, v2 chat."""

from __future__ import annotations

import pytest

from chalicelib.providers.base import ChatMessage, TestOutcome
from chalicelib.providers.runner import invoke_target, test_target
from tests.unit.providers.provider_testkit import KEY, FakeClock, Routes, make_target, reply, run

pytestmark = pytest.mark.unit

VALID = reply(200, {"valid": True, "organization_id": "o1"})


def _test(routes: Routes, **kw: object) -> TestOutcome:
    target = make_target("cohere", **kw)
    return run(test_target(target, client=routes.client(), clock=FakeClock()))


def test_checks_key_then_lists_chat_models_across_pages() -> None:
    pages = [
        reply(
            200,
            {
                "models": [
                    {"name": "command-r", "endpoints": ["chat", "generate"]},
                    {"name": "embed-v4.0", "endpoints": ["embed"]},
                ],
                "next_page_token": "p2",
            },
        ),
        reply(
            200,
            {
                "models": [{"name": "command-a-03-2025", "endpoints": ["chat"]}],
                "next_page_token": "",
            },
        ),
    ]
    routes = Routes({("POST", "/v1/check-api-key"): VALID, ("GET", "/v1/models"): pages})
    out = _test(routes, default_model="command-a-03-2025")
    assert out.status == "active"
    assert out.available_models == ["command-r", "command-a-03-2025"]
    assert routes.paths() == ["/v1/check-api-key", "/v1/models", "/v1/models"]
    assert routes.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert routes.requests[1].url.params["endpoint"] == "chat"
    assert routes.requests[2].url.params["page_token"] == "p2"


def test_key_check_saying_invalid_is_invalid_api_key() -> None:
    routes = Routes({("POST", "/v1/check-api-key"): reply(200, {"valid": False})})
    out = _test(routes)
    assert out.error is not None and out.error["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "invalid_api_key"),
        (498, "invalid_api_key"),
        (402, "quota_exhausted"),
        (403, "permission_denied"),
        (429, "rate_limited"),
        (500, "provider_unavailable"),
        (503, "provider_unavailable"),
    ],
)
def test_error_mapping(status: int, code: str) -> None:
    routes = Routes(
        {("POST", "/v1/check-api-key"): reply(status, {"message": "invalid api token"})}
    )
    out = _test(routes, max_retries=0)
    assert out.error is not None and out.error["code"] == code


def test_missing_model_is_a_warning() -> None:
    routes = Routes(
        {
            ("POST", "/v1/check-api-key"): VALID,
            ("GET", "/v1/models"): reply(200, {"models": [{"name": "command-r"}]}),
            ("GET", "/v1/models/command-x"): reply(404, {"message": "model not found"}),
        }
    )
    out = _test(routes, default_model="command-x")
    assert out.status == "warning"


def test_invoke_v2_chat() -> None:
    routes = Routes(
        {
            ("POST", "/v2/chat"): reply(
                200,
                {
                    "id": "c-1",
                    "finish_reason": "MAX_TOKENS",
                    "message": {"role": "assistant", "content": [{"type": "text", "text": "Bon"}]},
                    "usage": {
                        "billed_units": {"input_tokens": 4, "output_tokens": 1},
                        "tokens": {"input_tokens": 70, "output_tokens": 1},
                    },
                },
            )
        }
    )
    out = run(
        invoke_target(
            make_target("cohere"),
            [ChatMessage("system", "S"), ChatMessage("user", "Hi")],
            model="command-r",
            max_tokens=1,
            temperature=0.3,
            client=routes.client(),
            clock=FakeClock(),
        )
    )
    assert routes.body() == {
        "model": "command-r",
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}],
        "max_tokens": 1,
        "temperature": 0.3,
    }
    assert out.output_text == "Bon"
    assert out.finish_reason == "length"
    assert (out.input_tokens, out.output_tokens) == (70, 1)
    assert out.provider_request_id == "c-1"
