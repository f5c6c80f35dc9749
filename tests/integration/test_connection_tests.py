"""Issue 4 at the route level: POST /connections/{id}/test and POST /connections/test.

Every connection points at the fake provider server on loopback (``fk_<directive>`` in the
key picks the fault) and goes through ``chalice.test.Client`` against moto: status rules and
error codes per provider, the result shape, what is saved (status, history, statistics,
audit), secrets echoed back by a provider, the optional 1-token probe, and SSRF defences.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from fakeprovider import control
from tests.support.builders import caller, ddb, table
from tests.support.capture import app_logs_to_stdout
from tests.support.fakes import fake_credentials, fake_key, tag

pytestmark = pytest.mark.integration

ADAPTER = {"custom": "openai", "anthropic": "anthropic", "google": "google",
           "cohere": "cohere", "azure_openai": "azure_openai", "bedrock": "bedrock"}
PROVIDERS = tuple(ADAPTER)
MODELS = {
    "custom": "gpt-4o",
    "anthropic": "claude-sonnet-4-5",
    "google": "gemini-2.5-flash",
    "cohere": "command-a-03-2025",
    "azure_openai": "gpt-4o-prod",  # a deployment name
    "bedrock": "anthropic.claude-3-5-sonnet-20240620-v1:0",
}
# timeout_capped_at: the default 30 s timeout is longer than an API request may take (25 s)
RESULT_KEYS = {"status", "checks", "latency_ms", "available_models", "error", "warnings",
               "tested_at", "timeout_capped_at"}
CHECKS = {"connectivity", "authentication", "model_access", "performance"}


def make_key(provider: str, directive: str | None = None) -> str:
    return fake_key(ADAPTER[provider], directive)


def conn_body(fake: Any, provider: str, key: str, **extra: Any) -> dict[str, Any]:
    """A create body for the seed provider ``provider``, pointed at the fake (or at
    ``base_url`` when given)."""
    body: dict[str, Any] = {
        "name": f"{provider} {tag()}", "provider": provider,
        "credentials": fake_credentials(ADAPTER[provider], key),
        "default_model": MODELS[provider],
    }
    if fake is not None:
        body["base_url"] = control.base_url_for(ADAPTER[provider], fake.base_url)
    body.update(extra)
    return body


def create(api: Any, fake: Any, provider: str = "custom", directive: str | None = None, *,
           key: str | None = None, **extra: Any) -> tuple[str, str]:
    key = key or make_key(provider, directive)
    resp = api.post("/connections", conn_body(fake, provider, key, **extra))
    assert resp.status_code == 201, resp.data
    return resp.data["id"], key


def run_test(api: Any, cid: str, body: Any = None) -> dict[str, Any]:
    resp = api.post(f"/connections/{cid}/test", body)
    assert resp.status_code == 200, resp.data
    return resp.data


def last_seq(fake: Any) -> int:
    entries = control.requests(fake.base_url, limit=1)
    return int(entries[-1]["seq"]) if entries else 0


def sent(fake: Any, key: str, since: int = 0) -> list[dict[str, Any]]:
    """What the fake received with this key (by its fingerprint) after ``since``."""
    return control.requests(fake.base_url, fingerprint=key[-4:], since=since)


def audit_events(api: Any) -> list[dict[str, Any]]:
    resp = api.get("/audit?limit=100")
    assert resp.status_code == 200, resp.data
    return resp.data["items"]


def fast_provider(api: Any, fake: Any, **settings: Any) -> str:
    """An admin-made OpenAI-compatible provider on the fake (its own slow threshold)."""
    pid = f"fast-{uuid.uuid4().hex[:10]}"
    resp = api.as_user(f"admin-{tag()}", admin=True).post("/providers", {
        "id": pid, "name": f"Fast {pid}", "adapter": "openai",
        "base_url": control.base_url_for("openai", fake.base_url),
        "credential_fields": [{"name": "api_key", "label": "API key", "secret": True,
                               "required": True}],
        "default_settings": {"timeout_seconds": 30, "max_retries": 0, **settings},
    })
    assert resp.status_code == 201, resp.data
    return pid


# --------------------------------------------------------------------------- result shape


def test_healthy_connections_of_every_provider_are_active_and_saved(api, fake_provider):
    # One test for the six providers rather than six tests: each test pays the app's
    # warm-up (fresh clients after the environment reset) once.
    for provider in PROVIDERS:
        # Given a healthy connection
        cid, _ = create(api, fake_provider, provider)

        # When it is tested
        result = run_test(api, cid)

        # Then the result has the documented shape and passes every check
        assert set(result) == RESULT_KEYS, provider
        assert result["status"] == "active", (provider, result)
        assert set(result["checks"]) == CHECKS
        for name, check in result["checks"].items():
            assert set(check) == {"ok", "latency_ms", "detail"}, (provider, name)
        checks = {name: check["ok"] for name, check in result["checks"].items()}
        # Azure deployments are only provable by a generation; without a probe: unverified
        assert checks == {"connectivity": True, "authentication": True,
                          "model_access": None if provider == "azure_openai" else True,
                          "performance": True}, provider
        assert isinstance(result["latency_ms"], int) and result["latency_ms"] >= 0
        assert result["available_models"], provider
        assert all(isinstance(m, str) for m in result["available_models"])
        assert result["error"] is None
        assert result["tested_at"].endswith("Z")

        # And the connection carries the result
        conn = api.get(f"/connections/{cid}").data
        assert conn["status"] == "active", provider
        assert conn["last_tested_at"] == result["tested_at"]
        assert conn["available_models"] == result["available_models"]
        assert conn["latency_ms"] == result["latency_ms"]
        assert (conn["last_test"]["status"], conn["last_test"]["trigger"],
                conn["last_test"]["error_code"]) == ("active", "manual", None)


# --------------------------------------------------------------------------- status rules


WARNINGS = [
    # (provider, directive, extra connection fields, the warning's code)
    ("anthropic", "404", {}, "model_not_available"),  # listing works, the default model is missing
    ("google", "404", {}, "model_not_available"),
    ("bedrock", "ok", {"default_model": control.BEDROCK_NOT_AUTHORIZED[0]}, "model_not_available"),
    ("cohere", "headroom", {}, "rate_limit_headroom"),   # under 10 % of the rate limit left
    ("custom", "headroom", {}, "rate_limit_headroom"),
    # a lasting 429 with per-account rate-limit headers: the key is valid
    ("anthropic", "429", {"settings": {"max_retries": 0}}, "rate_limited"),
]


def test_degraded_connections_are_warnings(api, fake_provider):
    for provider, directive, extra, about in WARNINGS:
        case = f"{provider}-{directive}"
        cid, _ = create(api, fake_provider, provider, directive, **extra)
        result = run_test(api, cid)
        assert result["status"] == "warning", (case, result)
        assert result["error"] is None
        codes = [w["code"] for w in result["warnings"]]
        assert about in codes, (case, result["warnings"])
        assert all(w["message"] and w["remediation"] for w in result["warnings"]), case
        if about == "model_not_available":
            assert result["checks"]["model_access"]["ok"] is False, case
            assert result["available_models"], case
        conn = api.get(f"/connections/{cid}").data
        assert conn["status"] == "warning", case
        assert conn["status_message"], case  # the warning text, for the list view
        assert conn["warnings"] == result["warnings"], case  # structured, for troubleshooting
        assert conn["error"] is None, case
        history = api.get(f"/connections/{cid}/tests").data["items"]
        assert history[0]["result"]["warnings"] == result["warnings"], case


def test_slow_provider_is_a_warning(api, fake_provider):
    # Given an OpenAI-compatible provider whose slow threshold is 200 ms
    pid = fast_provider(api, fake_provider, slow_threshold_ms=200)
    key = make_key("custom", "slow400")
    resp = api.post("/connections", {"name": "slow", "provider": pid,
                                     "credentials": {"api_key": key},
                                     "default_model": "gpt-4o"})
    assert resp.status_code == 201, resp.data

    result = run_test(api, resp.data["id"])

    assert result["status"] == "warning", result
    assert result["checks"]["performance"]["ok"] is False
    assert result["latency_ms"] >= 400
    assert [w["code"] for w in result["warnings"]] == ["slow_response"]
    assert "slow" in result["warnings"][0]["message"].lower()


ERRORS = [
    # (provider, directive, settings, error code)
    ("custom", "401", {}, "invalid_api_key"),
    ("anthropic", "401", {}, "invalid_api_key"),
    ("google", "401", {}, "invalid_api_key"),       # Google answers 400 API_KEY_INVALID
    ("cohere", "498", {}, "invalid_api_key"),
    ("azure_openai", "401", {}, "invalid_api_key"),
    ("bedrock", "401", {}, "invalid_api_key"),      # UnrecognizedClientException
    ("bedrock", "403", {}, "permission_denied"),
    ("google", "403", {}, "permission_denied"),
    ("google", "429", {"max_retries": 0}, "rate_limited"),   # no per-account headers
    ("anthropic", "quota", {}, "quota_exhausted"),
    ("cohere", "quota", {}, "quota_exhausted"),
    ("azure_openai", "reset", {"max_retries": 0}, "network_error"),
    ("anthropic", "529", {"max_retries": 0}, "provider_unavailable"),
    ("bedrock", "503", {"max_retries": 0}, "provider_unavailable"),
    ("custom", "badjson", {}, "bad_response"),
    ("cohere", "redirect", {}, "blocked_endpoint"),
]


def test_failures_are_errors_with_a_closed_code(api, fake_provider):
    for provider, directive, settings, code in ERRORS:
        case = f"{provider}-{directive}"
        cid, _ = create(api, fake_provider, provider, directive,
                        **({"settings": settings} if settings else {}))
        result = run_test(api, cid)

        assert result["status"] == "error", (case, result)
        assert set(result["error"]) == {"code", "message", "remediation"}
        assert result["error"]["code"] == code, (case, result["error"])
        assert result["error"]["message"], case
        assert result["error"]["remediation"], case
        assert all(isinstance(step, str) for step in result["error"]["remediation"])
        assert result["checks"]["performance"]["ok"] is None, case
        if code in ("invalid_api_key", "permission_denied"):
            assert result["checks"]["authentication"]["ok"] is False, case
        conn = api.get(f"/connections/{cid}").data
        assert conn["status"] == "error", case
        assert conn["last_test"]["error_code"] == code, case
        assert conn["status_message"] == result["error"]["message"], case


def test_a_hang_is_a_timeout_within_the_budget(api, fake_provider):
    # Given a connection whose provider never answers, with a 2 s timeout (and the default
    # 3 retries: the budget covers them all)
    cid, _ = create(api, fake_provider, "cohere", "hang", settings={"timeout_seconds": 2})

    started = time.monotonic()
    result = run_test(api, cid)
    elapsed = time.monotonic() - started

    assert elapsed <= 3.0, elapsed  # timeout_seconds + 1
    assert result["error"]["code"] == "timeout", result
    assert result["latency_ms"] <= 3000
    history = api.get(f"/connections/{cid}/tests").data["items"]
    assert [h["error_code"] for h in history] == ["timeout"]


def test_a_disabled_provider_is_provider_disabled(api, fake_provider):
    # Given a connection of a provider an admin then disables
    pid = fast_provider(api, fake_provider)
    key = make_key("custom")
    made = api.post("/connections", {"name": "soon disabled", "provider": pid,
                                     "credentials": {"api_key": key},
                                     "default_model": "gpt-4o"})
    assert made.status_code == 201, made.data
    admin = api.as_user(f"admin-{tag()}", admin=True)
    off = admin.patch(f"/providers/{pid}", {"enabled": False})
    assert off.status_code == 200, off.data
    seq = last_seq(fake_provider)

    # When it is tested, Then nothing is called and the result says why
    result = run_test(api, made.data["id"])
    assert result["status"] == "error"
    assert result["error"]["code"] == "provider_disabled"
    assert result["error"]["remediation"]
    assert sent(fake_provider, key, seq) == []


def test_what_cannot_be_tested_is_refused_before_any_call(api, fake_provider):
    seq = last_seq(fake_provider)
    # An unknown connection, and someone else's, are the same 404
    assert api.post("/connections/nope_doesnotexist/test").status_code == 404
    cid, _ = create(api, fake_provider)
    assert api.as_user(f"other-{tag()}").post(f"/connections/{cid}/test").status_code == 404
    # Options are validated
    bad = api.post(f"/connections/{cid}/test", {"probe_model": "yes"})
    assert bad.status_code == 400
    assert bad.data["error"]["field"] == "probe_model"
    assert api.post(f"/connections/{cid}/test", {"bogus": 1}).status_code == 400
    # An imported connection has no secret yet
    imported = api.post("/connections/import", {
        "format": "llm-connections-export", "version": 1,
        "connections": [{"name": "imported", "provider": "anthropic",
                         "base_url": control.base_url_for("anthropic", fake_provider.base_url),
                         "default_model": "claude-haiku-4-5"}]})
    assert imported.status_code == 201, imported.data
    refused = api.post(f"/connections/{imported.data['items'][0]['id']}/test")
    assert refused.status_code == 422, refused.data
    assert refused.data["error"]["code"] == "needs_credentials"
    assert refused.data["error"]["field"] == "credentials"
    # And none of it reached a provider or the history
    assert control.requests(fake_provider.base_url, since=seq) == []
    assert api.get(f"/connections/{cid}/tests").data["items"] == []


# --------------------------------------------------------------------------- saved results


def test_history_is_newest_first_paginated_and_feeds_the_stats(api, fake_provider):
    from chalicelib.api.deps import services
    from chalicelib.data.models import TestRecordModel
    from chalicelib.services.common import iso, utcnow

    # Given a key that fails its first request only (a 401), tested three times
    cid, _ = create(api, fake_provider, "custom", "401x1")
    results = [run_test(api, cid) for _ in range(3)]
    assert [r["status"] for r in results] == ["error", "active", "active"]

    # Then the history lists them newest first, a page at a time
    first = api.get(f"/connections/{cid}/tests?limit=2")
    assert first.status_code == 200, first.data
    assert first.data["next_cursor"]
    second = api.get(f"/connections/{cid}/tests?limit=2&cursor={first.data['next_cursor']}")
    assert second.data["next_cursor"] is None
    items = first.data["items"] + second.data["items"]
    assert [i["tested_at"] for i in items] == [r["tested_at"] for r in reversed(results)]
    assert [(i["trigger"], i["status"], i["error_code"]) for i in items] == [
        ("manual", "active", None), ("manual", "active", None),
        ("manual", "error", "invalid_api_key")]
    assert items[0]["result"] == results[-1]
    assert api.get(f"/connections/{cid}/tests?cursor=garbage").status_code == 400

    # And older entries (written straight to the history) fall in the 30-day window only
    now = utcnow()
    for days, status, latency in ((10, "error", 9000), (40, "active", 1)):
        at = iso(now - timedelta(days=days))
        services().testing._history.add(TestRecordModel(
            connection_id=cid, sk=f"{at}#old{days}", owner=api.user, tested_at=at,
            trigger="daily", status=status, latency_ms=latency, error_code=None, result={}))
    stats = api.get(f"/connections/{cid}/stats")
    assert stats.status_code == 200, stats.data
    recent = sorted(r["latency_ms"] for r in results)
    assert stats.data["tests"]["7d"] == {
        "tests": 3, "failures": 1, "warnings": 0,
        "latency_p50_ms": recent[1], "latency_p95_ms": recent[2]}
    assert stats.data["tests"]["30d"] == {
        "tests": 4, "failures": 2, "warnings": 0,
        "latency_p50_ms": recent[1], "latency_p95_ms": 9000}

    # And the list shows status, last test time and latency
    listed = {c["id"]: c for c in api.get("/connections").data["items"]}
    assert listed[cid]["status"] == "active"
    assert listed[cid]["last_tested_at"] == results[-1]["tested_at"]
    assert listed[cid]["latency_ms"] == results[-1]["latency_ms"]


def test_every_test_writes_an_audit_event(api, fake_provider):
    ok_id, _ = create(api, fake_provider, "anthropic")
    bad_id, _ = create(api, fake_provider, "anthropic", "401")
    run_test(api, ok_id)
    run_test(api, bad_id)
    run_test(api, ok_id, {"probe_model": True})

    tests = [e for e in audit_events(api) if e["action"] == "connection.test"]
    assert sorted((e["target"], e["outcome"], e["detail"]["status"], e["detail"]["error_code"])
                  for e in tests) == sorted([
        (f"connection:{ok_id}", "success", "active", None),
        (f"connection:{ok_id}", "success", "active", None),
        (f"connection:{bad_id}", "failure", "error", "invalid_api_key")])
    assert all(e["actor"] == api.user and e["detail"]["trigger"] == "manual" for e in tests)


def test_an_unsaved_test_stores_nothing_but_an_audit_event(api, fake_provider):
    # Given a user with nothing saved
    key = make_key("custom", "401")
    body = conn_body(fake_provider, "custom", key)

    # When a configuration is tested before saving, healthy and failing
    ok = api.post("/connections/test", {**body, "credentials": {"api_key": make_key("custom")},
                                        "probe_model": True})
    bad = api.post("/connections/test", body)

    # Then both answer a full result
    assert ok.status_code == 200, ok.data
    assert set(ok.data) == RESULT_KEYS
    assert ok.data["status"] == "active"
    assert ok.data["checks"]["model_access"]["ok"] is True
    assert bad.status_code == 200, bad.data
    assert bad.data["error"]["code"] == "invalid_api_key"

    # And there is no connection, no history and no name taken...
    assert api.get("/connections").data["items"] == []
    scanned = ddb().scan(TableName=table("tests"), ConsistentRead=True,
                         FilterExpression="#o = :o", ExpressionAttributeNames={"#o": "owner"},
                         ExpressionAttributeValues={":o": {"S": api.user}})
    assert scanned["Items"] == []
    again = api.post("/connections", body)
    assert again.status_code == 201, again.data

    # ...only one audit event per unsaved test
    events = [e for e in audit_events(api) if e["action"] != "connection.create"]
    assert sorted((e["action"], e["detail"]["status"], e["detail"]["error_code"])
                  for e in events) == [
        ("connection.test_unsaved", "active", None),
        ("connection.test_unsaved", "error", "invalid_api_key")]
    assert all(e["target"] == "provider:custom" for e in events)

    # And bad input is a 400 naming the field
    assert api.post("/connections/test", {**body, "probe_model": 1}).status_code == 400
    missing = api.post("/connections/test", {k: v for k, v in body.items() if k != "base_url"})
    assert missing.status_code == 400
    assert missing.data["error"]["field"] == "base_url"


# --------------------------------------------------------------------------- secrets


@pytest.fixture()
def app_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What the Powertools logger prints (through its redacting formatter), at INFO."""
    with app_logs_to_stdout():
        yield lambda: capsys.readouterr().out


def test_a_key_echoed_by_the_provider_goes_nowhere(api, fake_provider, app_logs, caplog):
    # INFO, the level the service runs at (botocore's own DEBUG lines print SigV4 headers,
    # and with them a Bedrock access key id; nobody runs a stage at DEBUG)
    caplog.set_level(logging.INFO)
    blobs: list[str] = []
    keys: dict[str, str] = {}
    for provider in ("custom", "anthropic", "google", "bedrock"):
        # Given a key no credential-shaped regex knows, which the provider quotes back
        if provider == "bedrock":
            key = f"AKIAFAKE{uuid.uuid4().hex[:8].upper()}fk_echo_{tag()}"
        else:
            key = f"cnry{uuid.uuid4().hex}fk_echo_{tag()}"
        cid, _ = create(api, fake_provider, provider, key=key)
        keys[cid] = key
        seq = last_seq(fake_provider)

        # When it is tested (saved, and unsaved)
        result = api.post(f"/connections/{cid}/test")
        unsaved = api.post("/connections/test", conn_body(fake_provider, provider, key))

        # Then the provider did echo it...
        assert sent(fake_provider, key, seq), f"{provider}: the fake was not called"
        assert result.data["error"]["code"] == "invalid_api_key", (provider, result.data)
        assert "[REDACTED]" in result.data["error"]["message"], provider
        blobs += [result.body.decode(), unsaved.body.decode(),
                  api.get(f"/connections/{cid}").body.decode(),
                  api.get(f"/connections/{cid}/tests").body.decode()]

    # ...and it is in no answer, stored item, audit event or log line
    blobs.append(json.dumps(audit_events(api)))
    blobs.append(app_logs())
    blobs.append("\n".join(caplog.handler.format(r) for r in caplog.records))
    # The stored items themselves, read raw (after the logs: botocore logs what it reads)
    client = ddb()
    for cid in keys:
        blobs.append(json.dumps(client.get_item(TableName=table("connections"),
                                                Key={"id": {"S": cid}})["Item"], default=str))
        blobs.append(json.dumps(_query(client, "tests", "connection_id", cid), default=str))
    blobs.append(json.dumps(_query(client, "audit", "actor", api.user), default=str))
    for blob in blobs:
        for key in keys.values():
            assert key not in blob, blob[:2000]


def _query(client: Any, name: str, pk: str, value: str) -> list[dict[str, Any]]:
    items = client.query(TableName=table(name), KeyConditionExpression="#k = :v",
                         ExpressionAttributeNames={"#k": pk},
                         ExpressionAttributeValues={":v": {"S": value}})["Items"]
    assert items, name
    return list(items)


# --------------------------------------------------------------------------- probe


def test_probe_model_makes_one_1_token_generation_and_is_off_by_default(api, fake_provider):
    for provider in ("custom", "azure_openai"):
        cid, key = create(api, fake_provider, provider)

        # When tested without options, Then no generation is made
        seq = last_seq(fake_provider)
        plain = run_test(api, cid)
        assert plain["status"] == "active", provider
        calls = sent(fake_provider, key, seq)
        assert calls, provider
        assert not [c for c in calls if c["path"].endswith("/chat/completions")], provider

        # When tested with probe_model, Then exactly one 1-token generation is made
        seq = last_seq(fake_provider)
        probed = run_test(api, cid, {"probe_model": True})
        assert probed["status"] == "active", (provider, probed)
        assert probed["checks"]["model_access"]["ok"] is True
        gens = [c for c in sent(fake_provider, key, seq)
                if c["path"].endswith("/chat/completions")]
        assert len(gens) == 1, (provider, gens)
        body = gens[0]["body"]
        assert body.get("max_tokens", body.get("max_completion_tokens")) == 1, body


# --------------------------------------------------------------------------- SSRF


BLOCKED_URLS = [
    "https://169.254.169.254/",
    "https://[::ffff:169.254.169.254]/",
    "https://10.0.0.1/",
    "https://100.64.0.1/",
    "https://[fd00::1]/",
    "https://2852039166/",
    "https://0xA9FEA9FE/",
    "https://user:pass@example.com/",
]


def test_blocked_base_urls_are_refused_on_save_patch_and_unsaved_test(api, fake_provider):
    cid, _ = create(api, fake_provider)
    for url in BLOCKED_URLS:
        body = conn_body(fake_provider, "custom", make_key("custom"), base_url=url)
        resp = api.post("/connections", body)
        assert resp.status_code == 400, (url, resp.data)
        assert resp.data["error"]["field"] == "base_url", url
        unsaved = api.post("/connections/test", body)
        assert unsaved.status_code == 400, (url, unsaved.data)
        assert unsaved.data["error"]["field"] == "base_url", url
        patched = api.patch(f"/connections/{cid}", {
            "base_url": url, "credentials": {"api_key": make_key("custom")}})
        assert patched.status_code == 400, (url, patched.data)
        assert patched.data["error"]["field"] == "base_url", url
    assert [c["id"] for c in api.get("/connections").data["items"]] == [cid]
    assert [e["action"] for e in audit_events(api)] == ["connection.create"]


def test_http_is_refused_outside_the_local_stage(api, fake_provider):
    from chalicelib.api.deps import services
    from chalicelib.crypto import EnvelopeCipher
    from chalicelib.data import aws
    from chalicelib.data.connections_repo import ConnectionRepository
    from chalicelib.data.tests_repo import TestHistoryRepository
    from chalicelib.errors import InvalidInput
    from chalicelib.providers.netguard import BlockedURL, check_url
    from chalicelib.providers.runner import run_sync, test_target
    from chalicelib.services.connections import ConnectionService
    from chalicelib.services.testing import TestingService

    # The check itself
    with pytest.raises(BlockedURL):
        check_url("http://api.example.com/v1", allow_hosts=frozenset(), allow_http=False)
    check_url("https://api.example.com/v1", allow_hosts=frozenset(), allow_http=False)

    # And a connection service with a cloud stage's settings
    svc = services()
    settings = dataclasses.replace(svc.settings, stage="dev", outbound_allow_http=False,
                                   outbound_allow_hosts=frozenset())

    def url_check(url: str) -> None:
        check_url(url, allow_hosts=settings.outbound_allow_hosts, allow_http=False)

    dev = ConnectionService(ConnectionRepository(), svc.providers, svc.audit,
                            lambda: EnvelopeCipher(aws.client("kms"), settings.kms_key_id),
                            settings, url_check)
    body = {"name": "dev", "provider": "custom", "credentials": {"api_key": make_key("custom")},
            "base_url": "http://llm.example.com/v1"}
    with pytest.raises(InvalidInput) as err:
        dev.create(caller(api.user), body)
    assert err.value.field == "base_url"

    # And its tests: an unsaved http configuration is refused; a connection saved with an
    # http URL (in the local stage) is blocked before any call once the stage forbids http
    testing = TestingService(dev, svc.providers, ConnectionRepository(),
                             TestHistoryRepository(), svc.audit, settings)
    with pytest.raises(InvalidInput) as err:
        testing.test_unsaved(caller(api.user), body)
    assert err.value.field == "base_url"
    key = make_key("custom")
    seq = last_seq(fake_provider)
    target = testing.target(svc.providers.get_model("custom"),
                            base_url=control.base_url_for("openai", fake_provider.base_url),
                            credentials={"api_key": key}, default_model="gpt-4o", settings={})
    outcome = run_sync(test_target(target))
    assert outcome.error is not None and outcome.error["code"] == "blocked_endpoint"
    assert "https://" in outcome.error["message"]  # refused for its scheme, first
    assert control.requests(fake_provider.base_url, since=seq) == []


@pytest.fixture()
def listener() -> Any:
    """A TCP listener on loopback: a connection attempt would show up as a pending accept."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.3)
    yield sock
    sock.close()


def _nothing_connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except TimeoutError:
        return True
    conn.close()
    return False


def test_a_host_name_resolving_to_a_private_address_is_blocked_unopened(api, listener,
                                                                       monkeypatch):
    # Given host names that resolve to a loopback / private address (DNS is faked)
    port = listener.getsockname()[1]
    answers = {"llm-internal.example.test": ["127.0.0.1"],
               "llm-mixed.example.test": ["93.184.216.34", "10.0.0.7"]}
    real = socket.getaddrinfo
    asked: list[str] = []

    def fake_getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name in answers:
            asked.append(name)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                    for ip in answers[name]]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)

    for host in answers:
        for provider, path in (("custom", "/v1"), ("bedrock", "/bedrock")):
            case = (host, provider)
            # The save does no DNS: the URL alone is fine
            body = conn_body(None, provider, make_key(provider),
                             base_url=f"http://{host}:{port}{path}")
            made = api.post("/connections", body)
            assert made.status_code == 201, (case, made.data)

            # When tested, saved and unsaved
            results = [run_test(api, made.data["id"])]
            unsaved = api.post("/connections/test", body)
            assert unsaved.status_code == 200, (case, unsaved.data)
            results.append(unsaved.data)

            # Then it is blocked
            for result in results:
                assert result["status"] == "error", case
                assert result["error"]["code"] == "blocked_endpoint", (case, result)
                assert "resolves to" in result["error"]["message"], case
    # And the guard did resolve the names, but no socket ever reached the listener (an
    # attempt would wait in its backlog)
    assert sorted(set(asked)) == sorted(answers)
    assert _nothing_connected(listener)


def test_a_redirect_is_blocked_and_its_target_never_gets_the_key(api, fake_provider):
    for provider in ("custom", "anthropic", "google", "bedrock"):
        cid, key = create(api, fake_provider, provider, "redirect")
        seq = last_seq(fake_provider)

        result = run_test(api, cid)

        assert result["error"]["code"] == "blocked_endpoint", (provider, result)
        log = control.requests(fake_provider.base_url, since=seq)
        mine = [e for e in log if e["key_fingerprint"] == key[-4:]]
        assert [e["status"] for e in mine] == [302], provider  # asked once, not followed
        assert [e for e in log if e["redirect_followed"]] == [], provider
