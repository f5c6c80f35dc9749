"""The OpenAPI 3 document, built from the app's own route table plus the docs below.

Every Chalice route must have an entry in ``ROUTE_DOCS``; a test fails when one is missing, so
the description cannot drift from the routes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_app: Any = None


def bind(app: Any) -> None:
    global _app
    _app = app


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "next_cursor"], "properties": {
        "items": {"type": "array", "items": _ref(item)},
        "next_cursor": {"type": ["string", "null"]}}}


# (method, path) -> summary, request schema name or None, response status -> schema
ROUTE_DOCS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/health"): {"summary": "Service health", "auth": False,
                         "responses": {"200": "Health"}},
    ("GET", "/openapi.json"): {"summary": "This document", "auth": False,
                               "responses": {"200": None}},
    ("GET", "/providers"): {"summary": "List providers", "paged": True,
                            "responses": {"200": _page("Provider")}},
    ("POST", "/providers"): {"summary": "Add a provider (admin)", "request": "ProviderCreate",
                             "responses": {"201": "Provider"}},
    ("GET", "/providers/{provider_id}"): {"summary": "Get a provider",
                                          "responses": {"200": "Provider"}},
    ("PUT", "/providers/{provider_id}"): {"summary": "Replace a provider (admin)",
                                          "query": ["force"],
                                          "request": "ProviderBody",
                                          "responses": {"200": "Provider"}},
    ("PATCH", "/providers/{provider_id}"): {"summary": "Change a provider (admin)",
                                            "query": ["force"],
                                            "request": "ProviderBody",
                                            "responses": {"200": "Provider"}},
    ("DELETE", "/providers/{provider_id}"): {"summary": "Remove a provider (admin)",
                                             "responses": {"204": None}},
    ("POST", "/connections"): {"summary": "Create a connection (honours Idempotency-Key)",
                               "request": "ConnectionCreate",
                               "responses": {"201": "Connection"}},
    ("GET", "/connections"): {"summary": "List your connections, sorted by name",
                              "paged": True, "query": ["owner"],
                              "responses": {"200": _page("Connection")}},
    ("GET", "/connections/export"): {"summary": "Export your connections without secrets",
                                     "responses": {"200": "ExportDocument"}},
    ("POST", "/connections/import"): {"summary": "Import connections (left untested)",
                                      "request": "ImportDocument",
                                      "responses": {"201": _page("Connection")}},
    ("GET", "/connections/{connection_id}"): {"summary": "Get a connection",
                                              "responses": {"200": "Connection"}},
    ("PATCH", "/connections/{connection_id}"): {"summary": "Change a connection (If-Match)",
                                                "request": "ConnectionPatch",
                                                "responses": {"200": "Connection"}},
    ("DELETE", "/connections/{connection_id}"): {"summary": "Delete a connection",
                                                 "query": ["force"],
                                                 "responses": {"204": None}},
    ("GET", "/connections/{connection_id}/dependents"): {
        "summary": "List what depends on a connection",
        "responses": {"200": _page("Dependent")}},
    ("PUT", "/connections/{connection_id}/dependents/{dependent_id}"): {
        "summary": "Record a dependent", "request": "DependentBody",
        "responses": {"200": "Dependent", "201": "Dependent"}},
    ("DELETE", "/connections/{connection_id}/dependents/{dependent_id}"): {
        "summary": "Forget a dependent", "responses": {"204": None}},
    ("POST", "/connections/test"): {"summary": "Test an unsaved configuration",
                                    "request": "UnsavedTest",
                                    "responses": {"200": "TestResult"}},
    ("POST", "/connections/{connection_id}/test"): {
        "summary": "Test a saved connection (within 25 s; {\"background\": true}: 202, with "
                   "its own timeout on the worker, to poll)",
        "request": "TestOptions", "optional_body": True,
        "responses": {"200": "TestResult", "202": "BackgroundTest"}},
    ("GET", "/connections/{connection_id}/tests/{test_id}"): {
        "summary": "A background test: queued, then its result (kept a day)",
        "responses": {"200": "BackgroundTestResult"}},
    ("GET", "/connections/{connection_id}/tests"): {"summary": "Test history, newest first",
                                                    "paged": True,
                                                    "responses": {"200": _page("TestRecord")}},
    ("GET", "/connections/{connection_id}/stats"): {"summary": "Tests and usage, 7 and 30 days",
                                                    "responses": {"200": "Stats"}},
    ("POST", "/connections/{connection_id}/invoke"): {"summary": "One chat call (with "
                                                                 '"stream": true, server-sent '
                                                                 "events: delta..., end|error)",
                                                      "request": "InvokeRequest",
                                                      "upstream": True,
                                                      "responses": {"200": "InvokeResult"}},
    ("GET", "/connections/{connection_id}/credentials"): {
        "summary": "The connection's credential sets (masks only), primary first",
        "responses": {"200": "CredentialSets"}},
    ("POST", "/connections/{connection_id}/credentials"): {
        "summary": "Add a credential set (at most 5; If-Match)", "request": "AddSet",
        "if_match": True, "responses": {"201": "CredentialSets"}},
    ("PUT", "/connections/{connection_id}/credentials/order"): {
        "summary": "Set the failover order of the credential sets (the first is primary)",
        "request": "SetOrder", "responses": {"200": "CredentialSets"}},
    ("POST", "/connections/{connection_id}/credentials/{name}/test"): {
        "summary": "Test one credential set (the primary's result is the connection's)",
        "request": "TestOptions", "optional_body": True, "responses": {"200": "TestResult"}},
    ("POST", "/connections/{connection_id}/credentials/{name}/promote"): {
        "summary": "Make a credential set the primary (If-Match)", "if_match": True,
        "responses": {"200": "CredentialSets"}},
    ("POST", "/connections/{connection_id}/credentials/{name}/revoke"): {
        "summary": "Revoke a credential set: its sealed secret is deleted at once (also the "
                   "last one: the connection then needs credentials; If-Match)",
        "if_match": True, "responses": {"200": "CredentialSets"}},
    ("DELETE", "/connections/{connection_id}/credentials/{name}"): {
        "summary": "Remove a credential set (never the last: 409; If-Match)",
        "responses": {"200": "CredentialSets"}},
    ("GET", "/usage"): {"summary": "Usage across users (admin)", "paged": True,
                        "required_query": ["owner"], "responses": {"200": "Usage"}},
    ("GET", "/audit"): {"summary": "Audit events, newest first", "paged": True,
                        "query": ["user", "action", "target"],
                        "responses": {"200": _page("AuditEvent")}},
    ("POST", "/notifications/subscriptions"): {"summary": "Subscribe to alerts",
                                               "request": "SubscriptionRequest",
                                               "responses": {"201": "Subscription"}},
    ("GET", "/notifications/subscriptions"): {"summary": "Your alert subscriptions",
                                              "paged": True,
                                              "responses": {"200": _page("Subscription")}},
    ("DELETE", "/notifications/subscriptions/{subscription_id}"): {
        "summary": "Unsubscribe", "responses": {"204": None}},
    ("GET", "/incidents"): {"summary": "Provider incidents, newest first (users: catalogue "
                                       "providers only; admins: custom base URLs too)",
                            "paged": True, "responses": {"200": _page("Incident")}},
}

_OBJ = {"type": "object"}
_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}


def _static_schemas() -> dict[str, Any]:
    check = {"type": "object", "properties": {"ok": {"type": ["boolean", "null"]},
                                              "latency_ms": {"type": ["integer", "null"]}}}
    problem = {"type": "object", "required": ["code", "message", "remediation"], "properties": {
        "code": _STR, "message": _STR, "remediation": {"type": "array", "items": _STR}}}
    problems = {"type": "array", "items": problem}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message", "request_id"], "properties": {
                "code": _STR, "message": _STR, "field": _STR, "request_id": _STR,
                "remediation": {"type": "array", "items": _STR}, "details": _OBJ}}}},
        "Health": {"type": "object", "properties": {"status": _STR, "version": _STR,
                                                    "stage": _STR, "checks": _OBJ}},
        "Provider": {"type": "object", "properties": {
            "id": _STR, "name": _STR, "adapter": _STR, "description": _NSTR,
            "base_url": _NSTR, "base_url_required": {"type": "boolean"},
            "credential_fields": {"type": "array", "items": _OBJ},
            "default_settings": _OBJ, "known_models": {"type": ["array", "null"]},
            "enabled": {"type": "boolean"}, "version": _INT, "created_at": _STR,
            "updated_at": _STR}},
        "Connection": {"type": "object", "properties": {
            "id": _STR, "owner": _STR, "name": _STR, "description": _NSTR, "provider": _STR,
            "base_url": _NSTR, "default_model": _NSTR, "settings": _OBJ,
            "credentials_masked": {"type": "object", "additionalProperties": _STR},
            "needs_credentials": {"type": "boolean"},
            "status": {"enum": ["untested", "active", "warning", "error"]},
            "status_message": _NSTR, "available_models": {"type": "array", "items": _STR},
            "warnings": problems, "error": {"oneOf": [problem, {"type": "null"}]},
            "last_tested_at": _NSTR, "last_test": {"type": ["object", "null"]},
            "latency_ms": {"type": ["integer", "null"]}, "dependents_count": _INT,
            "activity": {"type": ["object", "null"]},
            "created_at": _STR, "updated_at": _STR, "credentials_updated_at": _NSTR,
            "rotation_due": {"type": "boolean"},
            "credential_sets": {"type": "array", "items": {"type": "object", "properties": {
                "name": _STR, "primary": {"type": "boolean"}, "created_at": _STR,
                "rotation_due": {"type": "boolean"}, "auth_failed": {"type": "boolean"},
                "last_test": {"type": ["object", "null"]}}}},
            "version": _INT}},
        "CredentialSets": {"type": "object", "required": ["items", "order", "version"],
                           "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "name": _STR, "primary": {"type": "boolean"}, "position": _INT,
                "credentials_masked": {"type": "object", "additionalProperties": _STR},
                "created_at": _STR, "rotation_due": {"type": "boolean"},
                "last_test": {"type": ["object", "null"]}, "auth_failed": {"type": "boolean"},
                "auth_failed_at": _NSTR}}},
            "order": {"type": "array", "items": _STR}, "max_sets": _INT,
            "needs_credentials": {"type": "boolean"}, "version": _INT}},
        "AddSet": {"type": "object", "required": ["name", "credentials"],
                   "additionalProperties": False, "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"},
            "credentials": {"type": "object", "description": "the provider's secret fields",
                            "additionalProperties": _STR}}},
        "SetOrder": {"type": "object", "required": ["order"], "additionalProperties": False,
                     "properties": {"order": {"type": "array", "items": _STR}}},
        "ExportDocument": {"type": "object", "properties": {
            "format": _STR, "version": _INT, "exported_at": _STR,
            "connections": {"type": "array", "items": _OBJ}}},
        "Dependent": {"type": "object", "properties": {"id": _STR, "kind": _STR,
                                                       "display_name": _STR,
                                                       "created_at": _STR}},
        "TestResult": {"type": "object", "properties": {
            "status": {"enum": ["active", "warning", "error"]},
            "checks": {"type": "object", "properties": {
                k: check for k in ("connectivity", "authentication", "model_access",
                                   "performance")}},
            "latency_ms": {"type": ["integer", "null"]},
            "available_models": {"type": "array", "items": _STR},
            "error": {"type": ["object", "null"], "properties": {
                "code": _STR, "message": _STR,
                "remediation": {"type": "array", "items": _STR}}},
            "warnings": problems, "tested_at": _STR,
            "timeout_capped_at": {"type": "integer", "description": "present when the "
                                  "connection's timeout_seconds is longer than an API request "
                                  "may take: the test stopped at this many seconds"}}},
        "BackgroundTest": {"type": "object", "properties": {
            "test_id": _STR, "status": {"enum": ["queued"]}, "connection_id": _STR,
            "location": _STR}},
        "BackgroundTestResult": {"type": "object", "properties": {
            "test_id": _STR, "status": {"enum": ["queued", "active", "warning", "error"]},
            "queued_or_tested_at": _STR,
            "result": {"oneOf": [{"type": "null"}, _ref("TestResult")]}}},
        "TestOptions": {"type": "object", "additionalProperties": False,
                        "properties": {"probe_model": {"type": "boolean"},
                                       "background": {"type": "boolean", "description":
                                                      "run on the queue worker with the "
                                                      "connection's own timeout; 202"},
                                       "changes": {"type": "object",
                                                   "description": "a PATCH body to test "
                                                   "before saving it (not recorded)"}}},
        "TestRecord": {"type": "object", "properties": {
            "tested_at": _STR, "trigger": _STR, "status": _STR,
            "latency_ms": {"type": ["integer", "null"]}, "error_code": _NSTR,
            "result": _OBJ}},
        "Stats": _OBJ,
        "Usage": _OBJ,
        "InvokeRequest": {"type": "object", "required": ["messages"], "properties": {
            "messages": {"type": "array", "items": {"type": "object", "properties": {
                "role": {"enum": ["system", "user", "assistant"]}, "content": _STR}}},
            "model": _STR, "max_tokens": _INT, "temperature": {"type": "number"}}},
        "InvokeResult": {"type": "object", "properties": {
            "output_text": _STR, "model": _STR, "finish_reason": _STR,
            "usage": {"type": "object", "properties": {"input_tokens": _INT,
                                                       "output_tokens": _INT}},
            "latency_ms": _INT, "provider_request_id": _NSTR,
            "credential_set": {"type": "string", "description": "the set that answered"},
            "failover_from": {"type": "array", "items": _STR,
                              "description": "sets tried before it (rate limit, quota, auth)"},
            "timeout_capped_at": {"type": "integer", "description": "present when the "
                                  "connection's timeout_seconds is longer than an API request "
                                  "may take: the call's whole budget, in seconds"}}},
        "AuditEvent": {"type": "object", "properties": {
            "id": _STR, "at": _STR, "actor": _STR, "admin_action": {"type": "boolean"},
            "action": _STR, "target": _STR, "target_owner": _NSTR, "outcome": _STR,
            "request_id": _NSTR, "source_ip": _NSTR,
            "changed_fields": {"type": "array", "items": _STR}, "detail": _OBJ}},
        "SubscriptionRequest": {"type": "object", "required": ["protocol", "endpoint"],
                                "properties": {"protocol": {"enum": ["email"]},
                                               "endpoint": _STR,
                                               "scope": {"enum": ["own", "all"]},
                                               "delivery": {"enum": ["immediate", "digest"]}}},
        "Subscription": {"type": "object", "properties": {
            "id": _STR, "protocol": _STR, "endpoint": _STR, "scope": _STR,
            "delivery": {"enum": ["all", "immediate", "digest"]},
            "status": _STR, "created_at": _STR}},
        # A provider incident: many of one provider's connections failing at once with
        # provider-side codes; its connections show status "warning" with the warning code
        # "provider_incident" and "incident_id" in the warning.
        "Incident": {"type": "object", "required": ["id", "provider", "state", "started_at",
                                                    "affected", "codes"], "properties": {
            "id": _STR, "provider": _STR, "base_url": _NSTR,
            "state": {"enum": ["open", "closed"]}, "started_at": _STR, "ended_at": _NSTR,
            "affected": _INT, "codes": {"type": "array", "items": {"enum": [
                "provider_unavailable", "timeout", "network_error", "bad_response"]}},
            "run_date": _STR, "retests": _INT}},
    }


def _model_schemas() -> dict[str, Any]:
    from chalicelib.services.connections import (
        ConnectionCreate,
        ConnectionPatch,
        DependentBody,
        ImportDocument,
    )
    from chalicelib.services.providers import ProviderBody, ProviderCreate

    out: dict[str, Any] = {}
    for model in (ConnectionCreate, ConnectionPatch, DependentBody, ImportDocument,
                  ProviderBody, ProviderCreate):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            out.setdefault(name, sub)
        out[model.__name__] = schema
    # POST /connections/test: a create body, plus whether to probe the model.
    create = out["ConnectionCreate"]
    out["UnsavedTest"] = {**create, "title": "UnsavedTest", "properties": {
        **create["properties"], "probe_model": {"type": "boolean", "default": False}}}
    return out


_ERRORS = {
    "400": "Malformed or non-strict JSON (invalid_json), or an invalid field (error.field "
           "names it)",
    "401": "Missing, malformed, expired or wrongly signed bearer token",
    "403": "Not allowed for this user",
    "404": "Not found (or not yours)",
    "409": "Conflict",
    "412": "If-Match names a stale version",
    "413": "Body over 64 KiB",
    "415": "Body is not application/json",
    "405": "This method is not allowed on this path",
    "422": "Semantically invalid",
    "429": "Rate limited (Retry-After)",
    "500": "Internal error (quote error.request_id when reporting it)",
    "503": "Temporarily unavailable",
}
# What a provider's failure becomes on a call that reaches it (chalicelib.services.invoke
# UPSTREAM_STATUS); each answer carries error.remediation.
_UPSTREAM = {
    "424": "The provider refused the connection's credentials (invalid_api_key, "
           "permission_denied)",
    "502": "The provider failed or answered badly (network_error, bad_response)",
    "504": "The provider did not answer in time (timeout)",
}


def _operation(method: str, path: str, doc: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": doc["summary"],
                          "operationId": f"{method.lower()}_{path.strip('/').replace('/', '_')}"
                          .replace("{", "").replace("}", "").replace(".", "_"),
                          "responses": {}}
    params = [{"name": p[1:-1], "in": "path", "required": True, "schema": _STR}
              for p in path.split("/") if p.startswith("{")]
    for q in doc.get("query", []):
        params.append({"name": q, "in": "query", "required": False, "schema": _STR})
    for q in doc.get("required_query", []):
        params.append({"name": q, "in": "query", "required": True, "schema": _STR})
    if doc.get("paged"):
        params += [
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                        "maximum": 100, "default": 50}},
            {"name": "cursor", "in": "query", "schema": _STR},
        ]
    if method in ("PATCH", "DELETE", "PUT") or doc.get("if_match"):
        params.append({"name": "If-Match", "in": "header", "required": False, "schema": _STR})
    if (method, path) == ("POST", "/connections"):
        params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                       "schema": _STR})
    if params:
        op["parameters"] = params
    if doc.get("request"):
        op["requestBody"] = {"required": not doc.get("optional_body"), "content": {
            "application/json": {"schema": _ref(doc["request"])}}}
    for status, schema in doc["responses"].items():
        resp: dict[str, Any] = {"description": "OK" if status < "300" else "No content"}
        if schema is not None:
            resp["content"] = {"application/json": {
                "schema": _ref(schema) if isinstance(schema, str) else schema}}
        op["responses"][status] = resp
    errors_of = {**_ERRORS, **(_UPSTREAM if doc.get("upstream") else {})}
    for status, text in sorted(errors_of.items()):
        op["responses"].setdefault(status, {"description": text, "content": {
            "application/json": {"schema": _ref("Error")}}})
    if doc.get("auth", True):
        op["security"] = [{"bearer": []}]
    else:
        op["security"] = []
    return op


def console_route(path: str) -> bool:
    """The web console's own routes (its page, static files, config and the local sign-in)
    are not part of the JSON API this document describes."""
    return path == "/" or path == "/console" or path.startswith("/console/")


def undocumented_routes() -> list[tuple[str, str]]:
    assert _app is not None, "openapi.bind(app) was not called"
    return [(m, p) for p, methods in _app.routes.items() for m in methods
            if (m, p) not in ROUTE_DOCS and not console_route(p)]


@lru_cache(maxsize=4)
def document(version: str) -> dict[str, Any]:
    assert _app is not None, "openapi.bind(app) was not called"
    paths: dict[str, Any] = {}
    for path, methods in sorted(_app.routes.items()):
        if console_route(path):
            continue
        for method in sorted(methods):
            doc = ROUTE_DOCS.get((method, path), {"summary": "(undocumented)",
                                                  "responses": {"200": None}})
            paths.setdefault(path, {})[method.lower()] = _operation(method, path, doc)
    return {
        "openapi": "3.1.0",
        "info": {"title": "LLM Connections API", "version": version,
                 "description": "Store, test and use credentials for LLM providers."},
        "paths": paths,
        "components": {
            "schemas": {**_static_schemas(), **_model_schemas()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }
