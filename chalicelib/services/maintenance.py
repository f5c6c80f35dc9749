"""Operator tasks that are not request paths (a full table walk is fine here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.crypto import Binding, EnvelopeCipher, Sealed
from chalicelib.data.connections_repo import ConnectionRepository
from chalicelib.data.models import ConnectionModel, SealedAttribute
from chalicelib.observability import logger


def rewrap_all(repo: ConnectionRepository, cipher: EnvelopeCipher, new_key_id: str,
               *, log: Callable[[str], Any] = print) -> dict[str, int]:
    """Move every sealed data key under ``new_key_id`` with KMS ReEncrypt (the plaintext
    never leaves KMS). Each write is conditional on the wrapped key it replaced, so a
    concurrent credential update is never overwritten: that record is re-read and retried.
    Deploy the new key id first, so new writes already use it; reads pin the stored key id,
    so old and new records both open during the move."""
    counts = {"rewrapped": 0, "already": 0, "skipped": 0, "retried": 0}
    for row in repo.scan_ids():
        for _attempt in range(5):
            item = repo.get(row)
            if item is None or item.sealed is None:
                counts["skipped"] += 1
                break
            s = item.sealed
            if s.kid == new_key_id or s.kid.endswith(new_key_id.split("/")[-1]):
                counts["already"] += 1
                break
            sealed = Sealed(int(s.v), s.kid, bytes(s.wdk), bytes(s.nonce), bytes(s.ct))
            binding = Binding(item.owner, item.id, item.provider, item.base_url)
            moved = cipher.rewrap(sealed, binding, new_key_id)
            try:
                item.update(
                    actions=[ConnectionModel.sealed.set(SealedAttribute(
                        v=moved.v, kid=moved.kid, wdk=moved.wdk, nonce=moved.nonce,
                        ct=moved.ct))],
                    condition=ConnectionModel.sealed.wdk == bytes(s.wdk),  # type: ignore[arg-type]
                )
                counts["rewrapped"] += 1
                break
            except Exception as exc:
                if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
                    raise
                counts["retried"] += 1
        else:
            logger.warning("rewrap gave up on a busy record", extra={"connection_id": row})
    log(f"rewrap: {counts}")
    return counts
