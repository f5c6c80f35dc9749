"""`make rewrap`: every data key moves to a new KMS key, secrets still open, no lost update."""

from __future__ import annotations

import boto3
import pytest

from tests.conftest import openai_body

pytestmark = pytest.mark.integration


def test_rewrap_moves_every_key_and_secrets_still_open(api):
    from chalicelib.api.deps import services
    from chalicelib.crypto import EnvelopeCipher
    from chalicelib.data import aws
    from chalicelib.data.connections_repo import ConnectionRepository
    from chalicelib.data.models import ConnectionModel
    from chalicelib.services.maintenance import rewrap_all

    # Given two connections sealed under the current key
    ids = [api.post("/connections", openai_body(name=f"c{i}", key=f"sk-rewrap-key-{i}-0123456789"))
           .data["id"] for i in range(2)]
    new_key = boto3.client("kms").create_key(Description="rotation target")["KeyMetadata"]
    svc = services()
    cipher = EnvelopeCipher(aws.client("kms"), svc.settings.kms_key_id)

    # When every record is rewrapped
    counts = rewrap_all(ConnectionRepository(), cipher, new_key["Arn"], log=lambda _m: None)

    # Then ours moved (other tests' records too), and they still open with their secrets
    assert counts["rewrapped"] >= 2
    for i, cid in enumerate(ids):
        item = ConnectionModel.get(cid)
        assert item.sealed.kid == new_key["Arn"]
        assert svc.connections.open_secrets(item) == {"api_key": f"sk-rewrap-key-{i}-0123456789"}
    # And a second run has nothing left to do for them
    again = rewrap_all(ConnectionRepository(), cipher, new_key["Arn"], log=lambda _m: None)
    assert again["rewrapped"] == 0


def test_rewrap_never_overwrites_a_concurrent_credential_update(api):
    from chalicelib.api.deps import services
    from chalicelib.crypto import EnvelopeCipher
    from chalicelib.data import aws
    from chalicelib.data.connections_repo import ConnectionRepository
    from chalicelib.data.models import ConnectionModel
    from chalicelib.services.maintenance import rewrap_all

    body = openai_body(name="busy", key="sk-before-rotation-0001")
    cid = api.post("/connections", body).data["id"]
    new_key = boto3.client("kms").create_key(Description="rotation target")["KeyMetadata"]
    svc = services()
    cipher = EnvelopeCipher(aws.client("kms"), svc.settings.kms_key_id)
    original = cipher.rewrap
    raced = []

    def racing(sealed, binding, key_id):
        moved = original(sealed, binding, key_id)
        if binding.connection_id == cid and not raced:
            # A user replaces the key between ReEncrypt and the write
            raced.append(api.patch(f"/connections/{cid}",
                                   {"credentials": {"api_key": "sk-after-rotation-0002"}}))
        return moved

    cipher.rewrap = racing  # type: ignore[method-assign]
    counts = rewrap_all(ConnectionRepository(), cipher, new_key["Arn"], log=lambda _m: None)

    assert raced and raced[0].status_code == 200
    assert counts["retried"] >= 1
    item = ConnectionModel.get(cid)
    assert svc.connections.open_secrets(item) == {"api_key": "sk-after-rotation-0002"}
    assert item.sealed.kid == new_key["Arn"]


def test_a_record_that_does_not_open_is_counted_and_the_others_still_move(api):
    from chalicelib.api.deps import services
    from chalicelib.crypto import EnvelopeCipher
    from chalicelib.data import aws
    from chalicelib.data.connections_repo import ConnectionRepository
    from chalicelib.data.models import ConnectionModel
    from chalicelib.services.maintenance import rewrap_all
    from tests.support.builders import set_raw

    # Given a record whose owner was edited in the table (KMS's context no longer matches)
    bad = api.post("/connections", openai_body(name="moved", key="sk-moved-away-000001")).data
    good = api.post("/connections", openai_body(name="fine", key="sk-stays-fine-000002")).data
    set_raw(bad["id"], "SET #o = :o", {":o": {"S": "someone-else"}}, names={"#o": "owner"})
    new_key = boto3.client("kms").create_key(Description="rotation target")["KeyMetadata"]
    cipher = EnvelopeCipher(aws.client("kms"), services().settings.kms_key_id)

    counts = rewrap_all(ConnectionRepository(), cipher, new_key["Arn"], log=lambda _m: None)

    # Then it is counted, left as it was, and the run went on to the others
    assert counts["unreadable"] >= 1
    assert ConnectionModel.get(bad["id"]).sealed.kid != new_key["Arn"]
    assert ConnectionModel.get(good["id"]).sealed.kid == new_key["Arn"]
