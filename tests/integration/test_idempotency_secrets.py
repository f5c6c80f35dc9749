"""Issue 17 (5): the Idempotency-Key record holds nothing that helps guess a stored key.

Written against the code before the change, where the record kept, for 24 hours, an unsalted
SHA-256 of the whole create body, plaintext key included: with read access to the table, a
guess of the key could be checked offline by hashing the body with it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from tests.conftest import CANARY, openai_body
from tests.support.builders import ddb, table, unique

pytestmark = pytest.mark.integration


def _record(user: str, idem_key: str) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(["connection.create", user, idem_key],
                                       sort_keys=True).encode()).hexdigest()
    found = ddb().scan(TableName=table("idempotency"), ConsistentRead=True,
                       FilterExpression="contains(id, :h)",
                       ExpressionAttributeValues={":h": {"S": digest}})["Items"]
    assert len(found) == 1, found
    return found[0]


def _powertools_hash(data: Any) -> str:
    # How Powertools hashes the validated payload (sha256 over sorted-key JSON)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def test_the_stored_validation_hash_does_not_depend_on_the_secret(api):
    # Two users create the same body but for keys that differ only where no mask shows them
    other = CANARY[:8] + "X" * (len(CANARY) - 12) + CANARY[-4:]
    assert other != CANARY and len(other) == len(CANARY)
    name = unique("idem-name-")
    records = []
    for user, key in ((api, CANARY), (api.as_user(unique("idem-user-")), other)):
        idem = unique("idem-")
        body = openai_body(name, key=key)
        resp = user.post("/connections", body, headers={"Idempotency-Key": idem})
        assert resp.status_code == 201, resp.data
        record = _record(user.user, idem)
        records.append(record)
        # The record is not the hash of a body an attacker could rebuild with a guess
        stored = record["validation"]["S"]
        assert stored not in (_powertools_hash(body), _powertools_hash({"body": body}))
        # ...and the key appears nowhere in it
        assert key not in json.dumps(record, default=str)
    # The same validation hash for both: nothing stored tells the two keys apart
    assert records[0]["validation"]["S"] == records[1]["validation"]["S"]


def test_a_replay_still_matches_and_another_secret_is_still_a_conflict(api):
    idem = unique("idem-")
    body = openai_body("replayed", key=CANARY)
    first = api.post("/connections", body, headers={"Idempotency-Key": idem})
    again = api.post("/connections", body, headers={"Idempotency-Key": idem})
    assert first.status_code == again.status_code == 201
    assert again.data["id"] == first.data["id"]
    changed = api.post("/connections", openai_body("replayed", key=CANARY[:-4] + "ZZZZ"),
                       headers={"Idempotency-Key": idem})
    assert changed.status_code == 409, changed.data
    assert changed.data["error"]["code"] == "idempotency_key_reused"
