"""`import app` opens no socket and creates no AWS client (cold starts stay cheap and tests
can set up the emulator before any client exists)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import socket, sys
import botocore.session, botocore.client
opened = []
def no_socket(*a, **k):
    opened.append("socket")
    raise AssertionError("network I/O at import time")
socket.socket.connect = no_socket
socket.create_connection = no_socket
clients = []
orig = botocore.session.Session.create_client
def spy(self, *a, **k):
    clients.append(a[0] if a else k.get("service_name"))
    return orig(self, *a, **k)
botocore.session.Session.create_client = spy
import app
assert app.app.routes, "no routes registered"
print("sockets", len(opened), "clients", len(clients))
"""


def test_import_app_does_no_network_io_and_creates_no_aws_client():
    # Given an environment without any AWS settings / When the app module is imported
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    # Then it imported, with no socket opened and no client made
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "sockets 0 clients 0"


def test_app_never_runs_in_debug_mode():
    # Chalice debug mode returns stack traces to clients; no stage may have it.
    from app import app

    assert app.debug is False


def test_a_failed_dispatch_counts_daily_run_failed(monkeypatch, capsys):
    # Given a dispatcher that cannot reach its queue
    from chalicelib.api import deps, events

    class Broken:
        def dispatch(self):
            raise RuntimeError("queue unreachable")

    class Wired:
        daily = Broken()

    monkeypatch.setattr(deps, "services", lambda: Wired())
    # When the schedule fires / Then it fails loudly and the alarm's metric is emitted
    with pytest.raises(RuntimeError):
        events.run_daily()
    assert '"DailyRunFailed":[1.0]' in capsys.readouterr().out.replace(" ", "")
