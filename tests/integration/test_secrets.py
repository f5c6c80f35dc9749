"""Secrets stay secret: a canary key never leaves in clear, and tampered records never open.

Tampering is done the way an attacker with write access to the table would do it: straight
``update_item`` calls through boto3, bypassing the app.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import CANARY, openai_body
from tests.support.aws_calls import count_aws_calls
from tests.support.builders import (
    BEDROCK_SECRET,
    bedrock_body,
    ddb,
    raw_connection,
    set_raw,
    unique,
)
from tests.support.capture import CurrentStdout

pytestmark = pytest.mark.integration

SECRETS = (CANARY, BEDROCK_SECRET)
NEW_TOKEN = "FreshSessionToken9876543210zyx"


def _forms(secret: str) -> list[bytes]:
    """The secret as bytes, and the parts of its base64 encodings that do not depend on
    what precedes it (so a base64-wrapped copy is found too)."""
    raw = secret.encode()
    out = [raw]
    for pad in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = enc(b"\0" * pad + raw)
            out.append(text[4:-4])
    return out


FORMS = [f for s in SECRETS for f in _forms(s)]


def _leaks(blob: bytes) -> list[bytes]:
    return [f for f in FORMS if f in blob]


def _attr_bytes(value: dict[str, Any]) -> Iterator[bytes]:
    """Every leaf of a raw DynamoDB AttributeValue as bytes (binary attributes as-is)."""
    for kind, inner in value.items():
        if kind in ("S", "N"):
            yield inner.encode()
        elif kind == "B":
            yield bytes(inner)
        elif kind in ("SS", "NS"):
            yield from (v.encode() for v in inner)
        elif kind == "BS":
            yield from (bytes(v) for v in inner)
        elif kind == "M":
            for k, v in inner.items():
                yield k.encode()
                yield from _attr_bytes(v)
        elif kind == "L":
            for v in inner:
                yield from _attr_bytes(v)


def _scan_all_tables() -> tuple[dict[str, int], int, list[str]]:
    """Scan every table of the stack; return items per table, binary leaves seen, leaks."""
    import os

    from chalicelib.settings import TABLE_ENV

    client = ddb()
    counts: dict[str, int] = {}
    binaries = 0
    leaks: list[str] = []
    for env_name in TABLE_ENV.values():
        name = os.environ[env_name]
        counts[name] = 0
        for page in client.get_paginator("scan").paginate(TableName=name,
                                                          ConsistentRead=True):
            for item in page["Items"]:
                counts[name] += 1
                for attr, value in item.items():
                    binaries += "B" in value or any(
                        "B" in v for v in value.get("M", {}).values())
                    for leaf in _attr_bytes(value):
                        if _leaks(leaf):
                            leaks.append(f"{name}.{attr}")
    return counts, binaries, leaks


def test_canary_appears_nowhere_in_clear(api, app_logs, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    admin = api.as_user(unique("admin-"), admin=True)
    stranger = api.as_user(api.user + "-stranger")
    seen: list[tuple[str, bytes]] = []

    def keep(what: str, resp: Any) -> Any:
        body = resp.body if isinstance(resp.body, bytes) else str(resp.body).encode()
        seen.append((what, body + json.dumps(dict(resp.headers)).encode()))
        return resp

    # Creates, with an Idempotency-Key (so a record is stored) and its replay.
    idem = {"Idempotency-Key": unique("idem-")}
    created = keep("create", api.post("/connections", openai_body("canary"), headers=idem))
    assert created.status_code == 201, created.data
    cid = created.data["id"]
    replay = keep("replay", api.post("/connections", openai_body("canary"), headers=idem))
    assert replay.data["id"] == cid
    reused = keep("reuse", api.post("/connections", openai_body("canary", description="x"),
                                    headers=idem))
    assert reused.status_code == 409
    bedrock = keep("bedrock", api.post("/connections", bedrock_body("aws")))
    assert bedrock.status_code == 201, bedrock.data
    bid = bedrock.data["id"]

    # Error paths whose request carries a secret: none may echo it.
    for what, body, status in [
        ("name taken", openai_body("CANARY "), 409),
        ("unknown field", openai_body("e1", bogus=CANARY), 400),
        ("bad key format", openai_body("e2", key=CANARY + " \n"), 400),
        ("key not a string", openai_body("e3", key=[CANARY]), 400),  # type: ignore[arg-type]
        ("secret in a number", openai_body("e4", settings={"max_tokens": CANARY}), 400),
        ("blocked base_url", openai_body("e5", base_url=f"http://localhost/{CANARY}"), 400),
        ("bad bedrock key", bedrock_body("e6", secret_access_key=BEDROCK_SECRET + "!"), 400),
        ("unknown provider", {"name": "e7", "provider": "nope",
                              "credentials": {"api_key": CANARY}}, 400),
    ]:
        resp = keep(what, api.post("/connections", body))
        assert resp.status_code == status, (what, resp.data)
    masked_back = keep("masked", api.patch(f"/connections/{cid}", {
        "credentials": {"api_key": created.data["credentials_masked"]["api_key"]}}))
    assert masked_back.status_code == 400

    # Reads, updates (one forces a decrypt), dependents, export, import, audit, denials.
    keep("get", api.get(f"/connections/{cid}"))
    keep("list", api.get("/connections"))
    assert keep("rename", api.patch(f"/connections/{cid}", {"name": "renamed"})).status_code == 200
    assert keep("rekey", api.patch(f"/connections/{cid}", {
        "credentials": {"api_key": CANARY}})).status_code == 200
    token = keep("partial", api.patch(f"/connections/{bid}", {
        "credentials": {"session_token": NEW_TOKEN}}))
    assert token.status_code == 200, token.data
    keep("dependent", api.put(f"/connections/{cid}/dependents/p1",
                              {"kind": "prompt", "display_name": "Weekly"}))
    export = keep("export", api.get("/connections/export"))
    assert export.status_code == 200
    importer = api.as_user(api.user + "-importer")
    assert keep("import", importer.post("/connections/import", export.data)).status_code == 201
    keep("stranger get", stranger.get(f"/connections/{cid}"))
    keep("stranger patch", stranger.patch(f"/connections/{bid}", {
        "credentials": {"session_token": NEW_TOKEN}}))
    keep("admin get", admin.get(f"/connections/{bid}"))
    keep("admin list", admin.get(f"/connections?owner={api.user}"))
    keep("audit", api.get("/audit"))
    keep("admin audit", admin.get(f"/audit?user={api.user}"))

    # An unexpected failure whose exception text carries the secrets: a 500, and a log line
    # with a traceback that must be scrubbed.
    from chalicelib.data.connections_repo import ConnectionRepository

    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError(f"driver said {CANARY} and {BEDROCK_SECRET}")

    monkeypatch.setattr(ConnectionRepository, "create", boom)
    crash = keep("500", api.post("/connections", bedrock_body("crash")))
    assert crash.status_code == 500
    monkeypatch.undo()

    for what, blob in seen:
        assert not _leaks(blob), f"secret in the {what} response"

    out = app_logs()
    assert '"request"' in out and "unhandled error" in out, "log capture is not working"
    assert "[REDACTED]" in out
    assert not _leaks(out.encode()), "secret in a log line"
    # Other loggers (botocore, PynamoDB, Powertools utilities) reach the root handlers as is.
    # The app's own records also propagate there, but unformatted: in Lambda Powertools
    # filters them off the root handler, and they are checked above through the formatter.
    others = "\n".join(caplog.handler.format(r) for r in caplog.records
                       if not r.name.startswith("llm-connections"))
    assert not _leaks(others.encode()), "secret in a stdlib log record"

    counts, binaries, leaks = _scan_all_tables()
    assert leaks == []
    assert binaries > 0, "no binary attribute was scanned"
    from tests.support.builders import table

    for key in ("connections", "audit", "idempotency", "dependents", "names"):
        assert counts[table(key)] > 0, f"nothing scanned in {key}"


def test_access_log_lines_are_written_at_info(api, capsys):
    from chalicelib.observability import logger

    handler: Any = logger.registered_handler
    previous = handler.stream
    handler.stream = CurrentStdout()
    try:
        api.get("/connections")
    finally:
        handler.stream = previous
    assert '"message":"request"' in capsys.readouterr().out


# -- tampering ----------------------------------------------------------------------------


def _open(cid: str) -> dict[str, str]:
    from chalicelib.api.deps import services
    from chalicelib.data.models import ConnectionModel

    return services().connections.open_secrets(ConnectionModel.get(cid, consistent_read=True))


def _assert_refused_cleanly(api: Any, cid: str) -> None:
    """Service level: SealBroken. HTTP level (a PATCH that must decrypt): a 409, no write."""
    from chalicelib.errors import SealBroken

    with pytest.raises(SealBroken):
        _open(cid)
    before = api.get(f"/connections/{cid}").data
    resp = api.patch(f"/connections/{cid}", {"credentials": {"session_token": NEW_TOKEN}})
    assert resp.status_code == 409, resp.data
    assert resp.data["error"]["code"] == "credentials_unreadable"
    assert resp.data["error"]["request_id"]
    after = api.get(f"/connections/{cid}").data
    assert after["version"] == before["version"]
    assert after["credentials_masked"] == before["credentials_masked"]


def _bedrock(api: Any, name: str = "aws") -> str:
    resp = api.post("/connections", bedrock_body(name))
    assert resp.status_code == 201, resp.data
    cid = resp.data["id"]
    assert _open(cid)["secret_access_key"] == BEDROCK_SECRET  # the untampered record opens
    return cid


def _flip(data: bytes, pos: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize(("part", "pos"), [
    ("nonce", 0),
    ("nonce", -1),
    ("ct", 0),          # ciphertext body
    ("ct", -17),        # last ciphertext byte before the tag
    ("ct", -16),        # GCM tag: the last 16 bytes
    ("ct", -1),
    ("wdk", 0),         # wrapped data key: header
    ("wdk", 40),
    ("wdk", -1),
])
def test_one_flipped_bit_never_opens(api, part, pos):
    cid = _bedrock(api)
    sealed = raw_connection(cid)["sealed"]["M"]
    set_raw(cid, "SET sealed.#p = :v", {":v": {"B": _flip(sealed[part]["B"], pos)}},
            {"#p": part})
    _assert_refused_cleanly(api, cid)


def test_blob_swapped_between_connections_never_opens(api):
    first, second = _bedrock(api, "first"), _bedrock(api, "second")
    set_raw(second, "SET sealed = :s", {":s": raw_connection(first)["sealed"]})
    _assert_refused_cleanly(api, second)


def test_blob_swapped_between_users_never_opens(api):
    mine = _bedrock(api, "mine")
    theirs = _bedrock(api.as_user(api.user + "-b"), "theirs")
    set_raw(mine, "SET sealed = :s, secret_fields = :f", {
        ":s": raw_connection(theirs)["sealed"], ":f": raw_connection(theirs)["secret_fields"]})
    _assert_refused_cleanly(api, mine)


def test_base_url_edited_in_the_table_never_opens(api):
    cid = _bedrock(api)
    set_raw(cid, "SET base_url = :u", {":u": {"S": "https://attacker.example"}})
    _assert_refused_cleanly(api, cid)


def test_provider_edited_in_the_table_never_opens(api):
    from chalicelib.errors import SealBroken

    cid = _bedrock(api)
    set_raw(cid, "SET provider = :p", {":p": {"S": "custom"}})
    with pytest.raises(SealBroken):
        _open(cid)


def test_unknown_format_version_fails_before_any_kms_call(api):
    from chalicelib.errors import SealBroken

    cid = _bedrock(api)
    set_raw(cid, "SET sealed.v = :v", {":v": {"N": "4"}})
    with count_aws_calls() as calls, pytest.raises(SealBroken, match="format version"):
        _open(cid)
    assert calls.of("kms") == {}
    _assert_refused_cleanly(api, cid)


def test_truncated_nonce_fails_before_any_kms_call(api):
    from chalicelib.errors import SealBroken

    cid = _bedrock(api)
    nonce = raw_connection(cid)["sealed"]["M"]["nonce"]["B"]
    set_raw(cid, "SET sealed.nonce = :n", {":n": {"B": nonce[:-1]}})
    with count_aws_calls() as calls, pytest.raises(SealBroken):
        _open(cid)
    assert calls.of("kms") == {}


def test_a_broken_record_recovers_when_the_secrets_are_sent_again(api):
    cid = _bedrock(api)
    sealed = raw_connection(cid)["sealed"]["M"]
    set_raw(cid, "SET sealed.ct = :c", {":c": {"B": _flip(sealed["ct"]["B"], -1)}})
    resp = api.patch(f"/connections/{cid}", {"credentials": {
        "access_key_id": "AKIAREPLACEMENT12345", "secret_access_key": BEDROCK_SECRET,
        "session_token": NEW_TOKEN}})
    assert resp.status_code == 200, resp.data
    assert _open(cid) == {"access_key_id": "AKIAREPLACEMENT12345",
                          "secret_access_key": BEDROCK_SECRET, "session_token": NEW_TOKEN}


def test_a_broken_record_recovers_with_the_required_secrets_and_a_dropped_optional_one(api):
    cid = _bedrock(api)
    sealed = raw_connection(cid)["sealed"]["M"]
    set_raw(cid, "SET sealed.nonce = :n", {":n": {"B": _flip(sealed["nonce"]["B"], 0)}})
    required = {"access_key_id": "AKIAREPLACEMENT12345", "secret_access_key": BEDROCK_SECRET}
    # The stored session token is kept unless named, and it cannot be read: a clean 409 ...
    kept = api.patch(f"/connections/{cid}", {"credentials": required})
    assert kept.status_code == 409 and kept.data["error"]["code"] == "credentials_unreadable"
    # ... so the user drops it (null) or sends it again.
    resp = api.patch(f"/connections/{cid}", {"credentials": {**required, "session_token": None}})
    assert resp.status_code == 200, resp.data
    assert _open(cid) == required
