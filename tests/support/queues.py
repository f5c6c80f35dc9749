"""Reading what reached a test's SQS queue."""

from __future__ import annotations

from typing import Any


def drain(sqs: Any, url: str) -> list[tuple[str, str]]:
    """Every message now in the queue as ``(message id, body)``, deleted as it is read."""
    out: list[tuple[str, str]] = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append((m["MessageId"], m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
