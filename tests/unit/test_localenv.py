"""The local environment keeps the caller's per-service AWS endpoints, and nothing else of AWS."""

from __future__ import annotations

import pytest

from devtools import localenv

pytestmark = pytest.mark.unit

CALLER = {
    "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8123",
    "AWS_PROFILE": "personal",
    "AWS_ACCESS_KEY_ID": "AKIAPERSONAL",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9999",
    "HOME": "/home/me",
}


def test_caller_environment_drops_credentials_but_keeps_service_endpoints() -> None:
    env = localenv.caller_environment(CALLER)
    assert env == {"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8123", "HOME": "/home/me"}


def test_local_stage_sends_dynamodb_elsewhere_and_the_rest_to_moto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a caller that points DynamoDB at another store
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8123")
    monkeypatch.delenv("AWS_ENDPOINT_URL_SQS", raising=False)
    # When the local stage's environment is built for moto on 4566
    env = localenv.environment(4566)
    # Then DynamoDB goes there and every other service (the queue URL too) to moto
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:8123"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["WORK_QUEUE_URL"].startswith("http://127.0.0.1:4566/")
    assert env["AWS_ACCESS_KEY_ID"] == "testing"


def test_without_service_endpoints_everything_is_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in localenv.service_endpoints():
        monkeypatch.delenv(name)
    env = localenv.environment(4566)
    assert not [k for k in env if k.startswith(localenv.SERVICE_ENDPOINT_PREFIX)]
