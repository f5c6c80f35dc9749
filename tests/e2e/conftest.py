"""The end-to-end tier: the real `make run` stack (moto server, fake providers, `chalice
local`) started exactly as `make run` starts it, on free ports, driven over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devtools import localenv, localstack
from devtools.token import make_token


@dataclass
class Stack:
    api: str
    aws_port: int
    fake: str
    proc: subprocess.Popen[bytes]
    state: str = ""  # the stack's own state folder (never the checkout's .local)

    def client(self, user: str, *, admin: bool = False) -> httpx.Client:
        token = make_token(user, admin=admin)
        return httpx.Client(base_url=self.api, headers={"authorization": f"Bearer {token}"},
                            timeout=60, trust_env=False)

    def run_tool(self, *args: str) -> str:
        """Run a devtools command against this stack (what `make daily` etc. run)."""
        env = {**localenv.caller_environment(), localenv.STATE_DIR_ENV: self.state}
        out = subprocess.run(
            [sys.executable, "-m", *args, "--aws-port", str(self.aws_port)],
            cwd=localenv.ROOT, env=env, capture_output=True, text=True, timeout=600,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    api_port, aws_port, fake_port = (localstack.free_port() for _ in range(3))
    state = tmp_path_factory.mktemp("state")
    # Its run.json and alerts log go there: a `make run` in this checkout keeps its own.
    env = {**localenv.caller_environment(), localenv.STATE_DIR_ENV: str(state)}
    # The stack logs every request: into a file, never a pipe nobody reads (a full pipe
    # blocks the server's next write, and the whole stack with it).
    log_path = tmp_path_factory.mktemp("stack") / "stack.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.localstack", "run", "--port", str(api_port),
         "--aws-port", str(aws_port), "--fake-port", str(fake_port)],
        cwd=localenv.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        localstack.wait_http(f"http://127.0.0.1:{api_port}/health", timeout=120)
    except RuntimeError:
        os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        out = log_path.read_text(errors="replace")
        raise RuntimeError(f"stack did not start:\n{out[-4000:]}") from None
    yield Stack(f"http://127.0.0.1:{api_port}", aws_port, f"http://127.0.0.1:{fake_port}",
                proc, str(state))
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def fake_control(stack: Stack, method: str, path: str, body: Any = None) -> Any:
    resp = httpx.request(method, f"{stack.fake}/_control{path}", json=body, timeout=10,
                         trust_env=False)
    resp.raise_for_status()
    return resp.json() if resp.content else None


def dump(resp: httpx.Response) -> str:
    try:
        return json.dumps(resp.json())[:2000]
    except ValueError:
        return resp.text[:2000]
