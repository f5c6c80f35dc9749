"""Anthropic adapter: pagination, headers, error bodies, Messages API mapping."""

from __future__ import annotations

import pytest

from chalicelib.providers.base import ChatMessage, ProviderError, TestOutcome
from chalicelib.providers.runner import invoke_target, test_target
from tests.unit.providers.provider_testkit import KEY, FakeClock, Routes, make_target, reply, run

pytestmark = pytest.mark.unit


def _test(routes: Routes, clock: FakeClock | None = None, **kw: object) -> TestOutcome:
    target = make_target("anthropic", **kw)
    return run(test_target(target, client=routes.client(), clock=clock or FakeClock()))


def _err(etype: str, message: str = "x", **extra: object) -> dict:
    return {
        "type": "error",
        "error": {"type": etype, "message": message, **extra},
        "request_id": "req_1",
    }


def test_lists_all_pages_with_after_id_and_sends_version_header() -> None:
    pages = [
        reply(
            200,
            {
                "data": [{"id": "claude-opus-4-1"}],
                "has_more": True,
                "first_id": "claude-opus-4-1",
                "last_id": "claude-opus-4-1",
            },
        ),
        reply(
            200,
            {
                "data": [{"id": "claude-sonnet-4-5"}],
                "has_more": False,
                "last_id": "claude-sonnet-4-5",
            },
        ),
    ]
    routes = Routes({("GET", "/v1/models"): pages})
    out = _test(routes, default_model="claude-sonnet-4-5")
    assert out.status == "active"
    assert out.available_models == ["claude-opus-4-1", "claude-sonnet-4-5"]
    first, second = routes.requests
    assert first.headers["x-api-key"] == KEY
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in first.headers
    assert second.url.params["after_id"] == "claude-opus-4-1"


def test_alias_is_found_by_model_lookup() -> None:
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(200, {"data": [{"id": "claude-sonnet-4-20250514"}]}),
            ("GET", "/v1/models/claude-sonnet-4-0"): reply(200, {"id": "claude-sonnet-4-20250514"}),
        }
    )
    assert _test(routes, default_model="claude-sonnet-4-0").status == "active"


def test_missing_model_is_a_warning() -> None:
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(200, {"data": [{"id": "claude-3-haiku-20240307"}]}),
            ("GET", "/v1/models/claude-opus-4-1"): reply(404, _err("not_found_error")),
        }
    )
    out = _test(routes, default_model="claude-opus-4-1")
    assert out.status == "warning"
    assert out.checks["model_access"].ok is False


@pytest.mark.parametrize(
    ("status", "body", "code", "requests"),
    [
        (401, _err("authentication_error", "invalid x-api-key"), "invalid_api_key", 1),
        (403, _err("permission_error"), "permission_denied", 1),
        (429, _err("rate_limit_error"), "rate_limited", 4),
        (
            429,
            _err(
                "rate_limit_error",
                "spend limit",
                details={"error_code": "enforced_spend_limit_reached"},
            ),
            "quota_exhausted",
            1,
        ),
        (
            400,
            _err("invalid_request_error", "Your credit balance is too low"),
            "quota_exhausted",
            1,
        ),
        (402, _err("billing_error"), "quota_exhausted", 1),
        (529, _err("overloaded_error", "Overloaded"), "provider_unavailable", 4),
        (500, _err("api_error"), "provider_unavailable", 4),
    ],
)
def test_error_mapping(status: int, body: dict, code: str, requests: int) -> None:
    routes = Routes({("GET", "/v1/models"): reply(status, body)})
    out = _test(routes)
    assert out.error is not None and out.error["code"] == code
    assert len(routes.requests) == requests


def test_overloaded_is_retried_then_succeeds() -> None:
    clock = FakeClock()
    routes = Routes(
        {
            ("GET", "/v1/models"): [
                reply(529, _err("overloaded_error")),
                reply(200, {"data": [{"id": "m"}]}),
            ]
        }
    )
    out = _test(routes, clock)
    assert out.status == "active"
    assert len(clock.sleeps) == 1


def test_invoke_moves_system_to_top_level_and_defaults_max_tokens() -> None:
    routes = Routes(
        {
            ("POST", "/v1/messages"): reply(
                200,
                {
                    "id": "msg_1",
                    "type": "message",
                    "model": "claude-sonnet-4-5",
                    "content": [
                        {"type": "text", "text": "Hi"},
                        {"type": "tool_use", "id": "t"},
                        {"type": "text", "text": " there"},
                    ],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": 9, "output_tokens": 2},
                },
                request_id="req_9",
            )
        }
    )
    messages = [
        ChatMessage("system", "Rule 1"),
        ChatMessage("system", "Rule 2"),
        ChatMessage("user", "Hello"),
        ChatMessage("assistant", "Yes?"),
        ChatMessage("user", "Go"),
    ]
    out = run(
        invoke_target(
            make_target("anthropic", default_model="claude-sonnet-4-5"),
            messages,
            temperature=0.5,
            client=routes.client(),
            clock=FakeClock(),
        )
    )
    assert routes.body() == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "Rule 1\n\nRule 2",
        "messages": [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Yes?"},
            {"role": "user", "content": "Go"},
        ],
        "temperature": 0.5,
    }
    assert out.output_text == "Hi there"
    assert out.finish_reason == "stop"
    assert (out.input_tokens, out.output_tokens) == (9, 2)
    assert out.provider_request_id == "req_9"


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("refusal", "content_filter"),
        ("tool_use", "other"),
    ],
)
def test_invoke_finish_reasons(stop: str, finish: str) -> None:
    routes = Routes({("POST", "/v1/messages"): reply(200, {"content": [], "stop_reason": stop})})
    out = run(
        invoke_target(
            make_target("anthropic"),
            [ChatMessage("user", "x")],
            model="m",
            max_tokens=7,
            client=routes.client(),
            clock=FakeClock(),
        )
    )
    assert out.finish_reason == finish
    assert routes.body()["max_tokens"] == 7


def test_invoke_unknown_model_is_model_not_available() -> None:
    routes = Routes({("POST", "/v1/messages"): reply(404, _err("not_found_error", "model: nope"))})
    with pytest.raises(ProviderError) as info:
        run(
            invoke_target(
                make_target("anthropic"),
                [ChatMessage("user", "x")],
                model="nope",
                client=routes.client(),
                clock=FakeClock(),
            )
        )
    assert info.value.code == "model_not_available"
