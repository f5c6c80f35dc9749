"""Shared fixtures. AWS is moto's real HTTP server on a free loopback port, reached through
AWS_ENDPOINT_URL exactly as in `make run`; nothing inside the app is mocked."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.app import CaseInsensitiveMapping

from devtools import localenv, localstack
from devtools.token import ensure_keys, make_token

CANARY = "sk-canary-" + "Zq7xW3pL9mN2bV8cR4tY6uI1oP5aS0dF"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A moto_only test patches the in-process moto server; with DynamoDB pointed elsewhere
    # (make test-ddblocal) the patch never reaches the store, so the test cannot run there.
    other = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    if not other:
        return
    skip = pytest.mark.skip(reason=f"moto_only: DynamoDB is {other}, not the patched moto")
    for item in items:
        if item.get_closest_marker("moto_only"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def jwt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("jwt")
    ensure_keys(d)
    return d


@pytest.fixture(scope="session")
def moto_server() -> Iterator[int]:
    port = localstack.free_port()
    server = localstack.start_moto(port)
    yield port
    server.stop()


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[Any]:
    from fakeprovider.server import start_server

    server = start_server(host="127.0.0.1", port=0)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack_env(moto_server: int, jwt_dir: Path) -> dict[str, str]:
    env = localenv.environment(moto_server, jwt_dir=jwt_dir)
    localstack.bootstrap(env, log=lambda _m: None)
    return env


@pytest.fixture()
def env(stack_env: dict[str, str]) -> Iterator[dict[str, str]]:
    saved = dict(os.environ)
    localstack.apply_env(stack_env)
    yield stack_env
    os.environ.clear()
    os.environ.update(saved)


class Api:
    """chalice.test.Client with tokens: ``api.as_user("alice").post(...)``."""

    def __init__(self, client: Any, jwt_dir: Path, user: str, admin: bool = False) -> None:
        self._client = client
        self._jwt_dir = jwt_dir
        self.user = user
        self.admin = admin
        self.token = make_token(user, admin=admin, jwt_dir=jwt_dir)

    def as_user(self, user: str, *, admin: bool = False) -> Api:
        return Api(self._client, self._jwt_dir, user, admin)

    def request(self, method: str, path: str, body: Any = None, *,
                headers: dict[str, str] | None = None, raw: bytes | None = None,
                auth: bool = True) -> Any:
        h = {"content-type": "application/json"} if (body is not None or raw) else {}
        if auth:
            h["authorization"] = f"Bearer {self.token}"
        h.update(headers or {})
        payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
        resp = self._client.http.request(method, path, headers=h, body=payload)
        resp.data = json.loads(resp.body) if resp.body else None
        resp.headers = CaseInsensitiveMapping(resp.headers)
        return resp

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PATCH", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)


@pytest.fixture()
def api(env: dict[str, str], jwt_dir: Path) -> Iterator[Api]:
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="local") as client:
        yield Api(client, jwt_dir, f"user-{uuid.uuid4().hex[:10]}")


@pytest.fixture()
def app_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """What the Powertools logger writes (through its redacting formatter), at INFO: call the
    yielded function to read it."""
    from tests.support.capture import app_logs_to_stdout

    with app_logs_to_stdout():
        yield lambda: capsys.readouterr().out


def openai_body(name: str = "My OpenAI", key: str = CANARY, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "provider": "openai",
                            "credentials": {"api_key": key}, "default_model": "gpt-4o"}
    body.update(extra)
    return body
