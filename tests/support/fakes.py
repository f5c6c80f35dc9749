"""Connections pointed at the fake provider server: keys and credentials per adapter."""

from __future__ import annotations

import uuid
from typing import Any

from fakeprovider import control

KEY_PREFIX = {"openai": "sk-fake-", "anthropic": "sk-ant-fake-", "azure_openai": "azfake",
              "bedrock": control.FAKE_BEDROCK_ACCESS_KEY_PREFIX, "google": "AIzaFake",
              "cohere": "co-fake-"}


def tag() -> str:
    # Upper case: the fake reads ``fk_([a-z0-9.]+)``, so a tag never extends a directive,
    # and the key's last four characters (the fake's fingerprint) are unique to the test.
    return uuid.uuid4().hex[:12].upper()


def fake_key(adapter: str, directive: str | None = None) -> str:
    """A key unique to the test carrying ``directive`` for the fake; ``_`` is allowed by
    every credential pattern, Bedrock's included."""
    body = f"fk_{directive}_" if directive else ""
    return f"{KEY_PREFIX[adapter]}{body}{tag()}"


def fake_credentials(adapter: str, key: str) -> dict[str, Any]:
    """The credentials object of a connection of ``adapter`` whose key is ``key``."""
    if adapter == "bedrock":
        return {"access_key_id": key, "secret_access_key": control.FAKE_BEDROCK_SECRET,
                "region": "us-east-1"}
    return {"api_key": key}
