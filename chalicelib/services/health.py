"""Health: does DynamoDB answer, does KMS answer. Cached briefly so an unauthenticated
endpoint cannot be used to run up AWS calls."""

from __future__ import annotations

import threading
import time
from typing import Any

from chalicelib.data import aws
from chalicelib.observability import logger
from chalicelib.settings import Settings

_CACHE_SECONDS = 10.0
_lock = threading.Lock()
_cached: tuple[float, dict[str, Any]] | None = None


def _probe(name: str, call: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        call()
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000)}
    except Exception as exc:  # noqa: BLE001 - any failure means "does not answer"
        logger.warning("health probe failed", extra={"probe": name, "error": type(exc).__name__})
        return {"ok": False, "latency_ms": round((time.perf_counter() - started) * 1000)}


def check(settings: Settings) -> dict[str, Any]:
    global _cached
    with _lock:
        if _cached and time.monotonic() - _cached[0] < _CACHE_SECONDS:
            return _cached[1]
    checks = {
        "dynamodb": _probe("dynamodb", lambda: aws.client("dynamodb").describe_table(
            TableName=settings.tables.connections)),
        "kms": _probe("kms", lambda: aws.client("kms").describe_key(KeyId=settings.kms_key_id)),
    }
    result = {
        "status": "ok" if all(c["ok"] for c in checks.values()) else "degraded",
        "version": settings.version,
        "stage": settings.stage,
        "checks": checks,
    }
    with _lock:
        _cached = (time.monotonic(), result)
    return result
