"""Adjustments to the in-process moto server (``ThreadedMotoServer`` runs in the test process,
so its classes can be patched) that make it behave like DynamoDB where the tests need it.

(The emulator itself, ``devtools/emulator.py``, serialises DynamoDB requests, which gives moto
the atomicity of DynamoDB's conditional writes and transactions.)

* ``transaction_conflicts``: DynamoDB cancels a transaction that touches an item another
  transaction is writing (reason ``TransactionConflict``); moto never does. This makes the next
  ``n`` transactions fail that way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

_lock = threading.RLock()


@contextmanager
def transaction_conflicts(n: int) -> Iterator[list[int]]:
    """Cancel the next ``n`` TransactWriteItems with ``TransactionConflict`` on their first
    item; yields a one-element list counting the cancellations made."""
    from moto.dynamodb.exceptions import TransactionCanceledException
    from moto.dynamodb.models import DynamoDBBackend

    original = DynamoDBBackend.transact_write_items
    made = [0]

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with _lock:
            if made[0] < n:
                made[0] += 1
                reasons: list[Any] = [("TransactionConflict",
                                       "Transaction is ongoing for the item", None)]
                reasons += [(None, None, None)] * (len(transact_items) - 1)
                raise TransactionCanceledException(reasons)
        return original(self, transact_items)

    with mock.patch.object(DynamoDBBackend, "transact_write_items", transact_write_items):
        yield made
