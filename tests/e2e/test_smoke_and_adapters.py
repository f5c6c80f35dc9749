"""`make smoke` against the running stack, and every adapter's test through the stack."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from devtools import localenv
from devtools.token import make_token
from tests.e2e.conftest import dump
from tests.support.fakes import fake_credentials

pytestmark = pytest.mark.e2e



def test_make_smoke_passes_against_the_local_stack(stack):
    env = localenv.caller_environment()
    env["TOKEN"] = make_token(f"smoke-{uuid.uuid4().hex[:6]}")
    out = subprocess.run(
        [sys.executable, "-m", "devtools.smoke", "--url", stack.api,
         "--provider-base-url", stack.fake],
        cwd=localenv.ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def _body(adapter: str, fake: str, directive: str) -> dict:
    tag = uuid.uuid4().hex[:8]
    key = f"AKIAFAKEfk_{directive}_{tag}" if adapter == "bedrock" else \
        f"fk_{directive}_{tag}_e2e_key"
    if adapter == "bedrock":
        return {"provider": "bedrock", "base_url": f"{fake}/bedrock",
                "credentials": fake_credentials("bedrock", key),
                "default_model": "anthropic.claude-3-5-sonnet-20240620-v1:0"}
    return {
        "openai": {"provider": "custom", "base_url": f"{fake}/openai/v1",
                   "default_model": "gpt-4o"},
        "anthropic": {"provider": "anthropic", "base_url": f"{fake}/anthropic",
                      "default_model": "claude-sonnet-4-5"},
        "azure_openai": {"provider": "azure_openai", "base_url": f"{fake}/azure",
                         "default_model": "gpt-4o-prod"},
        "google": {"provider": "google", "base_url": f"{fake}/google/v1beta",
                   "default_model": "gemini-2.5-flash"},
        "cohere": {"provider": "cohere", "base_url": f"{fake}/cohere",
                   "default_model": "command-a-03-2025"},
    }[adapter] | {"credentials": fake_credentials(adapter, key)}


ADAPTERS = ["openai", "anthropic", "azure_openai", "bedrock", "google", "cohere"]
# directive -> (status, error code) the same for every adapter
CASES = {"ok": ("active", None), "401": ("error", "invalid_api_key"),
         "503": ("error", "provider_unavailable"), "badjson": ("error", "bad_response")}


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_every_adapter_through_the_stack(stack, adapter):
    with stack.client(f"adapters-{uuid.uuid4().hex[:6]}") as api:
        for directive, (status, code) in CASES.items():
            body = {"name": f"{adapter} {directive}", "settings": {"max_retries": 0},
                    **_body(adapter, stack.fake, directive)}
            created = api.post("/connections", json=body)
            assert created.status_code == 201, dump(created)
            result = api.post(f"/connections/{created.json()['id']}/test").json()
            got = (result["status"], (result["error"] or {}).get("code"))
            assert got == (status, code), (adapter, directive, result)
            if code:
                assert result["error"]["remediation"]
