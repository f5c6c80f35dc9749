"""Operator tasks that are not request paths (a full table walk is fine here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.crypto import Binding, EnvelopeCipher, Sealed
from chalicelib.data.connections_repo import ConnectionRepository
from chalicelib.data.models import ConnectionModel, SealedAttribute
from chalicelib.observability import logger

# What KMS answers for a wrapped key that does not belong to the context it is presented with.
UNREADABLE_CODES = ("InvalidCiphertextException", "IncorrectKeyException", "NotFoundException")


def rewrap_all(repo: ConnectionRepository, cipher: EnvelopeCipher, new_key_id: str,
               *, log: Callable[[str], Any] = print) -> dict[str, int]:
    """Move every sealed data key under ``new_key_id`` with KMS ReEncrypt (the plaintext
    never leaves KMS). Each write is conditional on the wrapped key it replaced, so a
    concurrent credential update is never overwritten: that record is re-read and retried.
    Deploy the new key id first, so new writes already use it; reads pin the stored key id,
    so old and new records both open during the move."""
    from botocore.exceptions import ClientError

    counts = {"rewrapped": 0, "already": 0, "skipped": 0, "retried": 0, "unreadable": 0}

    def moved(z: SealedAttribute | None, binding: Binding) -> SealedAttribute | None:
        if z is None or z.kid == new_key_id or z.kid.endswith(new_key_id.split("/")[-1]):
            return None
        out = cipher.rewrap(Sealed(int(z.v), z.kid, bytes(z.wdk), bytes(z.nonce), bytes(z.ct)),
                            binding, new_key_id)
        return SealedAttribute(v=out.v, kid=out.kid, wdk=out.wdk, nonce=out.nonce, ct=out.ct)

    for row in repo.scan_ids():
        for _attempt in range(5):
            item = repo.get(row)
            if item is None or item.sealed is None:
                counts["skipped"] += 1
                break
            # Every credential set has its own data key; the KMS context (owner, connection)
            # is the same for all of them.
            binding = Binding(item.owner, item.id, item.provider, item.base_url)
            actions: list[Any] = []
            others = list(item.credential_sets or [])
            changed = False
            try:
                primary = moved(item.sealed, binding)
                for cs in others:
                    new = moved(cs.sealed, binding)
                    if new is not None:
                        cs.sealed, changed = new, True
            except ClientError as exc:
                # A record KMS will not rewrap under its own context (edited in the table,
                # or its wrapped key damaged) would not open either: count it, name it in
                # the log, and go on with the others. Anything else (throttling past the
                # SDK's retries, our key disabled) stops the run.
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in UNREADABLE_CODES:
                    raise
                counts["unreadable"] += 1
                logger.warning("rewrap skipped a record that does not open",
                               extra={"connection_id": row, "kms_error": code})
                break
            if primary is not None:
                actions.append(ConnectionModel.sealed.set(primary))
            if changed:
                actions.append(ConnectionModel.credential_sets.set(others))
            if not actions:
                counts["already"] += 1
                break
            try:
                item.update(
                    actions=actions,
                    condition=(ConnectionModel.sealed.wdk == bytes(item.sealed.wdk))
                    & (ConnectionModel.version == item.version),
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
