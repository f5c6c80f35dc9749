"""Issue 13: provider incidents and owner digests in the daily run, and its AWS calls.

In process against the session's moto server and the fake provider, like the fault suite
(whose fixtures and helpers this module reuses). Each test runs under a run id of its own, so
the per-run counters in DynamoDB are the test's alone; the work queue is a private one, so the
retests and digest messages the worker queues are read back here.
"""

# ruff: noqa: F811 - the fault suite's fixtures are imported, then requested by name
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fakeprovider import control
from tests.integration.test_daily_faults import (  # noqa: F401 - fixtures
    conn,
    history,
    inbox,
    make_conn,
    sqs,
    svc,
    tag,
    test_batch,
)
from tests.support.aws_calls import count_aws_calls
from tests.support.builders import caller, unique
from tests.support.queues import drain

pytestmark = pytest.mark.integration


@pytest.fixture()
def queue(svc: Any, sqs: Any, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Callable[[], list[tuple[str, str]]]]:
    """The worker's queue made private (retests without delay); returns a reader of what the
    worker queued there, as SQS records."""
    url = sqs.create_queue(QueueName=f"llmc-test-work-{tag()}")["QueueUrl"]
    settings = dataclasses.replace(svc.settings, work_queue_url=url, incident_retest_seconds=0)
    monkeypatch.setattr(svc.daily, "_settings", settings)

    def read() -> list[tuple[str, str]]:
        return drain(sqs, url)

    yield read
    sqs.delete_queue(QueueUrl=url)


@pytest.fixture()
def admin_inbox(inbox: Any, env: dict[str, str]) -> Callable[[], list[dict[str, Any]]]:
    """A queue subscribed like an admin's scope-all subscription: no filter policy."""
    import boto3

    sqs_client = boto3.client("sqs")
    sns = boto3.client("sns")
    url = sqs_client.create_queue(QueueName=f"llmc-test-admin-{tag()}")["QueueUrl"]
    arn = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sub = sns.subscribe(TopicArn=env["ALERTS_TOPIC_ARN"], Protocol="sqs", Endpoint=arn,
                        ReturnSubscriptionArn=True)["SubscriptionArn"]

    def read() -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in drain(sqs_client, url)]

    yield read
    sns.unsubscribe(SubscriptionArn=sub)
    sqs_client.delete_queue(QueueUrl=url)


def kind_of(envelope: dict[str, Any]) -> str:
    return str(envelope["MessageAttributes"]["kind"]["Value"])


def batch(run: str, *groups: list[str], **extra: Any) -> list[tuple[str, str]]:
    return [(f"msg-{tag()}", json.dumps({"run_date": run, "connection_ids": ids, **extra}))
            for ids in groups]


@pytest.fixture()
def no_open_incident_left(svc: Any) -> Iterator[None]:
    """Close what a failing test left open: other tests share the fake's base URL."""
    yield
    from chalicelib.data.models import OpenIncidentModel

    for pointer in OpenIncidentModel.query("open"):
        pointer.delete()


def test_an_outage_of_one_provider_is_one_incident_not_twenty_owner_alerts(
        svc, fake_provider, inbox, admin_inbox, queue, api, no_open_incident_left):
    from chalicelib.data.models import AuditModel

    # Given 20 connections of 8 owners on one provider, and 3 with invalid keys among them
    owners = [unique(f"inc{i}-") for i in range(8)]
    reads = {o: inbox(o) for o in owners}
    outage = [make_conn(svc, fake_provider, owners[i % 8]) for i in range(20)]
    invalid = [make_conn(svc, fake_provider, owners[i], "401")[0] for i in range(3)]
    # And the provider answers 503 to all 20
    for _, key in outage:
        control.set_fault(fake_provider.base_url, key, "503")
    ids = [cid for cid, _ in outage]
    run = f"2099-01-01-{tag()}"

    try:
        # When the run's two messages of that provider are processed together
        result = test_batch(batch(run, ids[:10] + invalid[:2], ids[10:] + invalid[2:]))
        assert result == {"batchItemFailures": []}

        # Then one incident is open, with the 20 connections and the provider-side code
        incidents = [i for i in api.as_user(unique("adm-"), admin=True).get(
            "/incidents?limit=100").data["items"] if i["run_date"] == run]
        assert len(incidents) == 1, incidents
        incident = incidents[0]
        assert (incident["state"], incident["affected"], incident["codes"],
                incident["ended_at"]) == ("open", 20, ["provider_unavailable"], None)
        assert incident["provider"] == "custom" and incident["base_url"]
        # And the 20 are yellow with provider_incident and the incident's id, not red
        for cid in ids:
            item = conn(cid)
            assert item.status == "warning", cid
            (warning,) = [w for w in item.last_test["warnings"]]
            assert (warning["code"], warning["incident_id"]) == ("provider_incident",
                                                                 incident["id"])
            assert warning["remediation"]
        # And one alert went to the admins; no owner got one for the outage
        admin = [e for e in admin_inbox() if kind_of(e).startswith("incident.")]
        assert [kind_of(e) for e in admin] == ["incident.opened"]
        assert json.loads(admin[0]["Message"])["id"] == incident["id"]
        owner_alerts = {o: reads[o]() for o in owners}
        outage_alerts = [e for got in owner_alerts.values() for e in got
                         if e["MessageAttributes"]["connection_id"]["Value"] in ids]
        assert outage_alerts == []
        # And the invalid keys of the same run still alerted their owners, red
        invalid_alerts = sorted((e["MessageAttributes"]["owner"]["Value"],
                                 e["MessageAttributes"]["connection_id"]["Value"],
                                 kind_of(e)) for got in owner_alerts.values() for e in got)
        assert invalid_alerts == sorted((owners[i], invalid[i], "failure") for i in range(3))
        assert all(conn(cid).status == "error" for cid in invalid)
        # And users see the incident of a custom base URL only as admins
        assert all(i["id"] != incident["id"]
                   for i in api.get("/incidents?limit=100").data["items"])
        # And the incident is audited
        opened = list(AuditModel.target_index.query(f"incident:{incident['id']}"))
        assert [e.action for e in opened] == ["incident.open"]

        # When the provider recovers and the retests the worker queued are run
        for _, key in outage:
            control.clear_fault(fake_provider.base_url, key)
        retests = queue()
        assert sorted(i for _, body in retests
                      for i in json.loads(body)["connection_ids"]) == sorted(ids)
        assert test_batch(retests) == {"batchItemFailures": []}

        # Then the incident is closed with one recovery alert, the connections are green
        closed = api.as_user(unique("adm-"), admin=True).get("/incidents?limit=100").data
        (after,) = [i for i in closed["items"] if i["id"] == incident["id"]]
        assert after["state"] == "closed" and after["ended_at"]
        assert [kind_of(e) for e in admin_inbox() if kind_of(e).startswith("incident.")] == [
            "incident.closed"]
        assert all(conn(cid).status == "active" for cid in ids)
        assert all(reads[o]() == [] for o in owners)
        assert sorted(e.action for e in AuditModel.target_index.query(
            f"incident:{incident['id']}")) == ["incident.close", "incident.open"]
        # And nothing more is queued: no retest after the end
        assert queue() == []
        # And each outage connection has its run's test and its retest in its history
        assert all(len(history(cid)) == 2 for cid in ids)
    finally:
        for _, key in outage:
            control.clear_fault(fake_provider.base_url, key)


def test_too_few_failures_are_no_incident_and_alert_their_owners(
        svc, fake_provider, inbox, admin_inbox, queue, no_open_incident_left):
    # Given 4 connections failing provider-side (under the minimum of 5) and 6 healthy
    user = unique("few-")
    read = inbox(user)
    failing = [make_conn(svc, fake_provider, user, "503")[0] for _ in range(4)]
    healthy = [make_conn(svc, fake_provider, user)[0] for _ in range(6)]
    run = f"2099-01-02-{tag()}"

    # When the run tests them
    assert test_batch(batch(run, failing + healthy)) == {"batchItemFailures": []}

    # Then they are red and their owner is alerted, as without incidents
    assert [conn(cid).status for cid in failing] == ["error"] * 4
    got = read()
    assert sorted(e["MessageAttributes"]["connection_id"]["Value"] for e in got) == sorted(
        failing)
    assert [e for e in admin_inbox() if kind_of(e).startswith("incident.")] == []
    assert queue() == []


def test_a_digest_owner_gets_one_message_listing_every_failure(
        svc, fake_provider, inbox, queue, env):
    import boto3

    from chalicelib.data.models import SubscriptionModel

    # Given an owner subscribed for a digest, and 5 failing and 2 healthy connections
    user = unique("digest-")
    made = svc.subscriptions.subscribe(caller(user), {
        "protocol": "email", "endpoint": f"{tag().lower()}@example.com", "delivery": "digest"})
    assert made["delivery"] == "digest"
    arn = SubscriptionModel.get(user, made["id"]).subscription_arn
    policy = json.loads(boto3.client("sns").get_subscription_attributes(
        SubscriptionArn=arn)["Attributes"]["FilterPolicy"])
    assert policy == {"owner": [user], "kind": ["digest", "incident.opened",
                                                "incident.closed"]}
    # (an SQS stand-in for the e-mail address, with the same filter policy)
    sns = boto3.client("sns")
    sqs_client = boto3.client("sqs")
    url = sqs_client.create_queue(QueueName=f"llmc-test-digest-{tag()}")["QueueUrl"]
    qarn = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sub = sns.subscribe(TopicArn=env["ALERTS_TOPIC_ARN"], Protocol="sqs", Endpoint=qarn,
                        Attributes={"FilterPolicy": json.dumps(policy)},
                        ReturnSubscriptionArn=True)["SubscriptionArn"]
    codes = ["401", "401", "403", "quota", "503"]
    failing = [make_conn(svc, fake_provider, user, c, name=f"failing {i}")[0]
               for i, c in enumerate(codes)]
    healthy = [make_conn(svc, fake_provider, user)[0] for _ in range(2)]
    run = f"2099-01-03-{tag()}"
    svc.daily._runs.add_messages(run, 2, _expiry())

    try:
        # When the run's two messages are processed, and then what the worker queued
        assert test_batch(batch(run, failing[:3] + healthy[:1], failing[3:] + healthy[1:])
                          ) == {"batchItemFailures": []}
        queued = queue()
        assert [json.loads(b) for _, b in queued] == [{"digest": run}]
        assert test_batch(queued) == {"batchItemFailures": []}
        # (a duplicate of the digest message sends nothing more)
        assert test_batch([("dup", json.dumps({"digest": run}))]) == {"batchItemFailures": []}

        # Then exactly one digest reached the owner, listing the 5 failures with codes and
        # remediation
        got = [json.loads(body) for _, body in drain(sqs_client, url)]
        assert len(got) == 1, [kind_of(e) for e in got]
        doc = json.loads(got[0]["Message"])
        assert doc["type"] == "connection.digest" and doc["owner"] == user
        listed = {c["connection_id"]: c for c in doc["connections"]}
        assert sorted(listed) == sorted(failing)
        assert all(c["kind"] == "failure" and c["code"] and c["remediation"]
                   for c in listed.values())
        assert Counter(c["code"] for c in listed.values()) == Counter({
            "invalid_api_key": 2, "permission_denied": 1, "quota_exhausted": 1,
            "provider_unavailable": 1})
        attrs = {k: v["Value"] for k, v in got[0]["MessageAttributes"].items()}
        assert (attrs["owner"], attrs["kind"], attrs["connections"]) == (user, "digest", "5")
        assert "5 failing" in got[0]["Subject"]
    finally:
        sns.unsubscribe(SubscriptionArn=sub)
        sqs_client.delete_queue(QueueUrl=url)


def test_nothing_changed_sends_no_digest(svc, fake_provider, queue):
    # Given a digest owner whose connections all pass
    user = unique("quiet-")
    svc.subscriptions.subscribe(caller(user), {
        "protocol": "email", "endpoint": f"{tag().lower()}@example.com", "delivery": "digest"})
    ids = [make_conn(svc, fake_provider, user)[0] for _ in range(3)]
    run = f"2099-01-04-{tag()}"
    svc.daily._runs.add_messages(run, 1, _expiry())
    published = svc.alerts.published

    # When the run ends and its digest message is processed
    assert test_batch(batch(run, ids)) == {"batchItemFailures": []}
    assert test_batch(queue()) == {"batchItemFailures": []}

    # Then nothing was published
    assert svc.alerts.published == published


def test_a_tested_connection_costs_three_calls_plus_its_share_of_the_batches(
        svc, fake_provider, queue):
    # Given 25 healthy connections in one message (a full one, as the dispatcher makes)
    user = unique("calls-")
    ids = [make_conn(svc, fake_provider, user)[0] for _ in range(25)]
    run = f"2099-01-05-{tag()}"
    svc.daily._runs.add_messages(run, 2, _expiry())

    # When the worker processes it
    with count_aws_calls() as calls:
        assert test_batch(batch(run, ids)) == {"batchItemFailures": []}

    # Then per connection: the claim, one Decrypt, the result; per message: history and audit
    # in one BatchWriteItem each, the provider's counters (first message of the run: and
    # its open-incident read), the run's progress; per batch: the catalogue
    ddb = calls.of("dynamodb")
    assert calls.of("kms") == Counter({"Decrypt": 25})
    assert ddb["BatchWriteItem"] == 2
    assert ddb["UpdateItem"] == 25 * 2 + 2 + 1
    assert ddb["GetItem"] == 1 and ddb["Query"] == 1
    assert ddb["PutItem"] == 0
    total = sum(calls.values())
    assert total == 25 * 3 + 7, calls
    assert all(len(history(cid)) == 1 for cid in ids)


def test_unprocessed_batch_items_are_sent_again_until_written(svc, fake_provider, monkeypatch):
    from pynamodb.connection.base import Connection

    from chalicelib.data import batch as batch_mod

    # Given DynamoDB leaves part of each first BatchWriteItem unprocessed
    user = unique("unproc-")
    ids = [make_conn(svc, fake_provider, user)[0] for _ in range(4)]
    real = Connection.batch_write_item
    calls: Counter[str] = Counter()

    def partly(self: Any, table_name: str, put_items: Any = None, **kw: Any) -> Any:
        calls[table_name] += 1
        if calls[table_name] == 1 and put_items and len(put_items) > 1:
            done = real(self, table_name, put_items=put_items[:1], **kw)
            return {**done, "UnprocessedItems": {table_name: [
                {"PutRequest": {"Item": i}} for i in put_items[1:]]}}
        return real(self, table_name, put_items=put_items, **kw)

    monkeypatch.setattr(Connection, "batch_write_item", partly)
    monkeypatch.setattr(batch_mod.time, "sleep", lambda _s: None)

    # When the worker processes them
    assert test_batch(batch(f"2099-01-06-{tag()}", ids)) == {"batchItemFailures": []}

    # Then every history entry and audit event was written, none lost
    assert all(len(history(cid)) == 1 for cid in ids)
    from chalicelib.data.models import AuditModel

    for cid in ids:
        assert len([e for e in AuditModel.target_index.query(f"connection:{cid}")
                    if e.action == "connection.test"]) == 1


def test_the_dispatcher_groups_messages_by_provider_key():
    from chalicelib.services.incidents import provider_key

    # Custom providers count per base URL; catalogue providers per provider
    assert provider_key("openai", None) == "openai"
    assert provider_key("custom", "https://a.example/v1") == provider_key(
        "custom", "https://a.example/v1/")
    assert provider_key("custom", "https://a.example/v1") != provider_key(
        "custom", "https://b.example/v1")


def _expiry() -> Any:
    from datetime import timedelta

    from chalicelib.services.common import utcnow

    return utcnow() + timedelta(days=1)


def test_the_dispatcher_groups_each_provider_key_and_packs_the_small_ones(env):
    from types import SimpleNamespace

    from chalicelib.api.deps import services
    from chalicelib.services.daily import DailyRun
    from chalicelib.services.incidents import provider_key

    # Given due connections: 60 of one provider, 7 of a custom URL, and 30 custom URLs of 1
    rows = ([SimpleNamespace(id=f"big{i}", provider="openai", base_url=None) for i in range(60)]
            + [SimpleNamespace(id=f"mid{i}", provider="custom", base_url="https://m.example")
               for i in range(7)]
            + [SimpleNamespace(id=f"one{i}", provider="custom",
                               base_url=f"https://u{i}.example") for i in range(30)])
    sent: list[dict[str, Any]] = []

    class Sqs:
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> Any:
            assert len(Entries) <= 10
            sent.extend(json.loads(e["MessageBody"]) for e in Entries)
            return {}

    svc_ = services()
    run = DailyRun(SimpleNamespace(due=lambda shard, _cutoff: iter(rows if shard == "s0"
                                                                    else [])),
                   SimpleNamespace(all_models=lambda: [SimpleNamespace(id=p, enabled=True)
                                                       for p in ("openai", "custom")]),
                   svc_.testing, svc_.daily._claims, Sqs, svc_.settings)

    # When it dispatches
    summary = run.dispatch()

    # Then every id is sent once
    ids = [i for doc in sent for i in doc["connection_ids"]]
    assert sorted(ids) == sorted(r.id for r in rows) and summary["connections_queued"] == 97
    keys = {r.id: provider_key(r.provider, r.base_url) for r in rows}
    # And a message holds one provider key, at least the incident minimum of it, unless it is
    # a "small" one packing keys too small for an incident (never counted)
    for doc in sent:
        mine = {keys[i] for i in doc["connection_ids"]}
        if doc.get("small"):
            assert all(k.startswith("custom|") for k in mine)
            assert all(sum(1 for r in rows if keys[r.id] == k) < 5 for k in mine)
        else:
            assert len(mine) == 1 and len(doc["connection_ids"]) >= 5
        assert len(doc["connection_ids"]) <= 25 + 4
    assert sorted(len(d["connection_ids"]) for d in sent if not d.get("small")) == [7, 10, 25,
                                                                                   25]
    assert sorted(len(d["connection_ids"]) for d in sent if d.get("small")) == [5, 25]
