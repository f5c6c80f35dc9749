"""Runner: status rules, retries and budget, scrubbing, outcome shape."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time

import httpx
import pytest

from chalicelib.providers.base import ChatMessage, ProviderError, TestOutcome
from chalicelib.providers.runner import invoke_target, run_sync, test_target
from tests.unit.providers.provider_testkit import KEY, FakeClock, Routes, make_target, reply, run

pytestmark = pytest.mark.unit

MODELS = {"data": [{"id": "gpt-4o"}, {"id": "gpt-4o-mini"}]}


def _outcome(routes: Routes, clock: FakeClock | None = None, **kw: object) -> TestOutcome:
    probe = bool(kw.pop("probe_model", False))
    target = make_target("openai", **kw)
    return run(
        test_target(target, probe_model=probe, client=routes.client(), clock=clock or FakeClock())
    )


def test_active_outcome_is_json_ready() -> None:
    routes = Routes({("GET", "/v1/models"): reply(200, MODELS)})
    out = _outcome(routes, default_model="gpt-4o")
    data = out.to_dict()
    json.dumps(data)
    assert data["status"] == "active"
    assert set(data["checks"]) == {"connectivity", "authentication", "model_access", "performance"}
    assert data["checks"]["performance"] == {"ok": True, "latency_ms": 0, "detail": None}
    assert data["tested_at"].endswith("Z")
    assert data["warnings"] == []


def test_no_default_model_leaves_model_access_unknown() -> None:
    routes = Routes({("GET", "/v1/models"): reply(200, MODELS)})
    out = _outcome(routes)
    assert out.status == "active"
    assert out.checks["model_access"].ok is None


def test_slow_test_is_a_warning() -> None:
    # Given a provider that takes 6 s (on the fake clock) to list models
    clock = FakeClock()

    def slow(_: httpx.Request) -> httpx.Response:
        clock.advance(6.0)
        return reply(200, MODELS)

    out = _outcome(Routes({("GET", "/v1/models"): slow}), clock, default_model="gpt-4o")
    # Then the test works but warns, with the latency measured
    assert out.status == "warning"
    assert out.checks["performance"].ok is False
    assert out.checks["performance"].latency_ms == 6000
    assert [w.code for w in out.warnings] == ["slow_response"]
    assert "Slow" in out.warnings[0].message


def test_backoff_time_does_not_count_as_provider_latency() -> None:
    clock = FakeClock()
    routes = Routes({("GET", "/v1/models"): [reply(429, {}, retry_after="9"), reply(200, MODELS)]})
    out = _outcome(routes, clock)
    assert clock.sleeps == [9.0]
    assert out.status == "active"
    assert out.latency_ms == 0


def test_low_rate_limit_headroom_is_a_warning() -> None:
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(
                200,
                MODELS,
                x_ratelimit_remaining_requests="4",
                x_ratelimit_limit_requests="100",
                x_ratelimit_remaining_tokens="90000",
                x_ratelimit_limit_tokens="100000",
            )
        }
    )
    out = _outcome(routes)
    assert out.status == "warning"
    assert out.error is None
    assert any(w.code == "rate_limit_headroom" and "4 of 100" in w.message
               and "x-ratelimit-remaining-requests" in w.message for w in out.warnings)


def test_plenty_of_headroom_stays_active() -> None:
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(
                200, MODELS, x_ratelimit_remaining_requests="50", x_ratelimit_limit_requests="100"
            )
        }
    )
    assert _outcome(routes).status == "active"


def test_429_after_accepted_call_is_a_warning() -> None:
    # Given the listing succeeds but the model lookup stays rate limited through every retry
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(200, MODELS),
            ("GET", "/v1/models/ft-x"): reply(
                429, {"error": {"code": "rate_limit_exceeded"}}, retry_after="1"
            ),
        }
    )
    out = _outcome(routes, default_model="ft-x")
    # Then the credentials are known good: a warning, not an error
    assert out.status == "warning"
    assert out.error is None
    assert out.checks["authentication"].ok is True
    assert any(w.code == "rate_limited" and "rate limiting" in w.message for w in out.warnings)
    assert len(routes.requests) == 1 + 4  # listing + lookup with 3 retries


def test_429_with_account_rate_headers_on_first_call_is_a_warning() -> None:
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(
                429,
                {"error": {"code": "rate_limit_exceeded"}},
                retry_after="1",
                x_ratelimit_remaining_requests="0",
                x_ratelimit_limit_requests="500",
            )
        }
    )
    out = _outcome(routes)
    assert out.status == "warning"
    assert out.checks["authentication"].ok is True


def test_bare_429_on_first_call_is_an_error() -> None:
    routes = Routes({("GET", "/v1/models"): reply(429, {"error": {"code": "rate_limit_exceeded"}})})
    out = _outcome(routes)
    assert out.status == "error"
    assert out.error is not None and out.error["code"] == "rate_limited"
    assert out.checks["authentication"].ok is None


def test_missing_model_with_nothing_else_accessible_is_an_error() -> None:
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(200, {"data": []}),
            ("GET", "/v1/models/gpt-4o"): reply(404, {"error": {"code": "model_not_found"}}),
        }
    )
    out = _outcome(routes, default_model="gpt-4o")
    assert out.status == "error"
    assert out.error is not None and out.error["code"] == "model_not_available"


def test_retry_after_then_success() -> None:
    clock = FakeClock()
    routes = Routes(
        {
            ("GET", "/v1/models"): [
                reply(429, {"error": {"code": "rate_limit_exceeded"}}, retry_after="1"),
                reply(200, MODELS),
            ]
        }
    )
    out = _outcome(routes, clock, default_model="gpt-4o")
    assert out.status == "active"
    assert clock.sleeps == [1.0]
    assert len(routes.requests) == 2


def test_retry_after_ms_takes_precedence() -> None:
    clock = FakeClock()
    routes = Routes(
        {
            ("GET", "/v1/models"): [
                reply(429, {}, retry_after_ms="250", retry_after="3"),
                reply(200, MODELS),
            ]
        }
    )
    _outcome(routes, clock)
    assert clock.sleeps == [0.25]


def test_401_is_not_retried() -> None:
    clock = FakeClock()
    routes = Routes({("GET", "/v1/models"): reply(401, {"error": {"code": "invalid_api_key"}})})
    out = _outcome(routes, clock)
    assert out.error is not None and out.error["code"] == "invalid_api_key"
    assert len(routes.requests) == 1
    assert clock.sleeps == []


def test_retry_after_beyond_budget_returns_the_error_without_waiting() -> None:
    clock = FakeClock()
    routes = Routes({("GET", "/v1/models"): reply(429, {}, retry_after="60")})
    out = _outcome(routes, clock, timeout_seconds=30.0)
    assert out.error is not None and out.error["code"] == "rate_limited"
    assert clock.sleeps == []
    assert len(routes.requests) == 1


def test_5xx_backoff_is_exponential_with_jitter_and_bounded_by_max_retries() -> None:
    clock = FakeClock()  # random() == 1.0: the full jitter's upper bound
    routes = Routes({("GET", "/v1/models"): reply(503, {"error": {"message": "down"}})})
    out = _outcome(routes, clock, max_retries=3)
    assert out.error is not None and out.error["code"] == "provider_unavailable"
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert len(routes.requests) == 4


def test_retries_stop_when_the_budget_runs_out() -> None:
    clock = FakeClock()

    def slow_failure(_: httpx.Request) -> httpx.Response:
        clock.advance(1.5)
        return reply(503, {})

    routes = Routes({("GET", "/v1/models"): slow_failure})
    out = _outcome(routes, clock, timeout_seconds=2.0, max_retries=10)
    assert out.error is not None and out.error["code"] == "provider_unavailable"
    assert len(routes.requests) == 1  # 0.5 s left after the first attempt: no room for a wait


def test_a_hang_ends_within_the_budget() -> None:
    # Given a provider that never answers (real clock)
    async def hang(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    routes = Routes({("GET", "/v1/models"): hang})
    started = time.monotonic()
    out = run(test_target(make_target("openai", timeout_seconds=0.3), client=routes.client()))
    # Then the test ends as a timeout shortly after its budget
    assert time.monotonic() - started < 1.3
    assert out.error is not None and out.error["code"] == "timeout"


def test_connection_refused_is_network_error_and_connectivity_fails() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    out = _outcome(Routes({("GET", "/v1/models"): refuse}))
    assert out.error is not None and out.error["code"] == "network_error"
    assert out.checks["connectivity"].ok is False
    assert out.checks["authentication"].ok is None


def test_connection_reset_is_retried() -> None:
    clock = FakeClock()

    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("Connection reset by peer", request=request)

    routes = Routes({("GET", "/v1/models"): [reset, reply(200, MODELS)]})
    out = _outcome(routes, clock)
    assert out.status == "active"
    assert len(clock.sleeps) == 1


def test_read_timeout_is_timeout() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    out = _outcome(Routes({("GET", "/v1/models"): slow}), max_retries=0)
    assert out.error is not None and out.error["code"] == "timeout"
    assert out.checks["connectivity"].ok is True


def test_oversized_answer_is_bad_response() -> None:
    big = httpx.Response(200, content=b"[" + b" " * (3 * 1024 * 1024) + b"]")
    out = _outcome(Routes({("GET", "/v1/models"): big}))
    assert out.error is not None and out.error["code"] == "bad_response"
    assert "larger" in out.error["message"]


def test_probe_makes_a_one_token_generation() -> None:
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(200, MODELS),
            ("POST", "/v1/chat/completions"): reply(
                200, {"choices": [{"message": {"content": "H"}, "finish_reason": "length"}]}
            ),
        }
    )
    out = _outcome(routes, default_model="gpt-4o", probe_model=True)
    assert out.status == "active"
    assert routes.body()["max_completion_tokens"] == 1
    assert out.checks["model_access"].ok is True
    assert out.checks["model_access"].latency_ms is not None


def test_probe_failure_of_the_model_is_the_missing_model_warning() -> None:
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(200, MODELS),
            ("POST", "/v1/chat/completions"): reply(
                404, {"error": {"message": "no access to gpt-4o", "code": "model_not_found"}}
            ),
        }
    )
    out = _outcome(routes, default_model="gpt-4o", probe_model=True)
    assert out.status == "warning"
    assert out.checks["model_access"].ok is False


def test_probe_outage_is_an_error() -> None:
    routes = Routes(
        {
            ("GET", "/v1/models"): reply(200, MODELS),
            ("POST", "/v1/chat/completions"): reply(500, {}),
        }
    )
    out = _outcome(routes, default_model="gpt-4o", probe_model=True, max_retries=0)
    assert out.status == "error"
    assert out.error is not None and out.error["code"] == "provider_unavailable"


def test_unknown_adapter_is_provider_disabled() -> None:
    target = dataclasses.replace(make_target("openai"), adapter="palm")
    out = run(test_target(target, clock=FakeClock()))
    assert out.status == "error"
    assert out.error is not None and out.error["code"] == "provider_disabled"


def test_missing_api_key_is_invalid_api_key_without_a_request() -> None:
    routes = Routes({("GET", "/v1/models"): reply(200, MODELS)})
    out = _outcome(routes, credentials={"api_key": "  "})
    assert out.error is not None and out.error["code"] == "invalid_api_key"
    assert routes.requests == []


def test_echoed_key_is_scrubbed_from_errors() -> None:
    # Given a provider that echoes the key, whole and in part, in its error message
    message = f"Incorrect API key provided: {KEY}. Fragment: {KEY[5:17]}. Tail: {KEY[-4:]}"
    routes = Routes({("GET", "/v1/models"): reply(401, {"error": {"message": message}})})
    out = _outcome(routes)
    text = json.dumps(out.to_dict())
    # Then neither the key nor a long part of it reaches the outcome
    assert KEY not in text
    assert KEY[5:17] not in text
    assert "[REDACTED]" in out.error["message"]


def test_echoed_key_is_scrubbed_from_invoke_errors_and_output() -> None:
    routes = Routes(
        {
            ("POST", "/v1/chat/completions"): reply(
                200,
                {
                    "choices": [
                        {"message": {"content": f"your key is {KEY}"}, "finish_reason": "stop"}
                    ]
                },
            )
        }
    )
    out = run(
        invoke_target(
            make_target("openai"),
            [ChatMessage("user", "x")],
            model="m",
            client=routes.client(),
            clock=FakeClock(),
        )
    )
    assert KEY not in out.output_text
    routes = Routes({("POST", "/v1/chat/completions"): reply(403, {"error": {"message": KEY}})})
    with pytest.raises(ProviderError) as info:
        run(
            invoke_target(
                make_target("openai"),
                [ChatMessage("user", "x")],
                model="m",
                client=routes.client(),
                clock=FakeClock(),
            )
        )
    assert KEY not in str(info.value) and KEY not in info.value.message


def test_invoke_needs_a_model() -> None:
    with pytest.raises(ProviderError) as info:
        run(invoke_target(make_target("openai"), [ChatMessage("user", "x")], clock=FakeClock()))
    assert info.value.code == "model_not_available"


def test_invoke_rejects_malformed_messages() -> None:
    with pytest.raises(ValueError):
        run(invoke_target(make_target("openai"), [ChatMessage("tool", "x")], model="m"))
    with pytest.raises(ValueError):
        run(invoke_target(make_target("openai"), [], model="m"))


def test_target_repr_hides_credentials() -> None:
    assert KEY not in repr(make_target("openai"))


def test_blocked_base_url_makes_no_request() -> None:
    routes = Routes({("GET", "/latest/meta-data/v1/models"): reply(200, MODELS)})
    out = _outcome(routes, base_url="http://169.254.169.254/latest/meta-data/v1")
    assert out.error is not None and out.error["code"] == "blocked_endpoint"
    assert out.checks["connectivity"].ok is False
    assert routes.requests == []


def test_own_client_is_guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given DNS that answers with a private address for the provider's host
    def private_dns(host: str, port: object, *args: object, **kwargs: object) -> list:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))]

    monkeypatch.setattr(socket, "getaddrinfo", private_dns)
    # When a test runs without an injected client
    out = run_sync(test_target(make_target("openai"), clock=FakeClock()))
    # Then the runner's own guarded client refused to connect
    assert out.error is not None and out.error["code"] == "blocked_endpoint"
    assert "private network address" in out.error["message"]
