"""What the app prints: Powertools log lines and EMF metric documents, read from stdout.

The Powertools logger's handler keeps the stdout of import time, and importing ``app`` lowers
its level to ERROR (see the xfail in test_secrets); ``app_logs_to_stdout`` points it at the
stdout pytest captures and sets INFO for the duration, leaving the formatter untouched.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class CurrentStdout:
    """Writes to whatever ``sys.stdout`` is at the time (pytest swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@contextmanager
def app_logs_to_stdout(level: int = logging.INFO) -> Iterator[None]:
    from chalicelib.observability import logger

    handler: Any = logger.registered_handler
    previous_stream, previous_level = handler.stream, logger._logger.level
    handler.stream = CurrentStdout()
    logger._logger.setLevel(level)
    try:
        yield
    finally:
        handler.stream = previous_stream
        logger._logger.setLevel(previous_level)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` that is a JSON object."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                out.append(doc)
    return out


def emf_metrics(text: str) -> dict[str, float]:
    """Metric name -> sum of its values over every EMF document printed in ``text``."""
    totals: dict[str, float] = {}
    for doc in json_lines(text):
        for directive in doc.get("_aws", {}).get("CloudWatchMetrics", []):
            for metric in directive.get("Metrics", []):
                name = metric["Name"]
                value = doc[name]
                values = value if isinstance(value, list) else [value]
                totals[name] = totals.get(name, 0) + sum(values)
    return totals


def log_records(text: str, message: str) -> list[dict[str, Any]]:
    """The structured log lines whose message is ``message``."""
    return [d for d in json_lines(text) if d.get("message") == message]
