"""The local stand-in for the work queue's Lambda event source mapping: `make run` starts it
to feed the queue to the worker handler as messages arrive (background tests, incident
retests, digests). `make daily` pauses it while it drains a run itself (a file in the stack's
state folder), so a run played on another day (``NOW=``) is handled on that day's clock."""

from __future__ import annotations

import argparse
import json
import time

from devtools import localenv, localstack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--aws-port", type=int, required=True)
    parser.add_argument("--fake-port", type=int, default=None)
    args = parser.parse_args()
    localstack.apply_env(localenv.environment(args.aws_port, fake_port=args.fake_port))

    import boto3

    from devtools.daily import WORKER_PAUSE, feed_once, queue_url

    sqs = boto3.client("sqs")
    url = queue_url(localenv.WORK_QUEUE)
    pause = localenv.state_dir() / WORKER_PAUSE
    while True:
        if pause.exists():
            time.sleep(0.2)
            continue
        try:
            feed_once(sqs, url)
        except Exception as exc:  # noqa: BLE001 - keep serving; say what happened
            print(json.dumps({"worker": "receive failed", "error": str(exc)[:300]}), flush=True)
            time.sleep(1)


if __name__ == "__main__":
    main()
