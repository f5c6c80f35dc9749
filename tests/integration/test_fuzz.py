"""Schemathesis over the served ``GET /openapi.json``: every operation, as a user and as an
admin, valid and invalid inputs, against the in-process app (the ``LocalGateway`` that
``chalice local`` runs) on moto, with the fake provider for tests and invokes.

Checks: no 5xx, responses match their documented schema, status code and content type.
Bounded here (``FUZZ_EXAMPLES`` per operation, role and mode, fixed ``FUZZ_SEED``); `make fuzz`
runs it longer. Failures are collected across all operations and reported together, with the
figures (operations, examples, failures) printed at the end.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.builders import provider_body
from tests.support.fakes import fake_credentials, fake_key
from tests.support.wsgi import wsgi_app

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("FUZZ_SEED", "20261202"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]


def _known_ids(api: Any, fake_provider: Any) -> dict[str, str]:
    """Real ids, so that a share of the cases reaches past the 404 of a random id."""
    from fakeprovider import control

    body = {"name": "fuzz target", "provider": "custom",
            "base_url": control.base_url_for("openai", fake_provider.base_url),
            "credentials": fake_credentials("openai", fake_key("openai", None)),
            "default_model": "gpt-4o"}
    created = api.post("/connections", body)
    assert created.status_code == 201, created.data
    cid = created.data["id"]
    assert api.put(f"/connections/{cid}/dependents/p1",
                   {"kind": "prompt", "display_name": "P1"}).status_code == 201
    sub = api.post("/notifications/subscriptions", {"protocol": "email",
                                                    "endpoint": "fuzz@example.com"})
    assert sub.status_code == 201, sub.data
    # The fuzzer's own provider: the seeded catalogue is shared by the whole session and
    # must not be rewritten by an admin's generated PUT, PATCH or DELETE.
    pid = f"fuzz-{uuid.uuid4().hex[:8]}"
    admin = api.as_user(api.user, admin=True)
    assert admin.post("/providers", provider_body(pid)).status_code == 201
    return {"connection_id": cid, "provider_id": pid, "dependent_id": "p1",
            "subscription_id": sub.data["id"]}


def _provider_ids(api: Any) -> set[str]:
    ids: set[str] = set()
    cursor = ""
    while True:
        page = api.get(f"/providers?limit=100{'&cursor=' + cursor if cursor else ''}").data
        ids |= {p["id"] for p in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            return ids


def _drive(strategy: Any, label: str, who: str, token: str, examples: Counter[str],
           statuses: Counter[int], failures: dict[tuple[str, str], str]) -> None:
    """Run ``EXAMPLES`` cases of ``strategy``; a failure is recorded, not raised, so one run
    reports every operation's failures."""

    @seed(SEED)
    @settings(max_examples=EXAMPLES, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(case=strategy)
    def run(case: Any) -> None:
        examples[label] += 1
        # Always signed in: authentication has its own tests; here every case should reach
        # the handler (schemathesis may otherwise send a generated or missing token).
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        try:
            response = case.call()
            statuses[response.status_code] += 1
            # The headers every API answer carries (issue 14, part 6), checked on each one
            sent = {k.lower(): v for k, v in response.headers.items()}
            assert sent.get("cache-control") == ["no-store"], "Cache-Control is not no-store"
            assert "server" not in sent, "a Server header names the software"
            assert "strict-transport-security" not in sent, "HSTS on the local stage"
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:
            key = (label, f"{type(exc).__name__}: {str(exc)[:400]}")
            failures.setdefault(key, f"{who}: {case.as_curl_command()[:600]}")

    try:
        run()
    except Unsatisfiable:
        pass  # nothing in this operation can be made invalid (no parameters, no body)


def test_schemathesis_over_the_served_document(api, fake_provider, capsys):
    # Given the schema as served by the app itself
    schema = schemathesis.openapi.from_wsgi("/openapi.json", wsgi_app(api._client))
    # The web console's page, files and local sign-in are not in the JSON API's document
    operations = [r.ok() for r in schema.get_all_operations()]
    # Deletes last: they remove the known resources the other operations reach
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    seeded = _provider_ids(api)
    known = _known_ids(api, fake_provider)
    roles = {"user": api.token, "admin": api.as_user(api.user, admin=True).token}
    examples: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    failures: dict[tuple[str, str], str] = {}

    try:
        for op in operations:
            params = {name: known[name] for name in known if f"{{{name}}}" in op.path}
            for role, token in roles.items():
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    strategies = [op.as_strategy(generation_mode=mode)]
                    if params:
                        strategies.append(op.as_strategy(generation_mode=mode,
                                                         path_parameters=params))
                    for strategy in strategies:
                        _drive(strategy, op.label, f"{role} {mode}", token, examples,
                               statuses, failures)
    finally:
        # Providers the fuzzer's admin created go again (the catalogue is session-wide)
        admin = api.as_user(api.user, admin=True)
        for pid in _provider_ids(api) - seeded:
            admin.delete(f"/providers/{pid}")

    # Then: the figures, and no failure
    total = sum(examples.values())
    with capsys.disabled():
        print(f"\nschemathesis: {len(operations)} operations, {total} examples "
              f"({EXAMPLES} per operation, role, mode and id source; seed {SEED}), "
              f"{len(failures)} failures; statuses {dict(sorted(statuses.items()))}")
        for (label, what), where in sorted(failures.items()):
            print(f"  FAIL {label}: {what}\n       {where}")
    from app import app
    from chalicelib.api.openapi import console_route

    # schemathesis leaves out the operation that serves the schema itself
    routes = [(m, p) for p, methods in app.routes.items() for m in methods
              if not console_route(p) and p != "/openapi.json"]
    documented = {tuple(op.label.split(" ", 1)) for op in operations}
    assert set(routes) == documented  # every route is in the document, and was run
    assert total >= len(operations) * 2
    assert not failures


def test_the_served_document_passes_openapi_spec_validator(api):
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

    doc = api.get("/openapi.json", auth=False).data
    assert doc["openapi"].startswith("3.1")
    try:
        validate(doc)
    except OpenAPIValidationError as exc:  # the first problem, readable
        pytest.fail(f"openapi-spec-validator: {exc.message} at {list(exc.path)}")


def test_every_route_documents_every_status_it_can_return(api):
    """Issue 16: each route of the app, and each status the one error mapping
    (``chalicelib.api.http``) can give it, is in the served document; and the invoke route
    also documents what a provider's failure becomes (``UPSTREAM_STATUS``)."""
    from app import app
    from chalicelib.api import http, openapi
    from chalicelib.services.invoke import UPSTREAM_STATUS

    doc = api.get("/openapi.json", auth=False).data
    mapped = {str(status) for _, status in http._STATUS}
    # 401 (no or bad token), 405 (another method), 500 (the view boundary): from http too
    every_route = mapped | {"401", "405", "500"}
    upstream = {str(s) for s in UPSTREAM_STATUS.values()}
    missing = []
    for path, methods in app.routes.items():
        if openapi.console_route(path):
            continue
        for method in methods:
            documented = set(doc["paths"][path][method.lower()]["responses"])
            wanted = every_route | (upstream if path.endswith("/invoke") else set())
            missing += [f"{method} {path}: {s}" for s in sorted(wanted - documented)]
    assert missing == []
    # And the document's other promises hold: /usage requires owner, an error carries its
    # request id, a saved test's body is optional, an unsaved test takes probe_model
    usage = doc["paths"]["/usage"]["get"]["parameters"]
    assert [p["required"] for p in usage if p["name"] == "owner"] == [True]
    assert "request_id" in doc["components"]["schemas"]["Error"]["properties"]["error"][
        "required"]
    saved = doc["paths"]["/connections/{connection_id}/test"]["post"]["requestBody"]
    assert saved["required"] is False
    unsaved = doc["paths"]["/connections/test"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "probe_model" in doc["components"]["schemas"][unsaved]["properties"]
