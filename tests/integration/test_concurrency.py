"""Races: If-Match, lost updates, Idempotency-Key and unique names under 20 concurrent calls.

``chalice.test.Client`` is not thread-safe (the app keeps ``current_request`` on itself, so
concurrent requests would read each other's), so the threads call what the routes call: the
service functions, with a ``Caller`` each, and domain errors are mapped to HTTP statuses by the
API's own mapping (``error_response``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import openai_body
from tests.support.builders import caller, unique
from tests.support.moto_patches import transaction_conflicts

pytestmark = pytest.mark.integration

N = 20


# The emulator (devtools/emulator.py) serialises DynamoDB requests, which gives moto the
# atomicity of DynamoDB's conditional writes and transactions that these races rely on.


def _race(calls: list[Callable[[], Any]]) -> list[tuple[int, Any]]:
    """Run the calls at once (a barrier releases them together); (status, body) each."""
    from chalicelib.api.http import error_response
    from chalicelib.errors import DomainError

    barrier = threading.Barrier(len(calls))

    def run(fn: Callable[[], Any]) -> tuple[int, Any]:
        barrier.wait()
        try:
            return 200, fn()
        except DomainError as exc:
            resp = error_response(exc, "race")
            return resp.status_code, resp.body

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.fixture()
def svc(api: Any) -> Any:
    from chalicelib.api.deps import services

    # Clients are made on first use; made by 20 threads at once they would cost seconds.
    svc = services()
    warm = caller(unique("warm-"))
    created = svc.idempotency.run("connection.create", warm.user_id, "warm", openai_body(),
                                  lambda b: svc.connections.create(warm, b),
                                  validate=svc.connections.idempotency_fingerprint(openai_body()))
    svc.connections.update(warm, created["id"], {"description": "warm"}, None)
    return svc


def _create(svc: Any, user: str, **kw: Any) -> dict[str, Any]:
    return svc.connections.create(caller(user), openai_body(**kw))


def test_same_if_match_lets_exactly_one_patch_through(api, svc):
    conn = _create(svc, api.user)
    who = caller(api.user)
    results = _race([
        (lambda i=i: svc.connections.update(who, conn["id"], {"description": f"d{i}"}, 1))
        for i in range(N)
    ])
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 1, 412: N - 1}, statuses
    winner = next(body for status, body in results if status == 200)
    final = api.get(f"/connections/{conn['id']}").data
    assert final["version"] == 2
    assert final["description"] == winner["description"]


def test_patches_without_if_match_all_succeed_and_none_is_lost(api, svc):
    conn = _create(svc, api.user, settings={"temperature": 0.5})
    who = caller(api.user)
    settings = {"timeout_seconds": 61, "max_retries": 7, "rate_limit_rpm": 600,
                "max_tokens": 4096, "temperature": 1.25, "monthly_request_quota": 1000,
                "monthly_token_quota": 5_000_000, "probe_model_daily": True}
    bodies: list[dict[str, Any]] = [{"settings": {k: v}} for k, v in settings.items()]
    bodies += [
        {"name": "Renamed in a race"},
        {"default_model": "gpt-4.1"},
        {"credentials": {"organization_id": "org-race42"}},
        {"credentials": {"project_id": "proj_race42"}},
        {"credentials": {"api_key": "sk-raced-key-0123456789"}},
    ]
    descriptions = {f"description {i}" for i in range(N - len(bodies))}
    bodies += [{"description": d} for d in sorted(descriptions)]
    assert len(bodies) == N

    results = _race([
        (lambda b=b: svc.connections.update(who, conn["id"], b, None)) for b in bodies
    ])
    assert [status for status, _ in results] == [200] * N, [b for s, b in results if s != 200]
    final = api.get(f"/connections/{conn['id']}").data
    assert final["version"] == N + 1
    assert final["settings"] == settings
    assert final["name"] == "Renamed in a race"
    assert final["default_model"] == "gpt-4.1"
    assert final["description"] in descriptions
    assert final["credentials_masked"] == {"api_key": "\u2022" * 8 + "6789",
                                           "organization_id": "org-race42",
                                           "project_id": "proj_race42"}
    from chalicelib.data.models import ConnectionModel

    opened = svc.connections.open_secrets(ConnectionModel.get(conn["id"], consistent_read=True))
    assert opened == {"api_key": "sk-raced-key-0123456789"}
    # The renamed connection holds exactly one name: the old name is free, the new one taken.
    assert api.post("/connections", openai_body("My OpenAI")).status_code == 201
    assert api.post("/connections", openai_body("renamed in a race")).status_code == 409


def test_one_idempotency_key_makes_one_connection(api, svc):
    who = caller(api.user)
    key = unique("idem-")
    body = openai_body("idempotent")

    def create() -> dict[str, Any]:
        return svc.idempotency.run("connection.create", who.user_id, key, body,
                                   lambda b: svc.connections.create(who, b),
                                   validate=svc.connections.idempotency_fingerprint(body))

    results = _race([create] * N)
    assert [status for status, _ in results] == [200] * N, results
    ids = {conn["id"] for _, conn in results}
    assert len(ids) == 1
    listed = api.get("/connections").data["items"]
    assert [c["id"] for c in listed] == list(ids)

    # Over HTTP: a replay answers the same connection; another body with the key is a 409.
    replay = api.post("/connections", body, headers={"Idempotency-Key": key})
    assert replay.status_code == 201 and replay.data["id"] in ids
    other = api.post("/connections", openai_body("another"), headers={"Idempotency-Key": key})
    assert other.status_code == 409
    assert other.data["error"]["code"] == "idempotency_key_reused"
    assert other.data["error"]["field"] == "Idempotency-Key"
    assert len(api.get("/connections").data["items"]) == 1
    # Keys are scoped to the caller: another user's same key is a new connection.
    stranger = api.as_user(api.user + "-b")
    theirs = stranger.post("/connections", body, headers={"Idempotency-Key": key})
    assert theirs.status_code == 201 and theirs.data["id"] not in ids


def test_one_idempotency_key_with_different_bodies_at_once_never_makes_two(api, svc):
    who = caller(api.user)
    key = unique("idem-")

    def create(i: int) -> dict[str, Any]:
        body = openai_body(f"body {i % 2}")
        return svc.idempotency.run("connection.create", who.user_id, key, body,
                                   lambda b: svc.connections.create(who, b),
                                   validate=svc.connections.idempotency_fingerprint(body))

    results = _race([(lambda i=i: create(i)) for i in range(N)])
    statuses = Counter(status for status, _ in results)
    assert set(statuses) <= {200, 409}, results
    assert len(api.get("/connections").data["items"]) == 1
    assert len({body["id"] for status, body in results if status == 200}) == 1


def test_the_same_name_created_at_once_wins_exactly_once(api, svc):
    who = caller(api.user)
    spellings = ["Shared", "shared", "SHARED", " shared ", "Shared "]
    results = _race([
        (lambda i=i: svc.connections.create(who, openai_body(spellings[i % len(spellings)])))
        for i in range(N)
    ])
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 1, 409: N - 1}, statuses
    conflicts = [body["error"] for status, body in results if status == 409]
    assert {e["code"] for e in conflicts} == {"name_taken"}
    assert len(api.get("/connections").data["items"]) == 1


# -- DynamoDB's TransactionConflict ----------------------------------------------------------


@pytest.mark.moto_only
def test_transaction_conflicts_are_retried_not_500(api):
    with transaction_conflicts(2) as made:
        created = api.post("/connections", openai_body())
    assert made == [2]
    assert created.status_code == 201, created.data
    cid = created.data["id"]
    with transaction_conflicts(2) as made:
        patched = api.patch(f"/connections/{cid}", {"name": "renamed"})
    assert made == [2] and patched.status_code == 200, patched.data
    assert patched.data["version"] == 2
    with transaction_conflicts(1):
        guarded = api.patch(f"/connections/{cid}", {"description": "d"},
                            headers={"If-Match": '"v2"'})
    assert guarded.status_code == 200, guarded.data
    with transaction_conflicts(1):
        dep = api.put(f"/connections/{cid}/dependents/d1", {"kind": "prompt",
                                                            "display_name": "x"})
    assert dep.status_code == 201, dep.data
    with transaction_conflicts(1):
        assert api.delete(f"/connections/{cid}/dependents/d1").status_code == 204
    with transaction_conflicts(1):
        deleted = api.delete(f"/connections/{cid}")
    assert deleted.status_code == 204, deleted.data
    assert api.get("/connections").data["items"] == []


class _Crash(BaseException):
    """Dies like a Lambda timeout: Powertools only cleans up after an ``Exception``."""


def test_a_crashed_create_holds_its_idempotency_key_for_the_request_only(api, svc):
    import hashlib
    import json
    import time

    from tests.support.builders import ddb, table

    who = caller(api.user)
    key = unique("idem-")
    body = openai_body("crashed")

    def crash(_body: dict[str, Any]) -> dict[str, Any]:
        raise _Crash

    with pytest.raises(_Crash):
        svc.idempotency.run("connection.create", who.user_id, key, body, crash,
                            validate=svc.connections.idempotency_fingerprint(body))
    digest = hashlib.sha256(json.dumps(["connection.create", who.user_id, key],
                                       sort_keys=True).encode()).hexdigest()
    found = ddb().scan(TableName=table("idempotency"), ConsistentRead=True,
                       FilterExpression="contains(id, :h)",
                       ExpressionAttributeValues={":h": {"S": digest}})["Items"]
    assert len(found) == 1 and found[0]["status"]["S"] == "INPROGRESS"
    record = found[0]
    assert "in_progress_expiration" in record, "an orphaned record would block the key for 24 h"
    now_ms = time.time() * 1000
    assert now_ms < int(record["in_progress_expiration"]["N"]) <= now_ms + 31_000

    with pytest.raises(Exception) as busy:
        svc.idempotency.run("connection.create", who.user_id, key, body,
                            lambda b: svc.connections.create(who, b), wait_seconds=0.2,
                            validate=svc.connections.idempotency_fingerprint(body))
    assert getattr(busy.value, "code", None) == "in_progress"

    # Once the request's time is up (moved into the past here), a retry runs anew.
    ddb().update_item(TableName=table("idempotency"), Key={"id": record["id"]},
                      UpdateExpression="SET in_progress_expiration = :t",
                      ExpressionAttributeValues={":t": {"N": str(int(now_ms) - 1000)}})
    made = svc.idempotency.run("connection.create", who.user_id, key, body,
                               lambda b: svc.connections.create(who, b),
                               validate=svc.connections.idempotency_fingerprint(body))
    assert [c["id"] for c in api.get("/connections").data["items"]] == [made["id"]]
