"""Shared builders for the provider unit tests: targets, a fake clock, mock HTTP routes."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from chalicelib.providers.base import Target

KEY = "sk-test-Zq8Xv3Lm9Pw2Rt7Ks4Nb6Yd1"

BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "azure_openai": "https://contoso.openai.azure.com",
    "google": "https://generativelanguage.googleapis.com/v1beta",
    "cohere": "https://api.cohere.com",
    "bedrock": "",
}

BEDROCK_CREDENTIALS = {
    "access_key_id": "AKIAUNITTEST00000001",
    "secret_access_key": "unit/test/secret/Zq8Xv3Lm9Pw2Rt7Ks4Nb6Yd1",
    "region": "us-east-1",
}


def make_target(adapter: str = "openai", **overrides: Any) -> Target:
    values: dict[str, Any] = {
        "adapter": adapter,
        "base_url": BASE_URLS[adapter],
        "credentials": dict(BEDROCK_CREDENTIALS) if adapter == "bedrock" else {"api_key": KEY},
        "default_model": None,
    }
    values.update(overrides)
    return Target(**values)


class FakeClock:
    """Monotonic time that only moves when slept or advanced; jitter at its maximum."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def random(self) -> float:
        return 1.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


Reply = httpx.Response | Callable[[httpx.Request], Any]


class Routes:
    """A MockTransport handler: (method, path regex) -> reply, or a list of replies in turn.

    Records every request; an unmatched request answers 599 so a test sees it.
    """

    def __init__(self, routes: dict[tuple[str, str], Reply | list[Reply]]) -> None:
        self.routes = {(m, re.compile(p)): r for (m, p), r in routes.items()}
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for (method, pattern), reply in self.routes.items():
            if method == request.method and pattern.fullmatch(request.url.path):
                if isinstance(reply, list):
                    reply = reply.pop(0) if len(reply) > 1 else reply[0]
                if callable(reply) and not isinstance(reply, httpx.Response):
                    reply = reply(request)
                    if asyncio.iscoroutine(reply):
                        reply = await reply
                return reply
        return httpx.Response(599, json={"error": f"no route for {request.method} {request.url}"})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self), trust_env=False)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def reply(status: int = 200, body: Any = None, **headers: str) -> httpx.Response:
    """A JSON response; header names use underscores for dashes."""
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    return httpx.Response(status, json=body if body is not None else {}, headers=hdrs)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)
