"""Count the AWS API calls a block of code makes, by (service, operation).

Every boto3/botocore client (PynamoDB's included) funnels through
``BaseClient._make_api_call``, so wrapping it sees each call the app makes, before retries.
Used by the per-request cost tests and by the benchmark.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from botocore.client import BaseClient


class AwsCalls(Counter[tuple[str, str]]):
    """A Counter of ``(service, operation)``; ``params`` keeps each call's request parameters
    in order (requests only: responses, which can carry plaintext data keys, are not kept)."""

    def __init__(self) -> None:
        super().__init__()
        self.params: list[tuple[str, str, dict[str, Any]]] = []

    def of(self, service: str) -> Counter[str]:
        """Operations of one service, e.g. ``calls.of("kms")``."""
        return Counter({op: n for (svc, op), n in self.items() if svc == service})


@contextmanager
def count_aws_calls() -> Iterator[AwsCalls]:
    """``with count_aws_calls() as calls: ...`` then ``calls[("dynamodb", "Query")]``."""
    calls = AwsCalls()
    lock = threading.Lock()
    original = BaseClient._make_api_call

    def counting(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        service = self.meta.service_model.service_name
        with lock:
            calls[(service, operation_name)] += 1
            calls.params.append((service, operation_name, api_params))
        return original(self, operation_name, api_params)

    with mock.patch.object(BaseClient, "_make_api_call", counting):
        yield calls
