"""Builders shared by the connection and provider tests: request bodies, callers for
service-level calls, and raw access to the tables (to tamper with items as an attacker with
table access would, bypassing the app)."""

from __future__ import annotations

import os
import uuid
from typing import Any

# An AWS-shaped secret access key that doubles as a canary: tests assert it never shows.
BEDROCK_SECRET = "Zq7xW3pL9mN2bV8cR4tY6uI1oP5aS0dF"
KEY_PATTERN = r"^[\x21-\x7e]{8,512}$"


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def bedrock_body(name: str = "My Bedrock", **creds: Any) -> dict[str, Any]:
    credentials: dict[str, Any] = {
        "access_key_id": "AKIAEXAMPLEKEY123456",
        "secret_access_key": BEDROCK_SECRET,
        "session_token": "SessionToken0123456789abcdef",
        "region": "us-east-1",
    }
    credentials.update(creds)
    return {"name": name, "provider": "bedrock", "credentials": credentials,
            "default_model": "amazon.titan-text-express-v1"}


def provider_body(pid: str, **over: Any) -> dict[str, Any]:
    """An OpenAI-compatible provider an admin might add without a code change."""
    body: dict[str, Any] = {
        "id": pid, "name": f"Acme {pid}", "adapter": "openai",
        "base_url": "https://api.acme.example/v1",
        "credential_fields": [{"name": "api_key", "label": "API key", "secret": True,
                               "required": True, "pattern": KEY_PATTERN}],
        "known_models": ["acme-1"],
    }
    body.update(over)
    return body


def caller(user: str, *, admin: bool = False) -> Any:
    """A Caller for calling the service layer directly (threads, or non-local settings)."""
    from chalicelib.services.common import Caller
    from chalicelib.services.identity import Principal

    return Caller(Principal(user_id=user, is_admin=admin), request_id=uuid.uuid4().hex)


def ddb() -> Any:
    """A plain boto3 DynamoDB client on the endpoint the app uses: botocore resolves it from
    AWS_ENDPOINT_URL_DYNAMODB or AWS_ENDPOINT_URL, as for the app."""
    import boto3

    return boto3.client("dynamodb", region_name=os.environ["AWS_REGION"])


def table(key: str) -> str:
    from chalicelib.settings import TABLE_ENV

    return os.environ[TABLE_ENV[key]]


def raw_connection(cid: str) -> dict[str, Any]:
    item = ddb().get_item(TableName=table("connections"), Key={"id": {"S": cid}},
                          ConsistentRead=True)
    return dict(item["Item"])


def set_raw(cid: str, expression: str, values: dict[str, Any],
            names: dict[str, str] | None = None) -> None:
    """``update_item`` straight on the table: what an attacker with table access can do."""
    kwargs: dict[str, Any] = {"ExpressionAttributeValues": values}
    if names:
        kwargs["ExpressionAttributeNames"] = names
    ddb().update_item(TableName=table("connections"), Key={"id": {"S": cid}},
                      UpdateExpression=expression, **kwargs)
