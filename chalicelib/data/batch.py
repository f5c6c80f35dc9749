"""BatchWriteItem with every item accounted for.

PynamoDB resends a batch's ``UnprocessedItems`` at once, a few times, then raises with the rest
in ``failed_operations``. Here the rest is sent again with exponential backoff and full jitter
(what AWS advises for unprocessed items: they mean the table is throttled) until it is
written; only when every attempt failed does the error reach the caller, whose message is then
redelivered.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pynamodb.exceptions import PutError
from pynamodb.models import BatchWrite, Model

T = TypeVar("T", bound=Model)

BATCH_SIZE = 25  # DynamoDB's limit per BatchWriteItem
ATTEMPTS = 8


def put_all(open_batch: Callable[[], BatchWrite[T]], from_raw: Callable[[Any], T],
            items: Sequence[T], *, sleep: Callable[[float], None] = time.sleep) -> int:
    """Put ``items`` in batches of 25; return how many rounds resent unprocessed items."""
    resent = 0
    for start in range(0, len(items), BATCH_SIZE):
        pending = list(items[start:start + BATCH_SIZE])
        for attempt in range(ATTEMPTS):
            batch = open_batch()
            for item in pending:
                batch.save(item)
            try:
                batch.commit()
                break
            except PutError:
                left = batch.failed_operations or []
                if not left or attempt == ATTEMPTS - 1:
                    raise
                pending = [from_raw(op["PutRequest"]["Item"]) for op in left]
                resent += 1
                sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))
    return resent
