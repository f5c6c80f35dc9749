"""Issue 5 under faults: the daily run when SNS, DynamoDB, SQS messages or workers misbehave.

The dispatcher, the worker entry point (``chalicelib.api.events.test_batch``) and the alert
service run in process against the moto server of the session; connections point at the fake
provider on loopback. The connections table is shared by every test of the session, so the
dispatcher's queue here is a private one and only this test's connections are handed to the
worker (the other tests' connections are left alone).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from fakeprovider import control
from tests.support.aws_calls import count_aws_calls
from tests.support.builders import caller, set_raw, unique
from tests.support.capture import app_logs_to_stdout, emf_metrics, log_records
from tests.support.queues import drain

pytestmark = pytest.mark.integration


def tag() -> str:
    # Upper case: the fake reads ``fk_([a-z0-9.]+)``, so the tag never extends a directive.
    return uuid.uuid4().hex[:12].upper()


@pytest.fixture()
def svc(env: dict[str, str], fake_provider: Any) -> Any:
    from chalicelib.api.deps import services

    return services()


def make_conn(svc: Any, fake: Any, user: str, directive: str | None = None, *,
              name: str | None = None, provider: str = "custom") -> tuple[str, str]:
    """A custom (OpenAI-compatible) or Anthropic connection on the fake; ``directive`` picks
    its fault."""
    prefix, adapter, model = {"custom": ("sk-fake-", "openai", "gpt-4o"),
                              "anthropic": ("sk-ant-fake-", "anthropic", "claude-haiku-4-5")
                              }[provider]
    key = f"{prefix}{f'fk_{directive}_' if directive else ''}{tag()}"
    made = svc.connections.create(caller(user), {
        "name": name or f"daily {tag()}", "provider": provider,
        "credentials": {"api_key": key},
        "base_url": control.base_url_for(adapter, fake.base_url),
        "default_model": model, "settings": {"max_retries": 0},
    })
    return made["id"], key


def today() -> str:
    from chalicelib.services.daily import run_date_of

    return run_date_of()


def message(ids: list[str], run_date: str | None = None) -> tuple[str, str]:
    """One SQS record as the worker gets it: (message id, body)."""
    return (f"msg-{tag()}", json.dumps({"run_date": run_date or today(),
                                        "connection_ids": ids}))


def run_date_in(record: tuple[str, str]) -> str:
    return str(json.loads(record[1])["run_date"])


def history(cid: str) -> list[Any]:
    from chalicelib.data.models import TestRecordModel

    return list(TestRecordModel.query(cid, consistent_read=True))


def claim_state(cid: str, run_date: str) -> str | None:
    from chalicelib.data.models import ConnectionModel

    claim = ConnectionModel.get(cid, consistent_read=True).daily
    return claim.state if claim is not None and claim.run_date == run_date else None


def conn(cid: str) -> Any:
    from chalicelib.data.models import ConnectionModel

    return ConnectionModel.get(cid, consistent_read=True)


@pytest.fixture()
def sqs(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client("sqs")


@pytest.fixture()
def inbox(env: dict[str, str], sqs: Any) -> Iterator[Callable[[str], Callable[[], list]]]:
    """``inbox(user)`` subscribes a fresh queue to the alerts topic with a filter on ``owner``
    (as a user's subscription does) and returns a reader of the SNS envelopes it got."""
    import boto3

    sns = boto3.client("sns")
    made: list[tuple[str, str]] = []

    def subscribe(user: str) -> Callable[[], list[dict[str, Any]]]:
        url = sqs.create_queue(QueueName=f"llmc-test-inbox-{tag()}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        sub = sns.subscribe(TopicArn=env["ALERTS_TOPIC_ARN"], Protocol="sqs", Endpoint=arn,
                            Attributes={"FilterPolicy": json.dumps({"owner": [user]})},
                            ReturnSubscriptionArn=True)["SubscriptionArn"]
        made.append((url, sub))

        def read() -> list[dict[str, Any]]:
            return [json.loads(body) for _, body in drain(sqs, url)]

        return read

    yield subscribe
    for url, sub in made:
        sns.unsubscribe(SubscriptionArn=sub)
        sqs.delete_queue(QueueUrl=url)


def kinds(envelopes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["MessageAttributes"]["kind"]["Value"],
             e["MessageAttributes"]["connection_id"]["Value"]) for e in envelopes]


@pytest.fixture()
def private_dispatch(svc: Any, sqs: Any) -> Iterator[Callable[..., list[tuple[str, str]]]]:
    """``dispatch(now, ids)``: the real dispatcher into a private queue, then the messages as
    the worker would get them, each narrowed to ``ids`` (the table is shared by the session)."""
    from chalicelib.data import aws
    from chalicelib.data.connections_repo import ConnectionRepository
    from chalicelib.data.daily_repo import DailyClaimRepository
    from chalicelib.services.daily import DailyRun

    url = sqs.create_queue(QueueName=f"llmc-test-work-{tag()}")["QueueUrl"]
    run = DailyRun(ConnectionRepository(), svc.providers, svc.testing, DailyClaimRepository(),
                   lambda: aws.client("sqs"),
                   dataclasses.replace(svc.settings, work_queue_url=url))

    def dispatch(now: Any, ids: list[str]) -> list[tuple[str, str]]:
        summary = run.dispatch(now)
        out = []
        for message_id, body in drain(sqs, url):
            doc = json.loads(body)
            assert doc["run_date"] == summary["run_date"]
            mine = [i for i in doc["connection_ids"] if i in ids]
            if mine:
                out.append((message_id, json.dumps({**doc, "connection_ids": mine})))
        return out

    yield dispatch
    sqs.delete_queue(QueueUrl=url)


def test_batch(records: list[tuple[str, str]]) -> dict[str, Any]:
    from chalicelib.api import events

    return events.test_batch(records)


test_batch.__test__ = False  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- SNS failing


def test_sns_failures_are_retried_then_recorded_and_the_run_goes_on(svc, fake_provider, inbox,
                                                                   monkeypatch, capsys):
    from chalicelib.data import aws
    from chalicelib.observability import metrics
    from chalicelib.services.common import utcnow

    # Given three connections: two failing (each alerts) and a healthy one
    user = unique("sns-")
    read = inbox(user)
    doomed, _ = make_conn(svc, fake_provider, user, "401")  # SNS always fails for it
    flaky, _ = make_conn(svc, fake_provider, user, "401")   # SNS fails twice, then works
    healthy, _ = make_conn(svc, fake_provider, user)
    # And an SNS client whose publish raises (the factory hands out this shared client)
    sns = aws.client("sns")
    real_publish = sns.publish
    attempts: Counter[str] = Counter()

    def publish(**kwargs: Any) -> Any:
        cid = kwargs["MessageAttributes"]["connection_id"]["StringValue"]
        attempts[cid] += 1
        if cid == doomed or (cid == flaky and attempts[cid] <= 2):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "SNS is down"}},
                              "Publish")
        return real_publish(**kwargs)

    monkeypatch.setattr(sns, "publish", publish)
    sleeps: list[float] = []
    monkeypatch.setattr(svc.alerts, "_sleep", sleeps.append)
    metrics.clear_metrics()

    # When the worker runs the batch
    record = message([doomed, flaky, healthy])
    result = test_batch([record])

    # Then the batch succeeds: an alert failure is no processing failure
    assert result == {"batchItemFailures": []}
    # And each publish was tried three times, with backoff between the tries
    assert attempts == {doomed: 3, flaky: 3}
    assert len(sleeps) == 4 and all(s > 0 for s in sleeps)
    # And the lost alert is counted, measured and recorded on the connection
    assert (svc.alerts.published, svc.alerts.failed) == (1, 1)
    emitted = emf_metrics(capsys.readouterr().out)
    assert emitted["AlertPublishFailures"] == 1
    assert emitted["AlertsSent"] == 1
    assert emitted["ConnectionsTested"] == 3
    doomed_alert = conn(doomed).alert
    assert doomed_alert["state"] == "error" and doomed_alert["publish_failed_at"]
    assert "publish_failed_at" not in conn(flaky).alert
    # And every connection was still tested once
    for cid in (doomed, flaky, healthy):
        assert len(history(cid)) == 1, cid
        assert claim_state(cid, run_date_in(record)) == "completed"
    assert conn(healthy).status == "active"
    # And only the flaky connection's alert got out
    assert kinds(read()) == [("failure", flaky)]

    # When SNS works again for the next day's run
    monkeypatch.setattr(sns, "publish", real_publish)
    tomorrow = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%d")
    assert test_batch([message([doomed, flaky, healthy], tomorrow)]) == {
        "batchItemFailures": []}

    # Then the lost alert goes out then (not 7 days later), once; nothing else is repeated
    assert kinds(read()) == [("failure", doomed)]
    assert "publish_failed_at" not in conn(doomed).alert
    assert conn(doomed).alert["since"] == doomed_alert["since"]
    day_after = (utcnow() + timedelta(days=2)).strftime("%Y-%m-%d")
    assert test_batch([message([doomed, flaky], day_after)]) == {"batchItemFailures": []}
    assert read() == []


# --------------------------------------------------------------------------- DynamoDB throttled


class _Raw:
    """The raw body botocore reads an AWSResponse from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


THROTTLED = json.dumps({
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded.",
}).encode()


def test_dynamodb_throttling_is_retried_by_the_sdk(svc, fake_provider):
    from chalicelib.data.models import ConnectionModel

    # Given DynamoDB throttles the first update of the connection (the claim) once
    user = unique("ddb-")
    cid, _ = make_conn(svc, fake_provider, user)
    targets = {f"{ConnectionModel.Meta.table_name}:UpdateItem"}
    sends: Counter[str] = Counter()
    throttled: Counter[str] = Counter()

    def throttle_once(request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        op = event_name.rsplit(".", 1)[-1]
        key = f"{json.loads(request.body or b'{}').get('TableName')}:{op}"
        sends[key] += 1
        if key in targets and not throttled[key]:
            throttled[key] += 1
            return AWSResponse(request.url, 400, {
                "x-amzn-ErrorType": "ProvisionedThroughputExceededException",
                "Content-Type": "application/x-amz-json-1.0"}, _Raw(THROTTLED))
        return None

    hooked = []
    for model in (ConnectionModel,):
        client = model._get_connection().connection.client
        client.meta.events.register("before-send.dynamodb.*", throttle_once)
        hooked.append(client)
    try:
        # When the worker tests the connection
        record = message([cid])
        with count_aws_calls() as calls:
            result = test_batch([record])
    finally:
        for client in hooked:
            client.meta.events.unregister("before-send.dynamodb.*", throttle_once)

    # Then the throttled writes (the claim, the result) were sent again by the SDK: one API
    # call each, two sends
    assert set(throttled) == targets
    api_calls = Counter(f"{params.get('TableName')}:{op}"
                        for service, op, params in calls.params if service == "dynamodb")
    for key in throttled:
        # two updates (the claim, then result + completion), one of them sent twice
        assert (api_calls[key], sends[key]) == (2, 3), key
    # ...and the run completed as if nothing happened
    assert result == {"batchItemFailures": []}
    assert len(history(cid)) == 1
    assert claim_state(cid, run_date_in(record)) == "completed"
    assert conn(cid).status == "active"


# --------------------------------------------------------------------------- poison message


def test_a_poison_message_ends_in_the_dead_letter_queue(svc, sqs):
    from devtools import daily as tool
    from devtools import localenv

    # Given malformed bodies on the local work queue
    work = tool.queue_url(localenv.WORK_QUEUE)
    dlq = tool.queue_url(localenv.DEAD_LETTER_QUEUE)
    poison = [f"not json {tag()}", json.dumps({"run_date": today(), "ids": [tag()]})]
    for body in poison:
        sqs.send_message(QueueUrl=work, MessageBody=body)

    # When the queue is drained the way Lambda would (failed records come back)
    summary = tool.drain()

    # Then each was received the configured number of times, then dead-lettered
    assert summary["failed_deliveries"] == localenv.MAX_RECEIVES * len(poison)
    attrs = sqs.get_queue_attributes(QueueUrl=work, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert attrs == {"ApproximateNumberOfMessages": "0",
                     "ApproximateNumberOfMessagesNotVisible": "0"}
    dead: list[str] = []
    while True:
        msgs = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10,
                                   WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            break
        for m in msgs:
            if m["Body"] in poison:
                dead.append(m["Body"])
                sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(dead) == sorted(poison)


# --------------------------------------------------------------------------- worker killed


def test_a_killed_worker_leaves_only_its_unfinished_connections_to_the_redelivery(
        svc, fake_provider, monkeypatch):
    from chalicelib.data.models import ConnectionModel
    from chalicelib.services.common import iso, utcnow

    # Given a batch of three healthy connections
    user = unique("killed-")
    a, key_a = make_conn(svc, fake_provider, user)
    b, key_b = make_conn(svc, fake_provider, user)
    c, key_c = make_conn(svc, fake_provider, user)
    record = message([a, b, c])
    run_date = run_date_in(record)

    # When the worker dies while recording A: no cleanup runs (no release of the claim)
    real_record = svc.testing.record

    def dying_record(item: Any, result: Any, **kwargs: Any) -> None:
        if item.id == a:
            raise RuntimeError("worker killed")
        real_record(item, result, **kwargs)

    monkeypatch.setattr(svc.testing, "record", dying_record)
    monkeypatch.setattr(svc.daily._claims, "release", lambda *_a: None)
    first = test_batch([record])
    monkeypatch.undo()

    # Then the message comes back; A is still claimed, B and C are done
    assert first == {"batchItemFailures": [{"itemIdentifier": record[0]}]}
    assert [claim_state(x, run_date) for x in (a, b, c)] == [
        "in_progress", "completed", "completed"]
    assert [len(history(x)) for x in (a, b, c)] == [0, 1, 1]

    # When it is redelivered before A's lease ran out, Then A is left to its owner
    assert test_batch([record]) == {"batchItemFailures": []}
    assert [len(history(x)) for x in (a, b, c)] == [0, 1, 1]

    # When it is redelivered after the lease ran out
    ConnectionModel(id=a).update(actions=[
        ConnectionModel.daily.lease_until.set(iso(utcnow() - timedelta(seconds=1)))])
    seq = _last_seq(fake_provider)
    assert test_batch([record]) == {"batchItemFailures": []}

    # Then only A is tested, and every connection has exactly one test today
    assert [len(history(x)) for x in (a, b, c)] == [1, 1, 1]
    assert [claim_state(x, run_date) for x in (a, b, c)] == ["completed"] * 3
    called = {e["key_fingerprint"] for e in control.requests(fake_provider.base_url, since=seq)}
    assert key_a[-4:] in called
    assert not called & {key_b[-4:], key_c[-4:]}


def test_a_failed_recording_is_released_and_retried_on_redelivery(svc, fake_provider,
                                                                  monkeypatch):
    # Given a batch where recording one connection fails once (a DynamoDB outage, say)
    user = unique("retry-")
    a, _ = make_conn(svc, fake_provider, user, "401")
    b, _ = make_conn(svc, fake_provider, user, "401")
    real_record = svc.testing.record
    failures = Counter()

    def flaky_record(item: Any, result: Any, **kwargs: Any) -> None:
        if item.id == a and not failures[a]:
            failures[a] += 1
            raise RuntimeError("DynamoDB hiccup")
        real_record(item, result, **kwargs)

    monkeypatch.setattr(svc.testing, "record", flaky_record)
    published = svc.alerts.published
    record = message([a, b])

    # When it is delivered, fails for A, and is delivered again
    assert test_batch([record]) == {"batchItemFailures": [{"itemIdentifier": record[0]}]}
    assert claim_state(a, run_date_in(record)) is None  # released at once for the redelivery
    assert test_batch([record]) == {"batchItemFailures": []}

    # Then each connection was recorded and alerted exactly once
    assert [len(history(x)) for x in (a, b)] == [1, 1]
    assert svc.alerts.published - published == 2


# --------------------------------------------------------------------------- exactly once a day


def test_the_same_message_twice_tests_and_alerts_once(svc, fake_provider, inbox):
    from chalicelib.data.models import AuditModel

    user = unique("twice-")
    read = inbox(user)
    ids = [make_conn(svc, fake_provider, user, d)[0] for d in ("401", "401", None)]
    record = message(ids)

    # When the same message is delivered twice at once, and once more afterwards
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(test_batch([record])))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.append(test_batch([record]))

    # Then every connection was tested once and each failing one alerted once
    assert results == [{"batchItemFailures": []}] * 3
    assert [len(history(cid)) for cid in ids] == [1, 1, 1]
    assert sorted(kinds(read())) == sorted([("failure", ids[0]), ("failure", ids[1])])
    # And audited once, as the scheduler
    for cid in ids:
        events = [e for e in AuditModel.target_index.query(f"connection:{cid}")
                  if e.action == "connection.test"]
        assert [(e.actor, e.detail["trigger"]) for e in events] == [
            ("system:scheduler", "daily")], cid


def test_dispatching_twice_a_day_tests_and_alerts_once(svc, fake_provider, inbox,
                                                       private_dispatch):
    from chalicelib.services.common import utcnow

    user = unique("dispatch-")
    read = inbox(user)
    ids = [make_conn(svc, fake_provider, user, d)[0] for d in ("401", None)]

    # When the dispatcher runs twice before any worker (an EventBridge retry, say)
    now = utcnow()
    records = private_dispatch(now, ids) + private_dispatch(now, ids)
    assert sorted(i for _, body in records for i in json.loads(body)["connection_ids"]) == \
        sorted(ids * 2)
    # And the workers take every message
    assert test_batch(records) == {"batchItemFailures": []}

    # Then each connection was tested once and alerted once
    assert [len(history(cid)) for cid in ids] == [1, 1]
    assert kinds(read()) == [("failure", ids[0])]
    # And a third dispatch the same day queues neither again
    assert private_dispatch(now + timedelta(hours=1), ids) == []


# --------------------------------------------------------------------------- concurrency


def test_a_busy_provider_does_not_hold_the_slots_of_the_others(svc, fake_provider):
    import asyncio
    import time

    from chalicelib.data import aws
    from chalicelib.data.connections_repo import ConnectionRepository
    from chalicelib.data.daily_repo import DailyClaimRepository
    from chalicelib.providers.netguard import guarded_client
    from chalicelib.services.daily import DailyRun, RunStats

    # Given a worker with 2 slots and 1 per provider, a slow connection (1.2 s a call)
    # and a second one of the same provider, both under way
    user = unique("fair-")
    slow, slow_key = make_conn(svc, fake_provider, user, "slow1200")
    queued, _ = make_conn(svc, fake_provider, user)
    other, _ = make_conn(svc, fake_provider, user, provider="anthropic")
    run = DailyRun(ConnectionRepository(), svc.providers, svc.testing, DailyClaimRepository(),
                   lambda: aws.client("sqs"), svc.settings, concurrency=2, per_provider=1)
    stats = RunStats()

    async def scenario() -> float:
        overall, limits = asyncio.Semaphore(run.concurrency), {}
        async with guarded_client(allow_hosts=svc.settings.outbound_allow_hosts,
                                  allow_http=True) as client:
            def one(cid: str) -> asyncio.Task[None]:
                return asyncio.create_task(
                    run.test_one(cid, today(), stats, client, limits, overall))

            busy = [one(slow), one(queued)]
            while not control.requests(fake_provider.base_url, fingerprint=slow_key[-4:]):
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # the queued connection is ready and waits its turn
            # When a connection of another provider comes
            started = time.monotonic()
            await one(other)
            waited = time.monotonic() - started
            await asyncio.gather(*busy)
        return waited

    waited = asyncio.run(scenario())

    # Then it runs in the free slot at once, not after the slow provider's queue
    assert waited < 0.5, waited
    assert (stats.tested, stats.errors) == (3, 0)


# --------------------------------------------------------------------------- alerts


def test_alerts_attributes_forms_reminders_and_recovery(svc, fake_provider, inbox,
                                                        private_dispatch):
    from chalicelib.data.models import ConnectionModel
    from chalicelib.services.common import iso, utcnow

    # Given a connection whose key the provider refuses
    user = unique("alerts-")
    read = inbox(user)
    cid, key = make_conn(svc, fake_provider, user, name="Prod OpenAI")
    # named before names refused control characters: the alert subject must still be clean
    set_raw(cid, "SET #n = :n", {":n": {"S": "Prod\tOpenAI"}}, names={"#n": "name"})
    control.set_fault(fake_provider.base_url, key, "401")
    start = utcnow()

    def day(n: int) -> list[dict[str, Any]]:
        assert test_batch(private_dispatch(start + timedelta(days=n), [cid])) == {
            "batchItemFailures": []}
        return read()

    try:
        # When the daily run finds it failing
        with count_aws_calls() as calls:
            first = day(0)

        # Then one alert with filterable attributes went out, in every delivery form
        assert kinds(first) == [("failure", cid)]
        envelope = first[0]
        attrs = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
        assert attrs == {"owner": user, "connection_id": cid, "provider": "custom",
                         "status": "error", "error_code": "invalid_api_key",
                         "kind": "failure"}
        doc = json.loads(envelope["Message"])  # the sqs form: a JSON document
        assert (doc["type"], doc["connection_id"], doc["owner"], doc["status"],
                doc["error_code"]) == ("connection.failure", cid, user, "error",
                                       "invalid_api_key")
        assert doc["remediation"]
        published = [p for svc_name, op, p in calls.params if (svc_name, op) == ("sns",
                                                                                  "Publish")]
        assert len(published) == 1
        assert published[0]["MessageStructure"] == "json"
        forms = json.loads(published[0]["Message"])
        assert {"default", "email", "sqs"} <= set(forms)
        assert forms["email"] == forms["default"]
        assert "What to try:" in forms["email"] and cid in forms["email"]
        assert json.loads(forms["sqs"]) == doc
        # A subject SNS accepts: under 100 characters, no line breaks or control characters
        subject = published[0]["Subject"]
        assert envelope["Subject"] == subject
        assert len(subject) < 100 and subject.isprintable(), subject

        # When it still fails the next day: no reminder yet
        assert day(1) == []

        # When the last alert is 8 days old: one reminder, then none the day after
        item = ConnectionModel.get(cid, consistent_read=True)
        aged = {**item.alert, "last_sent_at": iso(utcnow() - timedelta(days=8))}
        item.update(actions=[ConnectionModel.alert.set(aged)])
        assert kinds(day(2)) == [("reminder", cid)]
        assert day(3) == []

        # When the key works again: one recovery message, then silence
        control.clear_fault(fake_provider.base_url, key)
        recovered = day(4)
        assert kinds(recovered) == [("recovery", cid)]
        assert recovered[0]["MessageAttributes"]["status"]["Value"] == "active"
        assert day(5) == []
    finally:
        control.clear_fault(fake_provider.base_url, key)

    assert len(history(cid)) == 6  # one test a day
    alerts_text = json.dumps(first + recovered) + json.dumps(published, default=str)
    assert key not in alerts_text


def test_no_secret_reaches_an_alert_even_when_the_provider_echoes_it(svc, fake_provider,
                                                                    inbox):
    user = unique("echo-")
    read = inbox(user)
    key = f"cnry{uuid.uuid4().hex}fk_echo_{tag()}"  # a key no credential regex knows
    cid = svc.connections.create(caller(user), {
        "name": "echo", "provider": "custom", "credentials": {"api_key": key},
        "base_url": control.base_url_for("openai", fake_provider.base_url),
        "default_model": "gpt-4o"})["id"]
    with count_aws_calls() as calls:
        assert test_batch([message([cid])]) == {"batchItemFailures": []}
    got = read()
    assert kinds(got) == [("failure", cid)]
    assert "[REDACTED]" in json.loads(got[0]["Message"])["error_message"]
    assert key not in json.dumps(got)
    assert key not in json.dumps([p for s, _, p in calls.params if s == "sns"], default=str)


# --------------------------------------------------------------------------- subscriptions


def _sub_attrs(arn: str) -> dict[str, str]:
    import boto3

    return boto3.client("sns").get_subscription_attributes(SubscriptionArn=arn)["Attributes"]


def _arn_of(sub_id: str, owner: str) -> str:
    from chalicelib.data.models import SubscriptionModel

    return SubscriptionModel.get(owner, sub_id).subscription_arn


def test_subscriptions_filter_on_the_owner_and_stay_private(api):
    me, other = api, api.as_user(unique("other-"))

    # When a user subscribes an email address
    resp = me.post("/notifications/subscriptions", {"protocol": "email",
                                                    "endpoint": "a@example.com"})

    # Then it is created with a filter policy on the caller's owner
    assert resp.status_code == 201, resp.data
    sub = resp.data
    assert resp.headers["Location"] == f"/notifications/subscriptions/{sub['id']}"
    assert (sub["protocol"], sub["endpoint"], sub["scope"]) == ("email", "a@example.com",
                                                                "own")
    attrs = _sub_attrs(_arn_of(sub["id"], me.user))
    assert json.loads(attrs["FilterPolicy"]) == {"owner": [me.user]}
    assert attrs["Protocol"] == "email" and attrs["Endpoint"] == "a@example.com"

    # And another user's subscription is listed only for them
    theirs = other.post("/notifications/subscriptions", {"protocol": "email",
                                                         "endpoint": "b@example.com"})
    assert theirs.status_code == 201, theirs.data
    assert [s["id"] for s in me.get("/notifications/subscriptions").data["items"]] == [
        sub["id"]]
    assert [s["id"] for s in other.get("/notifications/subscriptions").data["items"]] == [
        theirs.data["id"]]

    # And nobody deletes another user's subscription
    their_arn = _arn_of(theirs.data["id"], other.user)
    assert me.delete(f"/notifications/subscriptions/{theirs.data['id']}").status_code == 404
    assert _sub_attrs(their_arn)["Endpoint"] == "b@example.com"

    # And deleting one's own removes it from the list and from SNS
    arn = _arn_of(sub["id"], me.user)
    assert me.delete(f"/notifications/subscriptions/{sub['id']}").status_code == 204
    assert me.get("/notifications/subscriptions").data["items"] == []
    with pytest.raises(ClientError):
        _sub_attrs(arn)
    assert me.delete(f"/notifications/subscriptions/{sub['id']}").status_code == 404
    assert other.delete(f"/notifications/subscriptions/{theirs.data['id']}").status_code == 204

    # And each change is audited, as is each refused delete (another user's, then a repeat)
    events = me.get("/audit").data["items"]
    assert sorted(e["action"] for e in events if e["outcome"] == "success") == [
        "subscription.create", "subscription.delete"]
    assert [e["action"] for e in events if e["outcome"] == "denied"] == [
        "subscription.delete"] * 2


def test_an_address_is_subscribed_once_per_user(api):
    body = {"protocol": "email", "endpoint": f"twice-{tag().lower()}@example.com"}
    first = api.post("/notifications/subscriptions", body)
    assert first.status_code == 201, first.data

    # SNS would hand back the same subscription: a second record would share it
    again = api.post("/notifications/subscriptions", body)
    assert again.status_code == 409, again.data
    assert again.data["error"]["field"] == "endpoint"
    assert [s["id"] for s in api.get("/notifications/subscriptions").data["items"]] == [
        first.data["id"]]
    arn = _arn_of(first.data["id"], api.user)
    assert _sub_attrs(arn)["Endpoint"] == body["endpoint"]
    assert api.delete(f"/notifications/subscriptions/{first.data['id']}").status_code == 204


def test_an_address_sns_refuses_is_400_naming_endpoint(api, monkeypatch):
    from chalicelib.data import aws

    # Real SNS refuses a Subscribe for an address subscribed with other attributes (another
    # user's filter policy); moto overwrites instead, so the refusal is played here.
    def refuse(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": "InvalidParameter", "Message": (
            "Invalid parameter: Attributes Reason: Subscription already exists with "
            "different attributes")}}, "Subscribe")

    monkeypatch.setattr(aws.client("sns"), "subscribe", refuse)
    resp = api.post("/notifications/subscriptions", {"protocol": "email",
                                                     "endpoint": "shared@example.com"})
    assert resp.status_code == 400, resp.data
    assert resp.data["error"]["field"] == "endpoint"
    assert api.get("/notifications/subscriptions").data["items"] == []


@pytest.mark.parametrize("endpoint", [
    "not-an-email", "a@b", "a@@example.com", " a@example.com", "a@example.com\n",
    "a b@example.com", "a@example..com", "@example.com", "a@-example.com",
    "x" * 250 + "@example.com", "", 42, None,
])
def test_invalid_email_endpoints_are_400_naming_endpoint(api, endpoint):
    resp = api.post("/notifications/subscriptions", {"protocol": "email",
                                                     "endpoint": endpoint})
    assert resp.status_code == 400, resp.data
    assert resp.data["error"]["field"] == "endpoint", resp.data
    assert api.get("/notifications/subscriptions").data["items"] == []


def test_other_bad_subscription_bodies_are_400(api):
    for body, field in (({"protocol": "sms", "endpoint": "+15555550100"}, "protocol"),
                        ({"endpoint": "a@example.com"}, "protocol"),
                        ({"protocol": "email", "endpoint": "a@example.com", "x": 1}, "x"),
                        ({"protocol": "email", "endpoint": "a@example.com",
                          "scope": "everyone"}, "scope")):
        resp = api.post("/notifications/subscriptions", body)
        assert resp.status_code == 400, (body, resp.data)
        assert resp.data["error"]["field"] == field, (body, resp.data)


def test_scope_all_is_for_admins_only_and_has_no_filter(api):
    body = {"protocol": "email", "endpoint": "ops@example.com", "scope": "all"}
    refused = api.post("/notifications/subscriptions", body)
    assert refused.status_code == 403, refused.data
    assert refused.data["error"]["field"] == "scope"
    assert api.get("/notifications/subscriptions").data["items"] == []

    admin = api.as_user(unique("admin-"), admin=True)
    made = admin.post("/notifications/subscriptions", body)
    assert made.status_code == 201, made.data
    assert made.data["scope"] == "all"
    attrs = _sub_attrs(_arn_of(made.data["id"], admin.user))
    assert "FilterPolicy" not in attrs
    assert admin.delete(f"/notifications/subscriptions/{made.data['id']}").status_code == 204


# --------------------------------------------------------------------------- metrics


def test_the_daily_run_emits_emf_metrics_and_run_summaries(svc, fake_provider, capsys,
                                                           private_dispatch):
    from chalicelib.observability import flush_metrics, metrics
    from chalicelib.services.common import utcnow

    user = unique("metrics-")
    ids = [make_conn(svc, fake_provider, user, d)[0] for d in (None, None, "401")]
    metrics.clear_metrics()
    capsys.readouterr()

    with app_logs_to_stdout():
        # The dispatcher: a summary line and the ConnectionsQueued metric
        records = private_dispatch(utcnow(), ids)
        flush_metrics()
        out = capsys.readouterr().out
        (dispatched,) = log_records(out, "daily run dispatched")
        assert dispatched["connections_queued"] >= 3 and dispatched["messages"] >= 1
        assert emf_metrics(out)["ConnectionsQueued"] == dispatched["connections_queued"]

        # The worker
        assert test_batch(records) == {"batchItemFailures": []}
        out = capsys.readouterr().out

    emitted = emf_metrics(out)
    assert emitted["ConnectionsTested"] == 3
    assert emitted["ConnectionsFailed"] == 1
    assert emitted["DailyProcessingErrors"] == 0
    docs = [d for d in _json_docs(out) if "ConnectionsTested" in d]
    assert docs and docs[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LLMConnections"
    (summary,) = log_records(out, "daily batch done")
    # (the three may have landed in different messages of the shared table's dispatch)
    assert (summary["tested"], summary["failed"], summary["skipped"], summary["messages"],
            summary["failed_messages"]) == (3, 1, 0, len(records), 0)
    assert summary["by_status"] == {"active": 2, "error": 1}
    assert summary["by_code"] == {"invalid_api_key": 1}
    assert summary["duration_ms"] >= 0


def _json_docs(text: str) -> list[dict[str, Any]]:
    from tests.support.capture import json_lines

    return json_lines(text)


def _last_seq(fake: Any) -> int:
    entries = control.requests(fake.base_url, limit=1)
    return int(entries[-1]["seq"]) if entries else 0
