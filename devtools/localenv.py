"""The local stage's environment: one definition used by `make run`, `make token`, the
local tools and the end-to-end tests. Only loopback addresses appear here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from chalicelib.settings import TABLE_ENV

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".local"
JWT_DIR = STATE_DIR / "jwt"
# A stack's own files (run.json, alerts.jsonl): `make run` uses .local; the test suite's stacks
# use a folder of their own (LLMC_STATE_DIR), so they never touch a running `make run`'s.
STATE_DIR_ENV = "LLMC_STATE_DIR"


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or STATE_DIR)
PREFIX = "llmc-local"
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
ISSUER = "https://auth.local.llm-connections.invalid"
AUDIENCE = "llm-connections-local"
KMS_ALIAS = f"alias/{PREFIX}-secrets"
TOPIC_NAME = f"{PREFIX}-alerts"
WORK_QUEUE = f"{PREFIX}-work"
DEAD_LETTER_QUEUE = f"{PREFIX}-work-dlq"
INBOX_QUEUE = f"{PREFIX}-alerts-inbox"
MAX_RECEIVES = 3


def table_names() -> dict[str, str]:
    return {env: f"{PREFIX}-{key}" for key, env in TABLE_ENV.items()}


SERVICE_ENDPOINT_PREFIX = "AWS_ENDPOINT_URL_"


def service_endpoints(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's per-service endpoints (``AWS_ENDPOINT_URL_DYNAMODB``...), which botocore
    prefers to ``AWS_ENDPOINT_URL``: how one service moves elsewhere (DynamoDB Local) while
    the others stay on moto."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith(SERVICE_ENDPOINT_PREFIX) and v}


def caller_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment for a local child process: no AWS credentials, profile or
    region of the caller's (the local stage sets its own), but its per-service endpoints."""
    environ = os.environ if environ is None else environ
    return {
        k: v
        for k, v in environ.items()
        if not k.startswith("AWS_") or k.startswith(SERVICE_ENDPOINT_PREFIX)
    }


def environment(aws_port: int = 4566, jwt_dir: Path = JWT_DIR,
                fake_port: int | None = None) -> dict[str, str]:
    """Variables for every local process. AWS is reached through AWS_ENDPOINT_URL, or the
    caller's AWS_ENDPOINT_URL_<SERVICE> for a service it points elsewhere. With
    ``fake_port``, connections may reach loopback on that port only (`make run`: the fake
    providers, not the emulator or the API); without, any loopback port (the test suite,
    whose fake and hostile providers take free ports)."""
    endpoint = f"http://127.0.0.1:{aws_port}"
    endpoints = service_endpoints()
    sqs = endpoints.get("AWS_ENDPOINT_URL_SQS", endpoint).rstrip("/")
    return {
        "STAGE": "local",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        # moto accepts any credentials; these are fixed dummies so no real profile is used.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        **endpoints,
        **table_names(),
        "KMS_KEY_ID": KMS_ALIAS,
        "ALERTS_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:{TOPIC_NAME}",
        "WORK_QUEUE_URL": f"{sqs}/{ACCOUNT}/{WORK_QUEUE}",
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "JWKS_URL": (jwt_dir / "jwks.json").resolve().as_uri(),
        # The console's local sign-in mints tokens with the same key as `make token`.
        "LOCAL_SIGNIN_KEY_FILE": str((jwt_dir / "private.pem").resolve()),
        "OUTBOUND_ALLOW_HOSTS": f"127.0.0.1:{fake_port}" if fake_port else "127.0.0.1",
        "OUTBOUND_ALLOW_HTTP": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "LLMConnections",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
        "NO_PROXY": "127.0.0.1,localhost",
    }
