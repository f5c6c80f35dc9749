"""Issue 7, one chat call through a connection: the service and API tiers in process.

The API runs through ``chalice.test.Client`` against moto and the fake provider server on
loopback (nothing in the app is mocked). The concurrency test calls the service itself from
threads, because ``chalice.test.Client`` keeps ``current_request`` on the app and is not
thread-safe; the end-to-end file races real HTTP requests through ``chalice local``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fakeprovider import control
from tests.support.aws_calls import count_aws_calls
from tests.support.builders import caller, table
from tests.support.fakes import fake_credentials, fake_key, tag

pytestmark = pytest.mark.integration

ADAPTERS = ("openai", "anthropic", "azure_openai", "bedrock", "google", "cohere")
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "azure_openai": "gpt-4o-prod",  # a deployment name
    "bedrock": "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "google": "gemini-2.5-flash",
    "cohere": "command-a-03-2025",
}
HELLO = [{"role": "user", "content": "say hi"}]


def conn_body(fake_base: str, adapter: str, key: str, **extra: Any) -> dict[str, Any]:
    """A create body for the seed provider of ``adapter``, pointed at the fake."""
    body: dict[str, Any] = {
        "name": f"{adapter} {tag()}", "provider": adapter,
        "credentials": fake_credentials(adapter, key),
        "base_url": control.base_url_for(adapter, fake_base),
        "default_model": MODELS[adapter],
    }
    body.update(extra)
    return body


def create(api: Any, fake: Any, adapter: str = "openai", directive: str | None = None, *,
           key: str | None = None, **extra: Any) -> tuple[str, str]:
    key = key or fake_key(adapter, directive)
    resp = api.post("/connections", conn_body(fake.base_url, adapter, key, **extra))
    assert resp.status_code == 201, resp.data
    return resp.data["id"], key


def last_seq(fake: Any) -> int:
    entries = control.requests(fake.base_url, limit=1)
    return int(entries[-1]["seq"]) if entries else 0


def sent(fake: Any, key: str, since: int) -> list[dict[str, Any]]:
    """What the fake received with this key after ``since``."""
    return control.requests(fake.base_url, fingerprint=key[-4:], since=since)


def invoke(api: Any, cid: str, body: Any = None) -> Any:
    return api.post(f"/connections/{cid}/invoke", {"messages": HELLO} if body is None else body)


# --------------------------------------------------------------------------- the hot path


def test_warm_invoke_reads_the_connection_once_and_never_calls_kms(api, fake_provider):
    # Given a connection with a rate limit, invoked once so the caches are warm
    cid, _ = create(api, fake_provider, settings={"rate_limit_rpm": 1000})
    avoid_minute_boundary()  # the first call of a minute moves the window (one more write)
    assert invoke(api, cid).status_code == 200

    # When it is invoked again
    with count_aws_calls() as calls:
        resp = invoke(api, cid)

    # Then one read (TransactGetItems: the connection and its provider, never cached, so a
    # disabled provider holds at once), the rate-limit and usage updates; no KMS
    assert resp.status_code == 200, resp.data
    assert calls.of("kms") == Counter(), calls
    reads = [(op, p) for svc, op, p in calls.params
             if svc == "dynamodb" and op in ("GetItem", "TransactGetItems", "BatchGetItem")]
    assert [op for op, _ in reads] == ["TransactGetItems"], calls
    assert sorted(i["Get"]["TableName"] for i in reads[0][1]["TransactItems"]) == sorted(
        [table("connections"), table("providers")])
    updates = [(p["TableName"], p["Key"]["sk"]["S"].split("#")[0])
               for svc, op, p in calls.params if (svc, op) == ("dynamodb", "UpdateItem")]
    assert sorted(updates) == sorted([(table("usage"), "rate"), (table("usage"), "day")])
    assert sum(calls.values()) == 3, calls


def test_patching_credentials_makes_the_next_invoke_decrypt_again(api, fake_provider):
    # Given a warm connection
    cid, _ = create(api, fake_provider)
    assert invoke(api, cid).status_code == 200
    with count_aws_calls() as warm:
        assert invoke(api, cid).status_code == 200
    assert warm.of("kms") == Counter()

    # When its key is replaced
    new_key = fake_key("openai")
    assert api.patch(f"/connections/{cid}", {"credentials": {"api_key": new_key}}
                     ).status_code == 200
    since = last_seq(fake_provider)
    with count_aws_calls() as calls:
        resp = invoke(api, cid)

    # Then the cache misses: one Decrypt, and the provider receives the new key
    assert resp.status_code == 200, resp.data
    assert calls.of("kms") == Counter({"Decrypt": 1}), calls
    assert len(sent(fake_provider, new_key, since)) == 1


# --------------------------------------------------------------------------- the output


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_invoke_returns_the_normalized_answer(api, fake_provider, adapter):
    # Given a healthy connection of each adapter
    cid, _ = create(api, fake_provider, adapter)

    # When it is invoked
    resp = invoke(api, cid)

    # Then the answer has the one shape, whatever the provider
    assert resp.status_code == 200, resp.data
    out = resp.data
    assert set(out) == {"output_text", "model", "finish_reason", "usage", "latency_ms",
                        "provider_request_id", "credential_set", "failover_from",
                        "timeout_capped_at"}  # the default 30 s is more than the API's 25
    assert (out["credential_set"], out["failover_from"]) == ("primary", [])
    assert out["output_text"] == control.REPLY_TEXT
    assert out["finish_reason"] == "stop"
    assert out["usage"] == {"input_tokens": 2, "output_tokens": len(control.REPLY_TEXT.split())}
    assert isinstance(out["latency_ms"], int) and out["latency_ms"] >= 0
    assert out["model"] == ("gpt-4o" if adapter == "azure_openai" else MODELS[adapter])
    assert out["provider_request_id"]


# --------------------------------------------------------------------------- validation


BAD_BODIES = [
    ({"messages": HELLO, "temperature": 1.5}, "temperature"),  # Anthropic's range is 0..1
    ({"messages": HELLO, "temperature": -0.1}, "temperature"),
    ({"messages": HELLO, "top_p": 0.5}, "top_p"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": " \n\t"}]}, "messages[0].content"),
    ({"messages": [{"role": "system", "content": "be brief"}]}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "user", "content": "x", "name": "n"}]}, "messages[0].name"),
    ({"messages": HELLO, "max_tokens": 0}, "max_tokens"),
    ({"messages": HELLO, "model": ""}, "model"),
    ({}, "messages"),
]


def test_bad_overrides_are_400_and_reach_no_provider(api, fake_provider):
    # Given an Anthropic connection (temperature 0..1)
    cid, key = create(api, fake_provider, "anthropic")
    since = last_seq(fake_provider)

    for body, field in BAD_BODIES:
        # When it is invoked with a bad body
        resp = invoke(api, cid, body)

        # Then a 400 names the field
        assert resp.status_code == 400, (body, resp.data)
        assert resp.data["error"]["field"] == field, (body, resp.data)

    # And the provider is never called, nor is usage counted
    assert sent(fake_provider, key, since) == []
    assert api.get(f"/connections/{cid}/stats").data["usage"]["7d"]["requests"] == 0


def test_temperature_range_is_the_providers(api, fake_provider):
    # Given an OpenAI connection (temperature 0..2)
    cid, key = create(api, fake_provider, "openai")
    since = last_seq(fake_provider)

    # When 1.5 (fine for OpenAI) and 2.5 (not) are asked for
    ok = invoke(api, cid, {"messages": HELLO, "temperature": 1.5})
    bad = invoke(api, cid, {"messages": HELLO, "temperature": 2.5})

    # Then the first reaches the provider as is, the second is a 400 naming temperature
    assert ok.status_code == 200, ok.data
    assert bad.status_code == 400 and bad.data["error"]["field"] == "temperature", bad.data
    [call] = sent(fake_provider, key, since)
    assert call["body"]["temperature"] == 1.5


def test_system_only_conversation_is_our_400_not_a_provider_502(api, fake_provider):
    for adapter in ("anthropic", "bedrock", "google"):
        # Given providers that refuse a conversation without a user or assistant turn
        cid, key = create(api, fake_provider, adapter)
        since = last_seq(fake_provider)

        # When only a system message is sent
        resp = invoke(api, cid, {"messages": [{"role": "system", "content": "be brief"}]})

        # Then it is the caller's 400 (it was a 502 bad_response blaming the provider, whose
        # 400 said "messages: Field required" / "must start with a user message")
        assert resp.status_code == 400, (adapter, resp.data)
        assert resp.data["error"]["field"] == "messages"
        assert sent(fake_provider, key, since) == []


def test_connection_without_credentials_is_422(api, fake_provider):
    # Given a connection imported without its secret
    doc = {"format": "llm-connections-export", "version": 1, "connections": [
        {"name": "imported", "provider": "openai", "default_model": "gpt-4o",
         "base_url": control.base_url_for("openai", fake_provider.base_url)}]}
    imported = api.post("/connections/import", doc)
    assert imported.status_code == 201, imported.data

    # When it is invoked, then the caller is told to supply credentials
    resp = invoke(api, imported.data["items"][0]["id"])
    assert resp.status_code == 422, resp.data
    assert resp.data["error"]["code"] == "needs_credentials"


def test_custom_openai_compatible_provider(api, fake_provider):
    cid, key = create(api, fake_provider, "openai", provider="custom", default_model="gpt-4o")
    since = last_seq(fake_provider)
    resp = invoke(api, cid)
    assert resp.status_code == 200, resp.data
    assert resp.data["output_text"] == control.REPLY_TEXT
    [call] = sent(fake_provider, key, since)
    assert call["path"] == "/openai/v1/chat/completions" and call["body"]["model"] == "gpt-4o"


def test_unknown_connection_is_404_for_everyone_else(api, fake_provider):
    cid, _ = create(api, fake_provider)
    assert api.as_user(api.user + "-x").post(f"/connections/{cid}/invoke",
                                             {"messages": HELLO}).status_code == 404
    assert invoke(api, "conn_doesnotexist0000000000").status_code == 404


# --------------------------------------------------------------------------- rate limit


def avoid_minute_boundary(needed_seconds: float = 10.0) -> None:
    """Keep a burst inside one calendar minute (the window moves once a minute)."""
    second = time.time() % 60
    if second > 60 - needed_seconds:
        time.sleep(60.5 - second)


def test_rate_limit_lets_exactly_rpm_calls_through_under_concurrency(api, fake_provider):
    from chalicelib.api.deps import services
    from chalicelib.api.http import error_response
    from chalicelib.errors import DomainError

    # Given a connection limited to 5 requests a minute, and the wiring warmed up
    cid, key = create(api, fake_provider, settings={"rate_limit_rpm": 5})
    svc = services()
    who = caller(api.user)
    avoid_minute_boundary()
    since = last_seq(fake_provider)
    barrier = threading.Barrier(20)

    def one(_: int) -> tuple[int, dict[str, str]]:
        barrier.wait()
        try:
            svc.usage.invoke(who, cid, {"messages": HELLO})
            return 200, {}
        except DomainError as exc:
            resp = error_response(exc, "race")
            return resp.status_code, dict(resp.headers)

    # When 20 calls are made at once from threads (what 20 Lambdas would do)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))

    # Then 5 reach the provider and 15 are refused with 429 and a Retry-After
    assert Counter(s for s, _ in results) == {200: 5, 429: 15}, results
    for status, headers in results:
        if status == 429:
            assert 1 <= int(headers["Retry-After"]) <= 60
    calls = [r for r in sent(fake_provider, key, since) if r["method"] == "POST"]
    assert len(calls) == 5


# --------------------------------------------------------------------------- quota


def test_monthly_request_quota_warns_at_80_percent_and_refuses_past_it(api, fake_provider):
    # Given a connection with a quota of 5 requests a month
    cid, key = create(api, fake_provider, settings={"monthly_request_quota": 5})
    since = last_seq(fake_provider)

    # When it is invoked 4 times (80 %)
    for _ in range(4):
        assert invoke(api, cid).status_code == 200

    # Then the connection shows a warning about the quota
    conn = api.get(f"/connections/{cid}").data
    assert conn["status"] == "warning", conn
    assert "quota" in conn["status_message"] and "80%" in conn["status_message"]
    assert [w["code"] for w in conn["warnings"]] == ["quota_warning"]
    assert conn["warnings"][0]["remediation"]

    # And the 5th call passes, the 6th is refused without reaching the provider
    assert invoke(api, cid).status_code == 200
    refused = invoke(api, cid)
    assert refused.status_code == 429, refused.data
    assert refused.data["error"]["code"] == "quota_exceeded"
    assert int(refused.headers["Retry-After"]) >= 1
    assert len([r for r in sent(fake_provider, key, since) if r["method"] == "POST"]) == 5
    conn = api.get(f"/connections/{cid}").data
    assert conn["status"] == "error" and "quota" in conn["status_message"]
    assert conn["error"]["code"] == "quota_exhausted" and conn["warnings"] == []


def test_monthly_token_quota_counts_tokens_and_refuses_once_used_up(api, fake_provider):
    # Given a quota of 20 tokens (one call is 2 in + 10 out)
    cid, _ = create(api, fake_provider, settings={"monthly_token_quota": 20})

    # When it is invoked three times
    statuses = [invoke(api, cid).status_code for _ in range(3)]

    # Then two calls (24 tokens) use the quota up and the third is refused
    assert statuses == [200, 200, 429]


# --------------------------------------------------------------------------- retries


def test_provider_429_is_retried_after_its_retry_after(api, fake_provider):
    # Given a key whose first request gets 429 with retry-after: 1
    cid, key = create(api, fake_provider, directive="429x1")
    since = last_seq(fake_provider)

    # When it is invoked
    started = time.monotonic()
    resp = invoke(api, cid)
    elapsed = time.monotonic() - started

    # Then one success after about a second, from the second provider request
    assert resp.status_code == 200, resp.data
    assert 0.9 <= elapsed < 3.0, elapsed
    assert [r["status"] for r in sent(fake_provider, key, since)] == [429, 200]
    assert resp.data["latency_ms"] >= 900  # the caller's wall time, retries included


def test_hang_ends_at_the_timeout_with_504(api, fake_provider):
    # Given a provider that never answers and a 2 s timeout
    cid, _ = create(api, fake_provider, directive="hang", settings={"timeout_seconds": 2})

    # When it is invoked
    started = time.monotonic()
    resp = invoke(api, cid)
    elapsed = time.monotonic() - started

    # Then 504 timeout within the budget (plus the grace of the outer guard)
    assert resp.status_code == 504, resp.data
    assert resp.data["error"]["code"] == "timeout"
    assert 1.9 <= elapsed < 3.5, elapsed


def test_401_is_not_retried(api, fake_provider):
    # Given a bad key
    cid, key = create(api, fake_provider, directive="401")
    since = last_seq(fake_provider)

    # When it is invoked
    resp = invoke(api, cid)

    # Then one provider request only, and our error says invalid_api_key
    assert resp.status_code == 424, resp.data
    assert resp.data["error"]["code"] == "invalid_api_key"
    assert len(sent(fake_provider, key, since)) == 1


def test_transient_outage_is_retried_to_success(api, fake_provider):
    cid, key = create(api, fake_provider, "anthropic", directive="529x1")
    since = last_seq(fake_provider)
    resp = invoke(api, cid)
    assert resp.status_code == 200, resp.data
    assert [r["status"] for r in sent(fake_provider, key, since)] == [529, 200]


# --------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(("adapter", "directive", "status", "code"), [
    ("openai", "401", 424, "invalid_api_key"),
    ("google", "401", 424, "invalid_api_key"),  # Google says 400 API_KEY_INVALID
    ("bedrock", "401", 424, "invalid_api_key"),  # 403 UnrecognizedClientException
    ("cohere", "498", 424, "invalid_api_key"),
    ("anthropic", "403", 424, "permission_denied"),
    ("azure_openai", "404", 422, "model_not_available"),
    ("openai", "429", 429, "rate_limited"),
    ("google", "429", 429, "rate_limited"),
    ("openai", "quota", 429, "quota_exhausted"),
    ("anthropic", "quota", 429, "quota_exhausted"),
    ("cohere", "quota", 429, "quota_exhausted"),
    ("openai", "500", 503, "provider_unavailable"),
    ("azure_openai", "503", 503, "provider_unavailable"),
    ("anthropic", "529", 503, "provider_unavailable"),
    ("bedrock", "503", 503, "provider_unavailable"),
    ("openai", "reset", 502, "network_error"),
    ("openai", "badjson", 502, "bad_response"),
    ("openai", "redirect", 422, "blocked_endpoint"),
])
def test_provider_errors_map_to_closed_codes_with_remediation(
        api, fake_provider, adapter, directive, status, code):
    from chalicelib.providers.base import REMEDIATION

    # Given a connection whose provider fails this way, without retries
    cid, _ = create(api, fake_provider, adapter, directive, settings={"max_retries": 0})

    # When it is invoked
    resp = invoke(api, cid)

    # Then the closed code, its HTTP status and the remediation steps come back
    assert resp.status_code == status, resp.data
    err = resp.data["error"]
    assert err["code"] == code
    assert err["remediation"] == REMEDIATION[code]
    assert err["message"] and err["request_id"]
    if code == "rate_limited":
        # the fake says retry-after: 1; rounded up, not padded (it was 2)
        assert resp.headers["Retry-After"] == "1"


def test_unknown_model_is_model_not_available(api, fake_provider):
    cid, _ = create(api, fake_provider)
    resp = invoke(api, cid, {"messages": HELLO, "model": "gpt-nope"})
    assert resp.status_code == 422, resp.data
    assert resp.data["error"]["code"] == "model_not_available"


def test_failures_are_counted_in_usage_stats(api, fake_provider):
    cid, _ = create(api, fake_provider, directive="401")
    assert invoke(api, cid).status_code == 424
    usage = api.get(f"/connections/{cid}/stats").data["usage"]["7d"]
    assert usage["requests"] == 1 and usage["errors"] == 1
    assert usage["errors_by_code"] == {"invalid_api_key": 1}


def test_stats_percentiles_come_from_the_histogram_without_one_sample_per_request(
        api, fake_provider, monkeypatch):
    from chalicelib.api.deps import services
    from chalicelib.data.usage_repo import bucket_upper_ms, latency_bucket
    from chalicelib.services import invoke as invoke_module
    from chalicelib.services.common import utcnow

    expansions = Counter[str]()

    def counted(k: int) -> int:
        expansions["calls"] += 1
        return bucket_upper_ms(k)

    monkeypatch.setattr(invoke_module, "bucket_upper_ms", counted)

    # Given a busy connection: 4 million calls today, most fast, 10 % slow
    cid, _ = create(api, fake_provider)
    owner, day = api.user, utcnow().strftime("%Y-%m-%d")
    usage = services().usage._usage
    fast, slow = latency_bucket(40), latency_bucket(3000)
    for ms, n in ((40, 3_600_000), (3000, 400_000)):
        usage._ddb().update_item(
            TableName=table("usage"),
            Key={"connection_id": {"S": cid}, "sk": {"S": f"day#{day}"}},
            UpdateExpression="ADD requests :n, #b :n SET #o = :o",
            ExpressionAttributeNames={"#b": f"h{latency_bucket(ms)}", "#o": "owner"},
            ExpressionAttributeValues={":n": {"N": str(n)}, ":o": {"S": owner}})

    # When the stats are read
    started = time.monotonic()
    stats = api.get(f"/connections/{cid}/stats")
    elapsed = time.monotonic() - started

    # Then p50 is the fast bucket and p95 the slow one, walked from the bucket counts (it
    # used to build a list with one sample per request: 8 million values here, seconds and
    # hundreds of MB for a connection busy all month)
    assert stats.status_code == 200, stats.data
    week = stats.data["usage"]["7d"]
    assert week["requests"] == 4_000_000
    assert week["latency_p50_ms"] == bucket_upper_ms(fast)
    assert week["latency_p95_ms"] == bucket_upper_ms(slow)
    assert expansions["calls"] <= 8, expansions
    assert elapsed < 2.0, elapsed


# --------------------------------------------------------------------------- secrets


def test_no_secret_in_answers_errors_or_logs(api, fake_provider, app_logs, caplog):
    caplog.set_level(logging.DEBUG)
    # A canary no credential-shape regex knows: only the app's own bookkeeping can hide it.
    canary = f"cnry{uuid.uuid4().hex}Q"
    echo = f"cnry{uuid.uuid4().hex}fk_echo_Q"  # the provider quotes the whole key back
    seen: list[str] = []

    def keep(resp: Any) -> Any:
        seen.append(json.dumps(resp.data) + json.dumps(dict(resp.headers)))
        return resp

    ok_id, _ = create(api, fake_provider, key=canary)
    echo_id, _ = create(api, fake_provider, key=echo)
    bad_id, _ = create(api, fake_provider, key=canary + "fk_401")
    assert keep(invoke(api, ok_id)).status_code == 200
    echoed = keep(invoke(api, echo_id))
    assert echoed.status_code == 424
    assert "[REDACTED]" in echoed.data["error"]["message"]  # the provider did quote it
    assert keep(invoke(api, bad_id)).status_code == 424
    assert keep(invoke(api, ok_id, {"messages": HELLO, "bogus": canary})).status_code == 400
    assert keep(invoke(api, ok_id, {"messages": [{"role": canary, "content": "x"}]})
                ).status_code == 400
    assert keep(invoke(api, ok_id, {"messages": HELLO, "model": canary})).status_code == 422
    assert keep(api.get(f"/connections/{ok_id}/stats")).status_code == 200

    for blob in seen:
        assert canary not in blob and echo not in blob, blob
    logs = app_logs()
    assert '"/connections/{connection_id}/invoke"' in logs, "log capture is not working"
    logs += "\n".join(caplog.handler.format(r) for r in caplog.records
                      if not r.name.startswith("llm-connections"))
    assert canary not in logs and echo not in logs


def test_the_rate_window_slides_across_the_minute_boundary():
    """Issue 17 (6): a fixed window let 2x rpm through across a boundary (5 at 12:00:59.5,
    5 more at 12:01:00.5). Explicit times: no clock in the assertion."""
    from datetime import UTC, datetime

    from chalicelib.api.deps import services
    from tests.support.builders import unique

    repo = services().usage._usage
    cid = unique("rate-")
    at = datetime(2026, 12, 3, 12, 0, 59, 500_000, tzinfo=UTC)

    def take(when: datetime) -> int | None:
        return repo.take_rate_slot(cid, when, 5)

    assert [take(at) for _ in range(5)] == [None] * 5
    assert take(at) is not None  # the sixth in the same minute
    # One second later, in the next minute: the window still holds the five
    after = at.replace(minute=1, second=0)
    refused = [take(after) for _ in range(5)]
    assert all(r is not None for r in refused), refused
    assert 1 <= refused[0] <= 60
    # Half a minute on, half of last minute's count has left the window: two more fit
    half = at.replace(minute=1, second=30, microsecond=0)
    assert [take(half) for _ in range(3)][:2] == [None, None]
    assert take(half) is not None
    # Two minutes on, a full budget again
    later = at.replace(minute=3, second=0)
    assert [take(later) for _ in range(5)] == [None] * 5
