"""Envelope encryption of connection secrets: AES-256-GCM under a per-record KMS data key.

A sealed record holds: format version, KMS key id, wrapped data key, nonce, ciphertext (with
its GCM tag). The associated data binds version, owner, connection id, provider, base URL,
(format 2) the credential set's name and (format 3) the *effective* endpoint: the connection's
own base URL or, without one, the provider's at seal time, and the seal time the item
records for the set. So a blob moved to another connection or set, an older blob of the same
set written back, a base URL or provider edited in the table, or the catalogue's base URL
changed under a connection, no longer opens: a key is never sent to a host its owner did not
enter it for. Format 1 blobs (before named sets) open only as the set ``primary``; formats 1
and 2 bind only the connection's own base URL (the provider service refuses their keys after
a catalogue URL change, see ``services.providers``). KMS ``EncryptionContext`` carries
owner and connection id; ``Decrypt`` pins the key id. The plaintext data key lives only inside
one call of ``seal`` or ``open_sealed``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import KeyServiceFault, SealBroken

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
NONCE_BYTES = 12
DEFAULT_SET = "primary"
# KMS refusing a key whatever the blob: the key is disabled or pending deletion.
KEY_STATE_CODES = ("DisabledException", "KMSInvalidStateException")


@dataclass(frozen=True)
class Binding:
    """What a sealed secret belongs to; any change makes it unreadable."""

    owner: str
    connection_id: str
    provider: str
    base_url: str | None
    credential: str = DEFAULT_SET
    # Where the key is sent: the connection's own base URL, else the provider's (format 3).
    endpoint: str = ""
    # When this set's secret was sealed, as the connection records it (format 3): an older
    # blob of the same set written back alone into the table no longer opens.
    sealed_at: str = ""

    def aad(self, version: int) -> bytes:
        bound: dict[str, Any] = {
            "v": version,
            "owner": self.owner,
            "cid": self.connection_id,
            "provider": self.provider,
            "base_url": self.base_url or "",
        }
        if version >= 2:
            bound["cred"] = self.credential
        if version >= 3:
            bound["endpoint"] = self.endpoint
            bound["at"] = self.sealed_at
        elif self.credential != DEFAULT_SET:
            raise SealBroken("stored credentials do not match this credential set")
        return json.dumps(bound, sort_keys=True, separators=(",", ":")).encode()

    def kms_context(self) -> dict[str, str]:
        return {"owner": self.owner, "connection_id": self.connection_id}


@dataclass(frozen=True)
class Sealed:
    v: int
    kid: str
    wdk: bytes
    nonce: bytes
    ct: bytes


class EnvelopeCipher:
    """Seals and opens secret fields with KMS data keys. ``kms`` is a boto3 KMS client."""

    def __init__(self, kms: Any, key_id: str) -> None:
        self._kms = kms
        self._key_id = key_id

    def _key_fault(self, code: str) -> KeyServiceFault:
        from chalicelib.observability import logger

        # The log line is what the operators' alarm counts (a metric filter on the message,
        # metrics_names.KEY_SERVICE_FAULT_MESSAGE).
        logger.error("encryption key unusable", extra={"kms_error": code})
        return KeyServiceFault(
            "the service cannot use its encryption key right now; your stored secrets are "
            "intact and the operators are alerted; try again later")

    def _role_can_decrypt(self) -> bool:
        """Whether this role can use the service's key at all: a fresh data key round trip
        (two KMS calls, only after an ``AccessDenied``). If it can, the refusal was about
        the blob (a key id or wrapped key written into the table), not about us."""
        from botocore.exceptions import ClientError

        # The context keys every policy requires, with values no connection can have.
        context = Binding("#probe", "#probe", "", None).kms_context()
        try:
            made = self._kms.generate_data_key_without_plaintext(
                KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=context)
            self._kms.decrypt(CiphertextBlob=made["CiphertextBlob"], KeyId=made["KeyId"],
                              EncryptionContext=context)
        except ClientError:
            return False
        return True

    def seal(self, secrets: Mapping[str, str], binding: Binding) -> Sealed:
        from botocore.exceptions import ClientError
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            resp = self._kms.generate_data_key(
                KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=binding.kms_context()
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in KEY_STATE_CODES or code in ("AccessDeniedException",
                                                   "NotFoundException"):
                raise self._key_fault(code) from None
            raise
        plaintext_key = resp["Plaintext"]
        try:
            nonce = os.urandom(NONCE_BYTES)
            payload = json.dumps(dict(secrets), separators=(",", ":")).encode()
            ct = AESGCM(plaintext_key).encrypt(nonce, payload, binding.aad(FORMAT_VERSION))
        finally:
            del plaintext_key
        return Sealed(FORMAT_VERSION, resp["KeyId"], resp["CiphertextBlob"], nonce, ct)

    def open(self, sealed: Sealed, binding: Binding) -> dict[str, str]:
        from botocore.exceptions import ClientError
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if sealed.v not in READABLE_VERSIONS:
            raise SealBroken(f"stored credentials use an unknown format version ({sealed.v})")
        if len(sealed.nonce) != NONCE_BYTES:
            raise SealBroken("stored credentials are damaged")
        try:
            resp = self._kms.decrypt(
                CiphertextBlob=sealed.wdk,
                KeyId=sealed.kid,
                EncryptionContext=binding.kms_context(),
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            # Our own key refused (our role, or the key disabled or pending deletion): the
            # operators' fault, not the blob's; no user should re-enter a secret for it.
            if code in KEY_STATE_CODES or (code == "AccessDeniedException"
                                           and not self._role_can_decrypt()):
                raise self._key_fault(code) from None
            # A damaged or foreign wrapped key names a key KMS cannot find, or one this caller
            # may not use (a key id written into the table that is not ours).
            if code in ("InvalidCiphertextException", "IncorrectKeyException", "NotFoundException",
                        "AccessDeniedException"):
                raise SealBroken(
                    "stored credentials cannot be opened for this connection; "
                    "enter the secret again"
                ) from None
            raise
        key = resp["Plaintext"]
        try:
            data = AESGCM(key).decrypt(sealed.nonce, sealed.ct, binding.aad(sealed.v))
        except InvalidTag:
            raise SealBroken(
                "stored credentials do not match this connection (moved, or its provider or base "
                "URL was changed outside the API); enter the secret again"
            ) from None
        finally:
            del key, resp
        value = json.loads(data)
        if not isinstance(value, dict):
            raise SealBroken("stored credentials are damaged")
        return {str(k): str(v) for k, v in value.items()}

    def rewrap(self, sealed: Sealed, binding: Binding, new_key_id: str) -> Sealed:
        """Re-encrypt the data key under ``new_key_id`` inside KMS (no plaintext here)."""
        ctx = binding.kms_context()
        resp = self._kms.re_encrypt(
            CiphertextBlob=sealed.wdk,
            SourceKeyId=sealed.kid,
            SourceEncryptionContext=ctx,
            DestinationKeyId=new_key_id,
            DestinationEncryptionContext=ctx,
        )
        return Sealed(sealed.v, resp["KeyId"], resp["CiphertextBlob"], sealed.nonce, sealed.ct)
