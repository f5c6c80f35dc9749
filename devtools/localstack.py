"""The local stack: moto's server as AWS on loopback, the resources the code uses, the fake
providers, and `chalice local`. Used by `make run` and by the end-to-end tests.

Everything is created from the code's own definitions (PynamoDB models, the seed catalogue,
``devtools.localenv``) and every step is idempotent, so it can run against a fresh or a
running emulator.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

from devtools import localenv

ROOT = localenv.ROOT


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s: {last}")


def apply_env(env: dict[str, str]) -> None:
    os.environ.update(env)
    # Anything cached from an earlier environment must go.
    from chalicelib.api import deps

    deps.reset()


def bootstrap(env: dict[str, str], *, log: Any = print) -> dict[str, str]:
    """Create tables, KMS key and alias, topic, queues; seed providers. Idempotent."""
    apply_env(env)
    import boto3

    from chalicelib.data.models import ALL_MODELS, bind_models
    from chalicelib.settings import get_settings

    settings = get_settings()
    bind_models(settings)
    for model in ALL_MODELS:
        if not model.exists():
            # TTL is a nicety locally (the stack template sets it in AWS); an emulator
            # without UpdateTimeToLive must still get the table.
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=True,
                               ignore_update_ttl_errors=True)
            log(f"  table {model.Meta.table_name}")
    kms = boto3.client("kms")
    try:
        kms.describe_key(KeyId=localenv.KMS_ALIAS)
    except kms.exceptions.NotFoundException:
        key_id = kms.create_key(Description="llm-connections local envelope key",
                                KeySpec="SYMMETRIC_DEFAULT",
                                KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=localenv.KMS_ALIAS, TargetKeyId=key_id)
        log(f"  kms key {localenv.KMS_ALIAS}")
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(QueueName=localenv.DEAD_LETTER_QUEUE)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sqs.create_queue(QueueName=localenv.WORK_QUEUE, Attributes={
        "VisibilityTimeout": "960",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(localenv.MAX_RECEIVES)}),
    })
    inbox_url = sqs.create_queue(QueueName=localenv.INBOX_QUEUE)["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns = boto3.client("sns")
    topic_arn = sns.create_topic(Name=localenv.TOPIC_NAME)["TopicArn"]
    subs = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    if not any(s["Endpoint"] == inbox_arn for s in subs):
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=inbox_arn)
        log(f"  inbox {localenv.INBOX_QUEUE} subscribed to {localenv.TOPIC_NAME}")
    from chalicelib.api.deps import services
    from chalicelib.services.catalogue import SEED_PROVIDERS

    added = services().providers.seed(SEED_PROVIDERS)
    if added:
        log(f"  seeded {added} providers")
    return env


def start_moto(port: int) -> Any:
    from devtools.emulator import Emulator

    server = Emulator("127.0.0.1", port).start()
    wait_http(f"http://127.0.0.1:{port}/moto-api/")
    return server


def start_fake(port: int) -> Any:
    from fakeprovider.server import start_server

    return start_server(host="127.0.0.1", port=port)


def chalice_command(port: int) -> list[str]:
    # `chalice local`, through a launcher that answers unknown paths in our error shape.
    return [sys.executable, "-m", "devtools.serve", "local", "--stage", "local",
            "--host", "127.0.0.1", "--port", str(port), "--no-autoreload"]


def start_api(env: dict[str, str], port: int, *, quiet: bool = False) -> subprocess.Popen[bytes]:
    out = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(
        chalice_command(port), cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out,
        start_new_session=True,
    )
    wait_http(f"http://127.0.0.1:{port}/health", timeout=90)
    return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


def run(api_port: int, aws_port: int, fake_port: int) -> None:
    from devtools.token import ensure_keys

    for name, port in (("API", api_port), ("AWS emulator", aws_port), ("fake providers",
                                                                       fake_port)):
        if port_in_use(port):
            sys.exit(f"port {port} ({name}) is already in use: is another `make run` running?")
    ensure_keys()
    env = localenv.environment(aws_port, fake_port=fake_port)
    env["FAKE_PROVIDER_URL"] = f"http://127.0.0.1:{fake_port}"
    print(f"starting the AWS emulator (moto) on http://127.0.0.1:{aws_port}", flush=True)
    moto = start_moto(aws_port)
    fake = start_fake(fake_port)
    print(f"fake providers on http://127.0.0.1:{fake_port}", flush=True)
    bootstrap(env, log=lambda m: print(m, flush=True))
    state = localenv.state_dir()
    state.mkdir(parents=True, exist_ok=True)
    # This stack's alerts only: `make alerts` keeps a log of what it read from the inbox.
    (state / "alerts.jsonl").unlink(missing_ok=True)
    (state / "worker.pause").unlink(missing_ok=True)
    (state / "run.json").write_text(json.dumps(
        {"api": f"http://127.0.0.1:{api_port}", "aws": env["AWS_ENDPOINT_URL"],
         "fake": env["FAKE_PROVIDER_URL"], "pid": os.getpid()}))
    api = start_api(env, api_port)
    # The queue's consumer, as Lambda's event source mapping is in the cloud.
    worker = subprocess.Popen(
        [sys.executable, "-m", "devtools.worker", "--aws-port", str(aws_port),
         "--fake-port", str(fake_port)], cwd=ROOT, env={**os.environ, **env},
        start_new_session=True)
    print(
        f"\nLLM Connections API on http://127.0.0.1:{api_port}  (Ctrl-C stops everything)\n"
        f"  health:  curl http://127.0.0.1:{api_port}/health\n"
        f"  a token: make token AS=alice        (ADMIN=1 for an admin)\n"
        f"  fake providers for testing connections: {env['FAKE_PROVIDER_URL']}\n",
        flush=True,
    )

    def _stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        while api.poll() is None:
            time.sleep(0.5)
        print("chalice local exited", flush=True)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        stop_process(api)
        stop_process(worker)
        fake.stop()
        moto.stop()
        (localenv.state_dir() / "run.json").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--port", type=int, default=8000)
    r.add_argument("--aws-port", type=int, default=4566)
    r.add_argument("--fake-port", type=int, default=8900)
    b = sub.add_parser("bootstrap", help="create resources on a running emulator")
    b.add_argument("--aws-port", type=int, default=4566)
    args = parser.parse_args()
    if args.cmd == "run":
        run(args.port, args.aws_port, args.fake_port)
    else:
        bootstrap(localenv.environment(args.aws_port))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
