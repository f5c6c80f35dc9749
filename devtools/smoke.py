"""`make smoke URL=<api base url> TOKEN=<bearer token>`: a short end-to-end check of any
deployed (or local) API: health, create a connection, test it, delete it.

Standard library only. The connection targets the fake providers when their URL is known
(``--provider-base-url``, ``FAKE_PROVIDER_URL``, or the local stack's ``.local/run.json``): a
custom OpenAI-compatible connection whose test succeeds. Otherwise an OpenAI connection with a
dummy key, whose test reports an error: smoke checks that the API works, not a key.

Against the local stack, TOKEN may be omitted: a local token is minted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN_FILE = ROOT / ".local" / "run.json"
FAKE_KEY = "fk_ok_smoke_key_123456"
DUMMY_OPENAI_KEY = "sk-smoke-not-a-real-key-000000000000"
TIMEOUT = 60.0


class SmokeFailed(Exception):
    pass


class Api:
    def __init__(self, base_url: str, token: str | None) -> None:
        self.base = base_url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None, auth: bool = True
             ) -> tuple[int, dict[str, str], Any]:
        data = json.dumps(body).encode() if body is not None else None
        h = {"accept": "application/json", **(headers or {})}
        if data is not None:
            h["content-type"] = "application/json"
        if auth and self.token:
            h["authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                raw = resp.read()
                status, resp_headers = resp.status, dict(resp.headers)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            status, resp_headers = exc.code, dict(exc.headers)
        except (urllib.error.URLError, TimeoutError) as exc:
            raise SmokeFailed(f"{method} {path}: {exc}") from None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")[:200]
        return status, resp_headers, payload


def _local_run() -> dict[str, Any]:
    try:
        return dict(json.loads(RUN_FILE.read_text()))
    except (OSError, ValueError):
        return {}


def _fake_url(explicit: str | None, api_url: str) -> str | None:
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("FAKE_PROVIDER_URL"):
        return os.environ["FAKE_PROVIDER_URL"].rstrip("/")
    run = _local_run()
    if run.get("fake") and run.get("api", "").rstrip("/") == api_url.rstrip("/"):
        return str(run["fake"]).rstrip("/")
    return None


def _token(explicit: str | None, api_url: str) -> str | None:
    if explicit:
        return explicit
    if _local_run().get("api", "").rstrip("/") == api_url.rstrip("/"):
        from devtools.token import make_token

        return make_token(f"smoke-{uuid.uuid4().hex[:8]}", ttl=600)
    return None


def connection_body(fake: str | None) -> dict[str, Any]:
    name = f"smoke {time.strftime('%Y-%m-%d %H:%M:%S')} {uuid.uuid4().hex[:6]}"
    if fake:
        return {"name": name, "provider": "custom", "base_url": f"{fake}/openai/v1",
                "credentials": {"api_key": FAKE_KEY}, "default_model": "gpt-4o-mini"}
    return {"name": name, "provider": "openai", "credentials": {"api_key": DUMMY_OPENAI_KEY},
            "default_model": "gpt-4o-mini"}


def run(api: Api, fake: str | None, log: Any = print) -> None:
    """Health, create, test, delete; raise SmokeFailed at the first broken step."""

    def step(name: str, expect: tuple[int, ...], method: str, path: str, body: Any = None,
             **kw: Any) -> tuple[dict[str, str], Any]:
        started = time.perf_counter()
        status, headers, payload = api.call(method, path, body, **kw)
        ms = round((time.perf_counter() - started) * 1000)
        if status not in expect:
            detail = payload.get("error") if isinstance(payload, dict) else payload
            raise SmokeFailed(f"{name}: {method} {path} answered {status}, expected "
                              f"{'/'.join(map(str, expect))}: {detail}")
        log(f"ok    {name:<7} {method} {path} -> {status} ({ms} ms)")
        return headers, payload

    _, health = step("health", (200,), "GET", "/health", auth=False)
    if not isinstance(health, dict) or health.get("status") != "ok":
        raise SmokeFailed(f"health: the service reports {health}")
    if not api.token:
        raise SmokeFailed("create: no TOKEN given (and the URL is not the local stack's)")
    log(f"      target: {'fake provider ' + fake if fake else 'openai with a dummy key'}")
    headers, created = step("create", (201,), "POST", "/connections", connection_body(fake))
    cid = created["id"]
    etag = {k.lower(): v for k, v in headers.items()}.get("etag", "*")
    try:
        _, result = step("test", (200,), "POST", f"/connections/{cid}/test")
        status = result.get("status") if isinstance(result, dict) else None
        code = ((result or {}).get("error") or {}).get("code") if isinstance(result, dict) \
            else None
        log(f"      test result: {status}{f' ({code})' if code else ''}")
        if status not in ("active", "warning", "error"):
            raise SmokeFailed(f"test: no test status in the answer: {result}")
        if fake and status == "error":
            raise SmokeFailed(f"test: the fake provider's connection failed: {code}")
    finally:
        step("delete", (204,), "DELETE", f"/connections/{cid}", headers={"If-Match": etag})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the API's base URL")
    parser.add_argument("--token", default=os.environ.get("TOKEN") or None,
                        help="bearer token (default: env TOKEN)")
    parser.add_argument("--provider-base-url", default=None,
                        help="fake providers' URL (default: env FAKE_PROVIDER_URL or the "
                             "local stack's)")
    args = parser.parse_args()
    started = time.monotonic()
    api = Api(args.url, _token(args.token, args.url))
    try:
        run(api, _fake_url(args.provider_base_url, args.url))
    except SmokeFailed as exc:
        print(f"FAIL  {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"smoke passed against {args.url} in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
