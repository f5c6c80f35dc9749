"""The HTTP server: routing to the provider emulations, fault injection and the control API.

Start it in-process with :func:`start_server` (background threads; ``port=0`` picks a free
port) or from the shell with ``python -m fakeprovider --host 127.0.0.1 --port N``.

Request flow for a provider path: find the provider by prefix, take the credential, record the
request, resolve the fault directive (``x-fake-fault`` header, else the control override for
the key, else ``fk_<directive>`` inside the key), count it, then: delay (``slow``/``lat``),
connection faults (``hang``, ``reset``, ``redirect``), missing credential, provider checks
(``anthropic-version``, SigV4), error faults, and finally the healthy answer (``badjson``
truncates it; ``404`` swaps the model catalog for legacy decoys).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import sys
import threading
import time
import traceback
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from fakeprovider.catalog import PREFIXES
from fakeprovider.faults import (
    Directive,
    DirectiveError,
    directive_from_key,
    parse_directive,
    plan_for,
)
from fakeprovider.providers import ERROR_FAULTS, Provider, provider_for
from fakeprovider.state import State, fingerprint, redact_header, redact_query
from fakeprovider.wire import Call, HTTPError, Request, Response, json_response

CONTROL_PREFIX = "/_control"
FAULT_HEADER = "x-fake-fault"
# The "other host" redirects point to. All of 127/8 is loopback on Linux; a second listener
# there records every client that follows a redirect.
REDIRECT_HOST = "127.0.0.2"
MAX_BODY = 32 * 1024 * 1024
_OK = parse_directive("ok")
_REASONS = {498: "Invalid Token", 529: "Site Overloaded"}


def _fake_error(status: int, message: str) -> Response:
    """An error of the fake itself (not a provider's): a bad directive, an unknown path."""
    return json_response(
        status,
        {"error": {"type": "fakeprovider_error", "message": message}},
        {"x-fakeprovider-error": "1"},
    )


class FakeProviderApp:
    """Everything but the sockets: shared by the main and the redirect listener."""

    def __init__(self, state: State, stopping: threading.Event, verbose: bool = False) -> None:
        self.state = state
        self.stopping = stopping
        self.verbose = verbose
        self.redirect_port = 0
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    # -- connections (so that stop() can unblock idle keep-alive readers) ------------------

    def track(self, sock: socket.socket) -> None:
        with self._conn_lock:
            self._connections.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        with self._conn_lock:
            self._connections.discard(sock)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._connections)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        if req.path == CONTROL_PREFIX or req.path.startswith(CONTROL_PREFIX + "/"):
            return self.control(req)
        provider = provider_for(req.path)
        if provider is None:
            if req.path in ("", "/"):
                return json_response(200, {"service": "fakeprovider", "prefixes": PREFIXES})
            return _fake_error(
                404, f"no provider is mounted at {req.path}; prefixes: {sorted(PREFIXES.values())}"
            )
        req.sub_path = req.path[len(provider.prefix) :] or "/"
        key = provider.credential(req)
        entry = self.state.record(
            {
                "time": time.time(),
                "provider": provider.name,
                "method": req.method,
                "path": req.path,
                "query": redact_query(req.query),
                "headers": {k.lower(): redact_header(k, v) for k, v in req.headers.items()},
                "body": req.json(),
                "key_fingerprint": fingerprint(key),
                "host": req.host,
                "redirect_followed": req.local_ip == REDIRECT_HOST,
                "directive": None,
                "fault": None,
                "status": None,
                "outcome": None,
            }
        )
        try:
            directive = self._directive(req, key)
        except DirectiveError as exc:
            entry.update(status=400, outcome="bad_directive")
            return _fake_error(400, str(exc))
        plan = plan_for(directive, self.state.next_count(key, directive))
        if entry["redirect_followed"] and plan.kind == "redirect":
            plan = replace(plan, fault=None)  # answer the follower, do not loop
        entry.update(directive=directive.text, fault=plan.kind)
        call = Call(req, key, plan)

        if plan.delay_ms and self.stopping.wait(plan.delay_ms / 1000):
            return self._outcome(entry, Response(0, action="close"))
        if plan.kind in ("hang", "reset"):
            return self._outcome(entry, Response(0, action=plan.kind))
        if plan.kind == "redirect":
            target = f"http://{REDIRECT_HOST}:{self.redirect_port}{req.raw_path}"
            if req.raw_query:
                target += f"?{req.raw_query}"
            resp = Response(302, b"", {"Location": target, "Content-Type": "text/plain"})
            return self._outcome(entry, provider.finalize(call, resp))

        if not key:
            resp = provider.error("missing_key", call)
        else:
            resp = provider.preflight(call) or self._answer(provider, call)
        if plan.kind == "badjson" and resp.status == 200:
            resp.body = resp.body[: max(1, len(resp.body) // 2)]
        return self._outcome(entry, provider.finalize(call, resp))

    @staticmethod
    def _answer(provider: Provider, call: Call) -> Response:
        if call.plan.kind in ERROR_FAULTS:
            return provider.fault(call.plan.kind, call)
        try:
            return provider.route(call)
        except HTTPError as exc:
            return exc.response

    def _directive(self, req: Request, key: str | None) -> Directive:
        header = req.header(FAULT_HEADER)
        if header:
            return parse_directive(header)
        override = self.state.override_for(key)
        if override is not None:
            return override
        text = directive_from_key(key)
        return parse_directive(text) if text else _OK

    @staticmethod
    def _outcome(entry: dict[str, Any], resp: Response) -> Response:
        entry["status"] = resp.status if resp.action is None else None
        entry["outcome"] = resp.action or "response"
        return resp

    # -- control API -----------------------------------------------------------------------

    def control(self, req: Request) -> Response:
        path = req.path[len(CONTROL_PREFIX) :].rstrip("/") or "/"
        if req.method == "GET" and path == "/health":
            return json_response(200, {"status": "ok", "redirect_port": self.redirect_port})
        if req.method == "POST" and path == "/reset":
            self.state.reset()
            return json_response(200, {"reset": True})
        if req.method == "GET" and path == "/requests":
            return self._control_requests(req)
        if req.method == "GET" and path == "/keys":
            return json_response(200, {"overrides": self.state.overrides()})
        if path.startswith("/keys/") and len(path) > len("/keys/"):
            key = path[len("/keys/") :]
            if req.method == "PUT":
                body = req.json()
                fault = body.get("fault") if isinstance(body, dict) else None
                if not isinstance(fault, str):
                    return _fake_error(400, 'body must be {"fault": "<directive>"}')
                try:
                    directive = self.state.set_override(key, fault)
                except DirectiveError as exc:
                    return _fake_error(400, str(exc))
                return json_response(
                    200, {"key_fingerprint": fingerprint(key), "fault": directive.text}
                )
            if req.method == "DELETE":
                return json_response(200, {"deleted": self.state.clear_override(key)})
        return _fake_error(404, f"unknown control endpoint {req.method} {req.path}")

    def _control_requests(self, req: Request) -> Response:
        q = req.query
        try:
            limit = int(q["limit"]) if q.get("limit") else None
            since = int(q["since"]) if q.get("since") else None
        except ValueError:
            return _fake_error(400, "limit and since must be integers")
        entries = self.state.requests(
            provider=q.get("provider") or None,
            limit=limit,
            fingerprint_=q.get("fingerprint") or None,
            since=since,
        )
        return json_response(
            200,
            {
                "requests": entries,
                "count": len(entries),
                "redirects_followed": self.state.redirects_followed(),
            },
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeprovider/1.0"
    sys_version = ""
    timeout = 300  # idle keep-alive connections eventually go away
    server: _HTTPServer

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms
        # to every keep-alive request, which would swamp the lat<ms> benchmarks.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.app.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.app.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.app.verbose:
            sys.stderr.write(f"fakeprovider {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        app = self.server.app
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send(_fake_error(400, f"unreadable request body: {exc}"))
            return
        split = urlsplit(self.path)
        req = Request(
            method=self.command,
            raw_path=split.path,
            path=unquote(split.path),
            raw_query=split.query,
            query=dict(reversed(parse_qsl(split.query, keep_blank_values=True))),
            headers=self.headers,
            body=body,
            host=self.headers.get("Host", ""),
            local_ip=self.connection.getsockname()[0],
        )
        try:
            resp = app.handle(req)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake: say so, keep serving
            traceback.print_exc(file=sys.stderr)
            resp = _fake_error(500, f"fakeprovider bug: {exc!r}")
        if resp.action == "hang":
            self._hang()
        elif resp.action == "reset":
            self._reset()
        elif resp.action == "close":
            self.close_connection = True
        else:
            self._send(resp)

    def _send(self, resp: Response) -> None:
        self.send_response(resp.status, _REASONS.get(resp.status))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and resp.body:
            self.wfile.write(resp.body)

    def _hang(self) -> None:
        """Never answer: wait until the client closes the connection or the server stops."""
        self.close_connection = True
        sock = self.connection
        stopping = self.server.app.stopping
        while not stopping.is_set():
            try:
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable and not sock.recv(1, socket.MSG_PEEK):
                    return  # the client gave up
            except (OSError, ValueError):
                return
            if readable:
                stopping.wait(0.05)  # pipelined bytes we will never read; do not spin

    def _reset(self) -> None:
        """Abort the connection with a TCP RST and no response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The fd only closes once the makefile() readers are gone.
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            self.connection.close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: FakeProviderApp) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients vanishing mid-answer (timeouts, resets) are normal here.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return
        super().handle_error(request, client_address)


class FakeProviderServer:
    """A running fake provider; ``stop()`` (or leaving the ``with`` block) shuts it down."""

    def __init__(self, app: FakeProviderApp, servers: list[_HTTPServer], host: str) -> None:
        self.app = app
        self.state = app.state
        self._servers = servers
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self.host = host
        self.port: int = servers[0].server_address[1]
        self.redirect_port = app.redirect_port
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.base_url = f"http://{shown}:{self.port}"

    def _start(self) -> None:
        for i, srv in enumerate(self._servers):
            t = threading.Thread(
                target=srv.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"fakeprovider-{i}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)

    def url(self, adapter: str) -> str:
        """The base URL of ``adapter`` (``openai``, ``bedrock``...) on this server."""
        from fakeprovider.catalog import base_url_for

        return base_url_for(adapter, self.base_url)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.app.stopping.set()  # releases hang/slow handlers
        for srv in self._servers:
            srv.shutdown()
        self.app.close_connections()
        for srv in self._servers:
            srv.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> FakeProviderServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    verbose: bool = False,
    redirect_listener: bool = True,
) -> FakeProviderServer:
    """Start the fake in background threads and return it (``port=0``: any free port).

    With ``redirect_listener`` a second listener on 127.0.0.2 (same port when free) receives
    the requests of clients that follow a ``redirect`` fault, and flags them in the request
    log (``redirect_followed``).
    """
    app = FakeProviderApp(State(), threading.Event(), verbose=verbose)
    main = _HTTPServer((host, port), app)
    servers = [main]
    app.redirect_port = main.server_address[1]
    if redirect_listener and host not in ("", "0.0.0.0"):
        for alt_port in (main.server_address[1], 0):
            try:
                alt = _HTTPServer((REDIRECT_HOST, alt_port), app)
            except OSError:
                continue
            servers.append(alt)
            app.redirect_port = alt.server_address[1]
            break
    server = FakeProviderServer(app, servers, host)
    server._start()
    return server
