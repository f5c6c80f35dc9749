"""Envelope encryption against an in-memory KMS that behaves like the real one where it
matters: data keys wrapped under a master key, the encryption context as associated data, the
key id pinned on Decrypt, and AWS error codes."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chalicelib.crypto import FORMAT_VERSION, Binding, EnvelopeCipher, Sealed
from chalicelib.errors import SealBroken

pytestmark = pytest.mark.unit

KEY_ID = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
OTHER_KEY = "arn:aws:kms:us-east-1:123456789012:key/99999999-2222-3333-4444-555555555555"
SECRETS = {"access_key_id": "AKIAEXAMPLEKEY123456", "secret_access_key": "s" * 40}
BINDING = Binding("alice", "conn_1", "bedrock", None)


def _error(code: str, op: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": ""}}, op)


class FakeKms:
    """Wrapped key = key id (fixed width) + nonce + AES-GCM(master, data key, context)."""

    def __init__(self) -> None:
        self.masters = {KEY_ID: os.urandom(32), OTHER_KEY: os.urandom(32)}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_with: str | None = None
        self.fail_only_for: str | None = None  # a key id: only its Decrypts fail

    def _ctx(self, context: dict[str, str]) -> bytes:
        return json.dumps(context, sort_keys=True).encode()

    def generate_data_key(self, *, KeyId: str, KeySpec: str,
                          EncryptionContext: dict[str, str]) -> dict[str, Any]:
        self.calls.append(("GenerateDataKey", {"KeyId": KeyId, "KeySpec": KeySpec,
                                               "EncryptionContext": EncryptionContext}))
        key, nonce = os.urandom(32), os.urandom(12)
        blob = KeyId.encode().ljust(96) + nonce + AESGCM(self.masters[KeyId]).encrypt(
            nonce, key, self._ctx(EncryptionContext))
        return {"KeyId": KeyId, "Plaintext": key, "CiphertextBlob": blob}

    def decrypt(self, *, CiphertextBlob: bytes, KeyId: str,
                EncryptionContext: dict[str, str]) -> dict[str, Any]:
        self.calls.append(("Decrypt", {"KeyId": KeyId, "EncryptionContext": EncryptionContext}))
        if self.fail_with and self.fail_only_for in (None, KeyId):
            raise _error(self.fail_with, "Decrypt")
        blob_key = CiphertextBlob[:96].rstrip().decode(errors="replace")
        if blob_key not in self.masters:
            raise _error("NotFoundException", "Decrypt")
        if blob_key != KeyId:
            raise _error("IncorrectKeyException", "Decrypt")
        nonce, body = CiphertextBlob[96:108], CiphertextBlob[108:]
        try:
            key = AESGCM(self.masters[blob_key]).decrypt(nonce, body,
                                                         self._ctx(EncryptionContext))
        except Exception:
            raise _error("InvalidCiphertextException", "Decrypt") from None
        return {"KeyId": blob_key, "Plaintext": key}

    def generate_data_key_without_plaintext(self, **kwargs: Any) -> dict[str, Any]:
        made = self.generate_data_key(**kwargs)
        return {"KeyId": made["KeyId"], "CiphertextBlob": made["CiphertextBlob"]}

    def re_encrypt(self, *, CiphertextBlob: bytes, SourceKeyId: str,
                   SourceEncryptionContext: dict[str, str], DestinationKeyId: str,
                   DestinationEncryptionContext: dict[str, str]) -> dict[str, Any]:
        self.calls.append(("ReEncrypt", {}))
        key = self.decrypt(CiphertextBlob=CiphertextBlob, KeyId=SourceKeyId,
                           EncryptionContext=SourceEncryptionContext)["Plaintext"]
        nonce = os.urandom(12)
        blob = DestinationKeyId.encode().ljust(96) + nonce + AESGCM(
            self.masters[DestinationKeyId]).encrypt(
                nonce, key, self._ctx(DestinationEncryptionContext))
        return {"KeyId": DestinationKeyId, "CiphertextBlob": blob}


@pytest.fixture()
def kms() -> FakeKms:
    return FakeKms()


@pytest.fixture()
def cipher(kms: FakeKms) -> EnvelopeCipher:
    return EnvelopeCipher(kms, KEY_ID)


@pytest.fixture()
def sealed(cipher: EnvelopeCipher) -> Sealed:
    return cipher.seal(SECRETS, BINDING)


def _with(s: Sealed, **over: Any) -> Sealed:
    return Sealed(**{"v": s.v, "kid": s.kid, "wdk": s.wdk, "nonce": s.nonce, "ct": s.ct, **over})


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_round_trip_uses_one_data_key_per_seal_bound_to_owner_and_connection(cipher, kms):
    first = cipher.seal(SECRETS, BINDING)
    second = cipher.seal(SECRETS, BINDING)
    assert cipher.open(first, BINDING) == SECRETS
    assert first.v == FORMAT_VERSION and first.kid == KEY_ID
    assert first.wdk != second.wdk and first.nonce != second.nonce
    assert len(first.nonce) == 12
    generate = [p for op, p in kms.calls if op == "GenerateDataKey"]
    assert generate[0] == {"KeyId": KEY_ID, "KeySpec": "AES_256", "EncryptionContext":
                           {"owner": "alice", "connection_id": "conn_1"}}
    decrypt = [p for op, p in kms.calls if op == "Decrypt"]
    assert decrypt == [{"KeyId": KEY_ID, "EncryptionContext":
                        {"owner": "alice", "connection_id": "conn_1"}}]


def test_the_sealed_record_holds_no_plaintext(sealed):
    blob = sealed.wdk + sealed.nonce + sealed.ct + sealed.kid.encode()
    for value in SECRETS.values():
        assert value.encode() not in blob
    assert b"secret_access_key" not in blob


@pytest.mark.parametrize("other", [
    Binding("mallory", "conn_1", "bedrock", None),
    Binding("alice", "conn_2", "bedrock", None),
    Binding("alice", "conn_1", "openai", None),
    Binding("alice", "conn_1", "bedrock", "https://attacker.example"),
])
def test_any_other_binding_does_not_open(cipher, sealed, other):
    with pytest.raises(SealBroken):
        cipher.open(sealed, other)


def test_base_url_none_and_empty_bind_alike(cipher):
    sealed = cipher.seal(SECRETS, BINDING)
    assert cipher.open(sealed, Binding("alice", "conn_1", "bedrock", "")) == SECRETS


@pytest.mark.parametrize("part", ["nonce", "ct", "wdk"])
def test_every_flipped_bit_is_refused(cipher, sealed, part):
    data: bytes = getattr(sealed, part)
    for bit in range(len(data) * 8):
        with pytest.raises(SealBroken):
            cipher.open(_with(sealed, **{part: _flip(data, bit)}), BINDING)


def test_tag_flips_and_truncations_are_refused(cipher, sealed):
    assert len(sealed.ct) > 16
    for cut in (1, 16, len(sealed.ct)):
        with pytest.raises(SealBroken):
            cipher.open(_with(sealed, ct=sealed.ct[:-cut]), BINDING)


def test_swapped_blobs_do_not_open(cipher):
    mine = cipher.seal(SECRETS, BINDING)
    other_binding = Binding("alice", "conn_2", "bedrock", None)
    theirs = cipher.seal({"access_key_id": "AKIAOTHER", "secret_access_key": "t" * 40},
                         other_binding)
    for swapped in (_with(mine, ct=theirs.ct, nonce=theirs.nonce), _with(mine, wdk=theirs.wdk),
                    theirs):
        with pytest.raises(SealBroken):
            cipher.open(swapped, BINDING)


@pytest.mark.parametrize("version", [0, 4, 99])
def test_unknown_format_version_is_refused_before_kms(cipher, sealed, kms, version):
    kms.calls.clear()
    with pytest.raises(SealBroken, match="format version"):
        cipher.open(_with(sealed, v=version), BINDING)
    assert kms.calls == []


@pytest.mark.parametrize("size", [0, 11, 13, 16])
def test_a_nonce_of_the_wrong_size_is_refused_before_kms(cipher, sealed, kms, size):
    kms.calls.clear()
    with pytest.raises(SealBroken):
        cipher.open(_with(sealed, nonce=b"\0" * size), BINDING)
    assert kms.calls == []


def test_a_wrapped_key_for_another_master_key_is_refused(cipher, sealed, kms):
    with pytest.raises(SealBroken):
        cipher.open(_with(sealed, kid=OTHER_KEY), BINDING)


@pytest.mark.parametrize("code", ["InvalidCiphertextException", "IncorrectKeyException",
                                  "NotFoundException"])
def test_kms_refusals_become_seal_broken(cipher, sealed, kms, code):
    kms.fail_with = code
    with pytest.raises(SealBroken) as err:
        cipher.open(sealed, BINDING)
    assert err.value.code == "credentials_unreadable"


def test_access_denied_on_a_key_id_that_is_not_ours_is_a_tampered_blob(cipher, sealed, kms):
    foreign = "arn:aws:kms:us-east-1:999999999999:key/not-ours"
    kms.fail_with, kms.fail_only_for = "AccessDeniedException", foreign
    with pytest.raises(SealBroken):
        cipher.open(_with(sealed, kid=foreign), BINDING)


@pytest.mark.parametrize("code", ["AccessDeniedException", "DisabledException",
                                  "KMSInvalidStateException"])
def test_our_own_key_refused_is_an_operator_fault_not_the_users(cipher, sealed, kms, code):
    from chalicelib.errors import KeyServiceFault

    kms.fail_with = code
    with pytest.raises(KeyServiceFault) as err:
        cipher.open(sealed, BINDING)
    assert err.value.code == "key_service_unavailable"
    assert "enter" not in err.value.message


@pytest.mark.parametrize("code", ["ThrottlingException", "KMSInternalException",
                                  "DependencyTimeoutException"])
def test_kms_outages_are_not_disguised_as_tampering(cipher, sealed, kms, code):
    kms.fail_with = code
    with pytest.raises(ClientError):
        cipher.open(sealed, BINDING)


def test_a_payload_that_is_not_an_object_is_refused(kms):
    resp = kms.generate_data_key(KeyId=KEY_ID, KeySpec="AES_256",
                                 EncryptionContext=BINDING.kms_context())
    nonce = os.urandom(12)
    ct = AESGCM(resp["Plaintext"]).encrypt(nonce, b'["not", "a", "dict"]',
                                          BINDING.aad(FORMAT_VERSION))
    forged = Sealed(FORMAT_VERSION, KEY_ID, resp["CiphertextBlob"], nonce, ct)
    with pytest.raises(SealBroken):
        EnvelopeCipher(kms, KEY_ID).open(forged, BINDING)


def test_rewrap_moves_the_data_key_and_keeps_the_ciphertext(cipher, sealed, kms):
    moved = cipher.rewrap(sealed, BINDING, OTHER_KEY)
    assert (moved.kid, moved.nonce, moved.ct) == (OTHER_KEY, sealed.nonce, sealed.ct)
    assert EnvelopeCipher(kms, OTHER_KEY).open(moved, BINDING) == SECRETS
    with pytest.raises(SealBroken):
        cipher.open(_with(moved, kid=KEY_ID), BINDING)


def test_aad_is_canonical_and_names_every_bound_field():
    aad = json.loads(BINDING.aad(1))
    assert aad == {"v": 1, "owner": "alice", "cid": "conn_1", "provider": "bedrock",
                   "base_url": ""}
    assert BINDING.aad(1) == Binding("alice", "conn_1", "bedrock", None).aad(1)
