"""The static scan against what the code really calls: drive the main flows of each function
on moto, record every AWS request, and check each one is among the calls ``infra.codescan``
derived for that function (and so in its role's policy). A miss here is a call the scan cannot
see, which in AWS would be an AccessDenied.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from chalicelib.settings import TABLE_ENV
from infra import codescan, policy
from tests.support.aws_calls import AwsCalls, count_aws_calls

pytestmark = pytest.mark.integration


def observed(calls: AwsCalls, env: dict[str, str]) -> set[tuple[str, str]]:
    """{(symbolic resource, "service:Action")} of the recorded requests."""
    tables = {env[var]: key for key, var in TABLE_ENV.items()}
    out: set[tuple[str, str]] = set()

    def table(params: dict[str, Any], action: str) -> None:
        key = tables.get(params.get("TableName", ""), f"<unknown {params.get('TableName')}>")
        index = params.get("IndexName")
        out.add((f"table/{key}/index/{index}" if index else f"table/{key}",
                 f"dynamodb:{action}"))

    for service, op, params in calls.params:
        if service == "dynamodb" and op == "TransactWriteItems":
            for item in params["TransactItems"]:
                for kind, inner in item.items():
                    action = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                              "ConditionCheck": "ConditionCheckItem"}[kind]
                    table(inner, action)
        elif service == "dynamodb" and op == "BatchWriteItem":
            for name in params["RequestItems"]:
                table({"TableName": name}, op)
        elif service == "dynamodb":
            table(params, op)
        else:
            resource = codescan.SERVICE_DEFAULTS[service]
            for action in codescan.IAM_ACTIONS.get((service, op), (op,)):
                out.add((resource, f"{service}:{action}"))
    return out


def allowed(function: str) -> set[tuple[str, str]]:
    return {(r, a) for r, actions in policy.declared(function).items() for a in actions}


def test_what_the_api_really_calls_is_what_its_policy_allows(api, fake_provider, scan):
    # Given the main routes, driven through the API against moto and the fake providers
    with count_aws_calls() as calls:
        assert api.get("/health").status_code == 200
        assert api.get("/providers").status_code == 200
        body = {"name": f"rt {uuid.uuid4().hex[:8]}", "provider": "custom",
                "base_url": fake_provider.url("openai"),
                "credentials": {"api_key": f"sk-fake-{uuid.uuid4().hex[:12].upper()}"},
                "default_model": "gpt-4o"}
        created = api.post("/connections", body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert created.status_code == 201, created.data
        cid = created.data["id"]
        assert api.get("/connections").status_code == 200
        assert api.post(f"/connections/{cid}/test").status_code == 200
        assert api.get(f"/connections/{cid}/tests").status_code == 200
        renamed = api.patch(f"/connections/{cid}", {"name": f"rt2 {uuid.uuid4().hex[:6]}"},
                            headers={"If-Match": created.headers["etag"]})
        assert renamed.status_code == 200, renamed.data
        assert api.put(f"/connections/{cid}/dependents/agent-1",
                       {"kind": "agent", "display_name": "Agent 1"}).status_code in (200, 201)
        assert api.get("/audit").status_code == 200
        sub = api.post("/notifications/subscriptions",
                       {"protocol": "email", "endpoint": "rt@example.com"})
        assert sub.status_code in (200, 201), sub.data
        assert api.delete(f"/notifications/subscriptions/{sub.data['id']}").status_code == 204
        assert api.delete(f"/connections/{cid}?force=true").status_code == 204
    # Then every request is one the scan derived for the API function, and allowed
    seen = observed(calls, api_env())
    derived = {(c.resource, f"{c.service}:{c.action}") for c in scan.calls_from(api_roots())}
    assert seen - derived == set()
    assert seen - allowed("api_handler") == set()


def test_what_the_daily_functions_really_call_is_what_their_policies_allow(api, fake_provider,
                                                                            scan):
    from chalicelib.api import events

    # Given a connection to test
    body = {"name": f"daily {uuid.uuid4().hex[:8]}", "provider": "custom",
            "base_url": fake_provider.url("openai"),
            "credentials": {"api_key": f"sk-fake-fk_401_{uuid.uuid4().hex[:8].upper()}"},
            "default_model": "gpt-4o"}
    cid = api.post("/connections", body).data["id"]
    # When the dispatcher runs, then the worker handles a message for it
    with count_aws_calls() as dispatch:
        events.run_daily()
    message = json.dumps({"run_date": "2099-01-01", "connection_ids": [cid]})
    with count_aws_calls() as worker:
        events.test_batch([("m-1", message)])
    # Then each function called only what its policy allows
    env = api_env()
    assert observed(dispatch, env) - allowed("run_daily") == set()
    assert observed(worker, env) - allowed("test_worker") == set()
    # (the history entry and the audit event went out in batches)
    assert {("table/tests", "dynamodb:BatchWriteItem"),
            ("table/audit", "dynamodb:BatchWriteItem")} <= observed(worker, env)


def api_env() -> dict[str, str]:
    import os

    return dict(os.environ)


def api_roots() -> tuple[str, ...]:
    from infra import lambdas

    return next(f.roots for f in lambdas.load("dev") if f.is_api)
