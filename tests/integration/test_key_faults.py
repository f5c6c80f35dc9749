"""Issue 17 (7): KMS refusing our own key is an operator's fault, never the user's.

Written against the code before the change: there ``AccessDenied`` on Decrypt told the user to
"enter the secret again" (409) and the daily run alerted every owner; a disabled key was a 500.
Moto does not enforce key states or IAM, so the refusals are answered at the wire
(``before-send``), the way KMS sends them, and the app's own botocore parses them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from tests.integration.test_daily_faults import (  # noqa: F401
    _Raw,
    history,
    inbox,
    message,
    sqs,
    test_batch,
)
from tests.integration.test_invoke import conn_body, create, invoke, last_seq, sent
from tests.support.builders import raw_connection, set_raw
from tests.support.capture import log_records
from tests.support.fakes import fake_key

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def kms_refuses(code: str, operations: tuple[str, ...] = ("Decrypt",),
                key_id: str | None = None) -> Iterator[list[str]]:
    """KMS answers ``code`` to ``operations`` (naming ``key_id``, if given) while inside;
    yields the operations refused."""
    from chalicelib.data import aws

    refused: list[str] = []

    def refuse(request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        op = event_name.rsplit(".", 1)[-1]
        if op not in operations or (
                key_id is not None and json.loads(request.body or b"{}").get("KeyId") != key_id):
            return None
        refused.append(op)
        body = json.dumps({"__type": code, "message": f"{code} (injected)"}).encode()
        return AWSResponse(request.url, 400, {"x-amzn-ErrorType": code,
                                              "Content-Type": "application/x-amz-json-1.1"},
                           _Raw(body))

    client = aws.client("kms")
    client.meta.events.register("before-send.kms.*", refuse)
    try:
        yield refused
    finally:
        client.meta.events.unregister("before-send.kms.*", refuse)


@pytest.mark.parametrize("code", ["DisabledException", "KMSInvalidStateException",
                                  "AccessDeniedException"])
def test_our_key_refused_is_a_503_for_test_and_invoke_and_the_connection_is_untouched(
        api, fake_provider, app_logs, code):
    cid, key = create(api, fake_provider)
    before = raw_connection(cid)
    since = last_seq(fake_provider)
    with kms_refuses(code) as refused:
        tested = api.post(f"/connections/{cid}/test", {})
        invoked = invoke(api, cid)
    assert refused, "the fault was not injected"
    for resp in (tested, invoked):
        assert resp.status_code == 503, resp.data
        err = resp.data["error"]
        assert err["code"] == "key_service_unavailable"
        # Nothing tells the user to re-enter a secret that is fine
        assert "enter" not in err["message"] and "again later" in err["message"]
    after = raw_connection(cid)
    assert after["status"] == before["status"] and after.get("needs_credentials") == \
        before.get("needs_credentials")
    assert after["sealed"] == before["sealed"]
    assert sent(fake_provider, key, since) == []
    # The operators' alarm counts this log line (a metric filter on its message)
    from chalicelib.metrics_names import KEY_SERVICE_FAULT_MESSAGE

    lines = log_records(app_logs(), KEY_SERVICE_FAULT_MESSAGE)
    assert lines and lines[0]["kms_error"] == code
    # And once the key is usable again, everything works without the user doing anything
    assert invoke(api, cid).status_code == 200


def test_access_denied_for_a_key_id_that_is_not_ours_is_still_a_tampered_blob(api, fake_provider):
    cid, _ = create(api, fake_provider)
    # A table writer points the blob at a key in another account
    foreign = "arn:aws:kms:us-east-1:999999999999:key/1234abcd-0000-0000-0000-0000"
    set_raw(cid, "SET sealed.kid = :k", {":k": {"S": foreign}})
    with kms_refuses("AccessDeniedException", key_id=foreign) as refused:
        resp = invoke(api, cid)
    assert refused
    assert resp.status_code == 409 and resp.data["error"]["code"] == "credentials_unreadable"


def test_sealing_with_a_refused_key_is_a_503_and_writes_nothing(api, fake_provider):
    body = conn_body(fake_provider.base_url, "openai", fake_key("openai"))
    with kms_refuses("AccessDeniedException", ("GenerateDataKey",)) as refused:
        resp = api.post("/connections", body)
    assert refused
    assert resp.status_code == 503 and resp.data["error"]["code"] == "key_service_unavailable"
    # Nothing half-written: the name is still free
    assert api.post("/connections", body).status_code == 201


@pytest.mark.parametrize("code", ["AccessDeniedException", "DisabledException"])
def test_the_daily_run_retries_instead_of_alerting_owners(api, fake_provider, inbox,  # noqa: F811
                                                          code):
    read = inbox(api.user)
    cid, _ = create(api, fake_provider)
    record = message([cid])
    with kms_refuses(code):
        out = test_batch([record])
    # The message goes back to the queue (then the dead-letter queue and its alarm)...
    assert out == {"batchItemFailures": [{"itemIdentifier": record[0]}]}
    # ...with no test recorded and no owner told to re-enter a secret
    assert history(cid) == []
    assert read() == []
    assert raw_connection(cid)["status"] == {"S": "untested"}
    # Redelivered once the key is back: tested as any other day
    assert test_batch([record]) == {"batchItemFailures": []}
    assert raw_connection(cid)["status"] == {"S": "active"}
