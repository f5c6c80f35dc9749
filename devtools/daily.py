"""`make daily`: run the daily dispatcher and the queue workers against the running local
stack (draining the local work queue), then print a summary. `make alerts`: print the alerts
that reached the local inbox (the SQS stand-in for email), one line per alert."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from typing import Any

from devtools import localenv, localstack


def _stack_env(aws_port: int | None) -> dict[str, str]:
    fake_port: int | None = None
    if aws_port is None:
        run_file = localenv.state_dir() / "run.json"
        if not run_file.exists():
            sys.exit("the local stack is not running: start it with `make run`")
        running = json.loads(run_file.read_text())
        aws_port = int(running["aws"].rsplit(":", 1)[1])
        # The same allowlist as the running stack: its fake providers' port only.
        fake_port = int(running["fake"].rsplit(":", 1)[1]) if running.get("fake") else None
    env = localenv.environment(aws_port, fake_port=fake_port)
    localstack.apply_env(env)
    return env


def queue_url(name: str) -> str:
    import boto3

    return str(boto3.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def feed_once(sqs: Any, url: str, wait_seconds: int = 1) -> tuple[int, int]:
    """One receive of up to 10 messages handed to the worker handler, as Lambda's event
    source mapping does: (messages, failed ones). A failed message is released at once
    (Lambda would wait for the visibility timeout); after the configured receives SQS moves it
    to the dead-letter queue."""
    from chalicelib.api import events

    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                               WaitTimeSeconds=wait_seconds,
                               AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
    if not msgs:
        return 0, 0
    result = events.test_batch([(m["MessageId"], m["Body"]) for m in msgs])
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    for m in msgs:
        if m["MessageId"] in failed:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"],
                                          VisibilityTimeout=0)
        else:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return len(msgs), len(failed)


def drain(max_rounds: int = 10_000) -> dict[str, Any]:
    """Feed the work queue to the worker handler until it is empty, like Lambda would."""
    import boto3

    sqs = boto3.client("sqs")
    url = queue_url(localenv.WORK_QUEUE)
    batches = failed_messages = 0
    for _ in range(max_rounds):
        got, failed = feed_once(sqs, url)
        if not got:
            break
        batches += 1
        failed_messages += failed
    dlq = sqs.get_queue_attributes(QueueUrl=queue_url(localenv.DEAD_LETTER_QUEUE),
                                   AttributeNames=["ApproximateNumberOfMessages"])
    return {"batches": batches, "failed_deliveries": failed_messages,
            "dead_letter_messages": int(dlq["Attributes"]["ApproximateNumberOfMessages"])}


def daily(now: Any = None) -> dict[str, Any]:
    """One daily run against the stack whose environment is already applied."""
    from chalicelib.api.deps import services

    started = time.monotonic()
    alerts_before = services().alerts.published
    _RESULTS.clear()
    # Same dispatcher as the scheduled Lambda; ``now`` lets a test play "tomorrow".
    dispatched = services().daily.dispatch(now)
    drained = drain()
    summary = {
        **dispatched, **drained,
        "alerts_sent": services().alerts.published - alerts_before,
        "alert_failures": services().alerts.failed,
        "results": dict(_RESULTS),
        "duration_s": round(time.monotonic() - started, 2),
    }
    return summary


_RESULTS: Counter[str] = Counter()
# A file in the stack's state folder: while it exists, the stack's worker receives nothing.
WORKER_PAUSE = "worker.pause"
# Longer than one receive's wait (1 s): a receive begun before the pause has ended.
PAUSE_SETTLE_SECONDS = 1.5


def _count_results() -> None:
    """Tally the daily results as the worker records them (for the printed summary)."""
    from chalicelib.api.deps import services

    testing = services().testing
    original = testing.record

    def record(item: Any, result: dict[str, Any], **kwargs: Any) -> None:
        original(item, result, **kwargs)
        code = (result.get("error") or {}).get("code")
        _RESULTS[result["status"] + (f":{code}" if code else "")] += 1

    testing.record = record  # type: ignore[method-assign]


def alerts(aws_port: int | None) -> list[str]:
    import boto3

    _stack_env(aws_port)
    sqs = boto3.client("sqs")
    url = queue_url(localenv.INBOX_QUEUE)
    log = localenv.state_dir() / "alerts.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            break
        with log.open("a") as fh:
            for m in msgs:
                envelope = json.loads(m["Body"])
                attrs = {k: v.get("Value") for k, v in
                         envelope.get("MessageAttributes", {}).items()}
                fh.write(json.dumps({"at": envelope.get("Timestamp"),
                                     "subject": envelope.get("Subject"),
                                     "attributes": attrs,
                                     "message": envelope.get("Message")}) + "\n")
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    lines = []
    if log.exists():
        for raw in log.read_text().splitlines():
            a = json.loads(raw)
            at = a["attributes"]
            lines.append(f"{a['at']}  {at.get('kind', '?'):9} {at.get('connection_id')}  "
                         f"status={at.get('status')}  error_code={at.get('error_code')}  "
                         f"owner={at.get('owner')}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["daily", "alerts"])
    parser.add_argument("--aws-port", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--now", default=None,
                        help="ISO time to run as (simulates another day; default: now)")
    args = parser.parse_args()
    if args.command == "daily":
        _stack_env(args.aws_port)
        _count_results()
        # The stack's own queue worker (devtools.worker) pauses while this run drains the
        # queue itself, so every message of the run is handled here, on this run's clock.
        pause = localenv.state_dir() / WORKER_PAUSE
        pause.parent.mkdir(parents=True, exist_ok=True)
        pause.touch()
        time.sleep(PAUSE_SETTLE_SECONDS)
        from chalicelib.services.common import parse_iso

        if args.now:
            from chalicelib.services.common import set_now

            # Everything in this process (dispatch, worker, alerts) reads this clock.
            set_now(parse_iso(args.now))
        try:
            summary = daily(None)
        finally:
            pause.unlink(missing_ok=True)
        if args.json:
            print(json.dumps(summary))
        else:
            print(f"daily run {summary['run_date']}: {summary['connections_queued']} due, "
                  f"{summary['messages']} messages, {summary['batches']} worker batches, "
                  f"{summary['duration_s']} s")
            for key, n in sorted(summary["results"].items()):
                print(f"  {key:40} {n}")
            print(f"  alerts sent {summary['alerts_sent']}, alert failures "
                  f"{summary['alert_failures']}, failed deliveries "
                  f"{summary['failed_deliveries']}, dead-letter queue "
                  f"{summary['dead_letter_messages']}")
    else:
        lines = alerts(args.aws_port)
        print("\n".join(lines) if lines else "no alerts yet")


if __name__ == "__main__":
    main()
