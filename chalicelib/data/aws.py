"""Lazily created, reused boto3 clients. Nothing is created at import time.

Endpoints come only from the standard ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>``
variables (botocore reads them), so the same code talks to moto locally and to AWS in the cloud.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()


_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    """Return the shared client for ``service`` (created on first use, then reused; one lock
    so that threads starting together do not each build their own)."""
    found = _clients.get(service)
    if found is not None:
        return found
    with _lock:
        if service not in _clients:
            _clients[service] = _make(service)
        return _clients[service]


def _make(service: str) -> Any:
    import boto3
    from botocore.config import Config

    from chalicelib.settings import get_settings

    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=10,
        max_pool_connections=64,
    )
    return boto3.session.Session().client(
        service, region_name=get_settings().region, config=config
    )


def reset_clients() -> None:
    """Forget cached clients (tests switch endpoints between runs)."""
    with _lock:
        _clients.clear()
