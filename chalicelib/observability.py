"""Logger, Metrics and Tracer, created once; and the redaction layer every log record passes.

Redaction works on the final serialized record, so it also covers exception text and tracebacks.
Two nets: values the process has seen as secrets (registered when received or decrypted), and
shapes of well-known credentials and secret-looking JSON fields.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from chalicelib.metrics_names import NAMESPACE, SERVICE

REDACTED = "[REDACTED]"
_MIN_SECRET_LEN = 6

_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{12,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*"),
    re.compile(
        r'(?i)("(?:api[_-]?key|x-api-key|secret[_a-z]*|session_token|password|authorization'
        r'|access_token|credentials)"\s*:\s*)"(?:[^"\\]|\\.)*"'
    ),
]


class SecretRegistry:
    """A bounded, thread-safe set of secret values to scrub from every log line."""

    def __init__(self, capacity: int = 20000) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._capacity = capacity
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str | None) -> None:
        with self._lock:
            for value in values:
                if not value or len(value) < _MIN_SECRET_LEN:
                    continue
                forms = {value, json.dumps(value)[1:-1]}
                for form in forms:
                    self._items[form] = None
                    self._items.move_to_end(form)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
            self._pattern = None

    def scrub(self, text: str) -> str:
        with self._lock:
            if self._items and self._pattern is None:
                # Longest first so a secret containing another is removed whole.
                ordered = sorted(self._items, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(s) for s in ordered))
            pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        return text


secrets = SecretRegistry()


def redact(text: str) -> str:
    """Remove registered secrets and credential-shaped strings from ``text``."""
    text = secrets.scrub(text)
    for pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + f'"{REDACTED}"', text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class RedactingFormatter(LambdaPowertoolsFormatter):
    def serialize(self, log: Any) -> str:
        return redact(super().serialize(log))


logger = Logger(service=SERVICE, logger_formatter=RedactingFormatter())
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
_tracer: Any = None


def tracer() -> Any:
    """The Powertools Tracer, created on first use: importing the X-Ray SDK costs about
    100 ms, which ``import app`` should not pay before the first traced call."""
    global _tracer
    if _tracer is None:
        from aws_lambda_powertools import Tracer

        _tracer = Tracer(service=SERVICE)
    return _tracer


def flush_metrics() -> None:
    """Emit pending EMF metrics, if any (no warning for requests that recorded none)."""
    if metrics.metric_set:
        metrics.flush_metrics()
