"""Tampering, exhaustively (as the AWS Encryption SDK tests its messages): for one sealed
connection, one bit flipped in every byte of the nonce, the ciphertext, the GCM tag and the
wrapped data key, and each of them truncated at every length. Every case must be
``SealBroken`` (the 409 ``credentials_unreadable``), with no secret in the answer or the logs.

The cases go through ``ConnectionService.open_secrets`` (the one function every decrypt goes
through) with the real cipher and KMS on moto, and the error through the API's one error
mapping; the blob in the table is not rewritten for each case (that path has its own tests in
test_secrets.py), so hundreds of cases take seconds.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.builders import BEDROCK_SECRET, bedrock_body, raw_connection, set_raw

pytestmark = pytest.mark.integration

TAG = 16


@dataclass(frozen=True)
class Parts:
    wdk: bytes
    nonce: bytes
    body: bytes  # ciphertext without the tag
    tag: bytes

    def ct(self) -> bytes:
        return self.body + self.tag


def _parts(cid: str) -> tuple[dict[str, Any], Parts]:
    sealed = raw_connection(cid)["sealed"]["M"]
    ct = bytes(sealed["ct"]["B"])
    return sealed, Parts(bytes(sealed["wdk"]["B"]), bytes(sealed["nonce"]["B"]),
                         ct[:-TAG], ct[-TAG:])


def _variants(p: Parts) -> list[tuple[str, Parts]]:
    """(label, tampered parts): one bit per byte (a different bit for successive bytes), and
    every truncation (0 .. len-1), of each part."""
    out: list[tuple[str, Parts]] = []
    for name in ("nonce", "body", "tag", "wdk"):
        value: bytes = getattr(p, name)
        for i in range(len(value)):
            flipped = bytearray(value)
            flipped[i] ^= 1 << (i % 8)
            out.append((f"flip:{name}", Parts(**{**p.__dict__, name: bytes(flipped)})))
        for n in range(len(value)):
            out.append((f"truncate:{name}", Parts(**{**p.__dict__, name: value[:n]})))
    return out


@functools.lru_cache(maxsize=8)
def _sealed_at(cid: str) -> str:
    return str(raw_connection(cid)["credentials_updated_at"]["S"])


def _item(owner: str, cid: str, provider: str, base_url: str | None, v: int, kid: str,
          p: Parts) -> Any:
    # What open_secrets reads of a ConnectionModel, nothing more (the seal time is bound).
    at = _sealed_at(cid)
    return SimpleNamespace(owner=owner, id=cid, provider=provider, base_url=base_url,
                           credential_name=None, credentials_updated_at=at,
                           sealed=SimpleNamespace(v=v, kid=kid, wdk=p.wdk, nonce=p.nonce,
                                                  ct=p.ct()))


def _refused_cleanly(fn: Any) -> dict[str, Any]:
    """Run ``fn``; it must raise SealBroken; return the HTTP answer the API would give."""
    from chalicelib.api.http import error_response
    from chalicelib.errors import SealBroken

    with pytest.raises(SealBroken) as caught:
        fn()
    resp = error_response(caught.value, "req-tamper")
    return {"status": resp.status_code, "body": json.dumps(resp.body)}


def test_every_flipped_bit_and_truncation_is_a_clean_409(api, app_logs, capsys):
    from chalicelib.api.deps import services

    # Given one sealed Bedrock connection (a secret key long enough to be a clear canary)
    created = api.post("/connections", bedrock_body("tamper"))
    assert created.status_code == 201
    cid = created.data["id"]
    sealed, parts = _parts(cid)
    v, kid = int(sealed["v"]["N"]), sealed["kid"]["S"]
    conns = services().connections
    args = (api.user, cid, "bedrock", None)
    assert conns.open_secrets(_item(*args, v, kid, parts))["secret_access_key"] == \
        BEDROCK_SECRET

    # When every variant is opened
    variants = _variants(parts)
    counts: Counter[str] = Counter()
    for label, tampered in variants:
        answer = _refused_cleanly(lambda t=tampered: conns.open_secrets(_item(*args, v, kid, t)))
        # Then each is a 409 credentials_unreadable that carries no secret
        assert answer["status"] == 409, label
        assert '"credentials_unreadable"' in answer["body"], label
        assert BEDROCK_SECRET not in answer["body"]
        counts[label] += 1

    # And the counts are what the blob's sizes say (every byte, every length)
    sizes = {"nonce": len(parts.nonce), "body": len(parts.body), "tag": TAG,
             "wdk": len(parts.wdk)}
    for name, size in sizes.items():
        assert counts[f"flip:{name}"] == size
        assert counts[f"truncate:{name}"] == size
    total = sum(counts.values())
    assert total == 2 * sum(sizes.values())
    assert BEDROCK_SECRET not in app_logs()
    with capsys.disabled():
        print(f"\ntamper: {total} cases, all 409 credentials_unreadable "
              f"({', '.join(f'{k} {n}' for k, n in sorted(counts.items()))}; sizes {sizes})")


def test_blobs_swapped_between_two_owners_are_a_409_both_ways(api):
    from chalicelib.api.deps import services

    # Given two owners' connections
    mine = api.post("/connections", bedrock_body("mine")).data["id"]
    other = api.as_user(api.user + "-other")
    theirs = other.post("/connections", bedrock_body("theirs")).data["id"]
    (s_mine, p_mine), (s_theirs, p_theirs) = _parts(mine), _parts(theirs)
    conns = services().connections
    # When each blob (and each single part of it) is opened as the other's
    swaps = [
        (api.user, mine, s_theirs, p_theirs),
        (other.user, theirs, s_mine, p_mine),
    ]
    cases = 0
    for owner, cid, s, p in swaps:
        home = p_mine if cid == mine else p_theirs
        whole = _item(owner, cid, "bedrock", None, int(s["v"]["N"]), s["kid"]["S"], p)
        assert _refused_cleanly(lambda w=whole: conns.open_secrets(w))["status"] == 409
        cases += 1
        for name in ("wdk", "nonce", "body", "tag"):
            mixed = Parts(**{**home.__dict__, name: getattr(p, name)})
            item = _item(owner, cid, "bedrock", None, int(s["v"]["N"]), s["kid"]["S"], mixed)
            assert _refused_cleanly(lambda i=item: conns.open_secrets(i))["status"] == 409
            cases += 1
    # And through the API, with the blob really written over the other's: a 409, no secret
    set_raw(mine, "SET sealed = :s", {":s": raw_connection(theirs)["sealed"]})
    resp = api.post(f"/connections/{mine}/test")
    assert resp.status_code == 409, resp.data
    assert resp.data["error"]["code"] == "credentials_unreadable"
    assert BEDROCK_SECRET not in json.dumps(resp.data)
    print(f"\ntamper swaps: {cases + 1} cases, all 409")
