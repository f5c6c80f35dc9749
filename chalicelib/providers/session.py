"""One test's or invoke's channel to a provider: budget, retries, guard, size cap, scrubbing.

Adapters make every provider call through a ``ProviderSession``; it runs each attempt inside
the remaining budget, retries what is retryable, classifies failures with the adapter's
classifier, records what the runner needs for the checks (did we connect, how fast, were the
credentials accepted, rate-limit headroom), and scrubs every error message it lets out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from chalicelib.providers.base import ProviderError, Target
from chalicelib.providers.classify import (
    ErrorResponse,
    Headroom,
    by_status,
    has_account_rate_headers,
    headroom,
)
from chalicelib.providers.netguard import BlockedURL, check_url
from chalicelib.providers.retry import Budget, Clock, with_retries
from chalicelib.providers.scrub import Scrubber

T = TypeVar("T")

MAX_RESPONSE_BYTES = 2 * 1024 * 1024

Classifier = Callable[[ErrorResponse], ProviderError]


@dataclass
class Observations:
    """What the session saw, for the runner's checks."""

    connected: bool | None = None  # None: no attempt got far enough to tell
    connect_ms: int | None = None  # TCP (+TLS) set-up time of the first new connection
    first_response_ms: int | None = None
    auth_proven: bool = False  # a call was accepted, or a 429 carried per-account headers
    headroom: Headroom | None = None  # the tightest rate-limit headroom seen on a success

    def saw_connect(self, ok: bool) -> None:
        if ok:
            self.connected = True
        elif self.connected is None:
            self.connected = False

    @property
    def connectivity_ms(self) -> int | None:
        return self.connect_ms if self.connect_ms is not None else self.first_response_ms


@dataclass(frozen=True)
class JsonResponse:
    status: int
    data: Any
    headers: Mapping[str, str]

    def header(self, *names: str) -> str | None:
        for name in names:
            value = self.headers.get(name)
            if value:
                return value
        return None


class _ConnectTrace:
    """httpcore trace hook: when a new connection's TCP (and TLS) set-up finished."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.started: float | None = None
        self.tcp_done: float | None = None
        self.tls_started = False
        self.tls_done: float | None = None

    async def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        now = self._clock.monotonic()
        if name == "connection.connect_tcp.started":
            self.started = now
        elif name == "connection.connect_tcp.complete":
            self.tcp_done = now
        elif name == "connection.start_tls.started":
            self.tls_started = True
        elif name == "connection.start_tls.complete":
            self.tls_done = now

    @property
    def connected(self) -> bool:
        return self.tcp_done is not None and (not self.tls_started or self.tls_done is not None)

    @property
    def connect_ms(self) -> int | None:
        done = self.tls_done or self.tcp_done
        if self.started is None or done is None or not self.connected:
            return None
        return round((done - self.started) * 1000)


def _timeout_error(budget: Budget) -> ProviderError:
    return ProviderError("timeout", f"The provider did not answer within {budget.total:g} s.")


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ProviderError:
    return ProviderError(
        "bad_response",
        f"The provider's answer is larger than {limit // 1024} KiB.",
        retryable=False,
    )


class ProviderSession:
    """Budgeted, retried, guarded provider calls for one test or invoke."""

    def __init__(self, target: Target, *, client: httpx.AsyncClient | None, clock: Clock) -> None:
        self.target = target
        self._client = client
        self.budget = Budget(target.timeout_seconds, clock)
        self.clock = clock
        self.scrub = Scrubber.for_credentials(target.credentials)
        self.obs = Observations()
        self.calls = 0
        self._last_error: ProviderError | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("this session has no HTTP client")
        return self._client

    def scrub_error(self, err: ProviderError) -> ProviderError:
        return err.with_message(self.scrub(err.message))

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt`` with retries inside the budget and the call cap; errors leave
        scrubbed."""

        async def counted() -> T:
            cap = self.target.max_calls
            if cap and self.calls >= cap:
                last = self._last_error
                raise ProviderError(
                    last.code if last else "bad_response",
                    (last.message if last else "The provider needed more requests than allowed.")
                    + f" (stopped after {cap} requests to the provider)",
                    http_status=last.http_status if last else None, retryable=False)
            self.calls += 1
            try:
                return await attempt()
            except ProviderError as err:
                self._last_error = err
                raise

        try:
            return await with_retries(
                counted, budget=self.budget, max_retries=self.target.max_retries,
                final_codes=self.target.final_codes,
            )
        except ProviderError as err:
            raise self.scrub_error(err) from None

    def check_url(self, url: str) -> None:
        try:
            check_url(url, allow_hosts=self.target.allow_hosts, allow_http=self.target.allow_http)
        except BlockedURL as exc:
            raise ProviderError("blocked_endpoint", str(exc)) from None

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        classify: Classifier,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        model_call: bool = False,
    ) -> JsonResponse:
        """One JSON API call (with retries); a 2xx JSON answer or a classified ProviderError."""
        self.check_url(url)
        all_headers = {"accept": "application/json", **(headers or {})}

        async def attempt() -> JsonResponse:
            return await self._attempt(
                method, url, all_headers, params, json_body, classify, model_call
            )

        return await self.run(attempt)

    async def open_stream(
        self,
        method: str,
        url: str,
        *,
        classify: Classifier,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
    ) -> httpx.Response:
        """A streamed model call: retried like any call until a 2xx answer's headers arrive,
        then handed over unread (``stream_lines``); nothing after the first byte is retried."""
        self.check_url(url)
        all_headers = {"accept": "text/event-stream", **(headers or {})}

        async def attempt() -> httpx.Response:
            response, content = await self._send(
                method, url, all_headers, params, json_body, keep_open=True
            )
            if content is None:
                self.obs.auth_proven = True
                self._note_headroom(response.headers)
                return response
            raise self._error(response, content, classify, model_call=True)

        return await self.run(attempt)

    async def stream_lines(self, response: httpx.Response) -> AsyncIterator[str]:
        """The lines of an opened stream, each read within the budget, the total capped."""
        size = 0
        lines = response.aiter_lines()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.budget.require()):
                        line = await anext(lines)
                except StopAsyncIteration:
                    return
                except (TimeoutError, httpx.TimeoutException):
                    raise _timeout_error(self.budget) from None
                except (httpx.NetworkError, httpx.ProtocolError, httpx.DecodingError) as exc:
                    raise ProviderError(
                        "network_error",
                        f"The provider's stream broke off: {_reason(exc)}",
                        retryable=False,
                    ) from None
                size += len(line) + 1
                if size > MAX_RESPONSE_BYTES:
                    raise _too_large(MAX_RESPONSE_BYTES)
                yield line
        finally:
            await response.aclose()

    async def _attempt(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str | int] | None,
        json_body: Any,
        classify: Classifier,
        model_call: bool,
    ) -> JsonResponse:
        response, content = await self._send(method, url, headers, params, json_body)
        assert content is not None  # only keep_open leaves a body unread
        return self._handle(response, content, classify, model_call)

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str | int] | None,
        json_body: Any,
        *,
        keep_open: bool = False,
    ) -> tuple[httpx.Response, bytes | None]:
        """One request; the body read and the response closed, except a 2xx with
        ``keep_open`` (a stream), whose body is left to the caller (``None``)."""
        timeout = self.budget.require()
        trace = _ConnectTrace(self.clock)
        try:
            request = self.client.build_request(
                method,
                url,
                headers=headers,
                params=params,
                json=json_body,
                timeout=httpx.Timeout(timeout),
                extensions={"trace": trace},
            )
        except httpx.InvalidURL:
            raise ProviderError("blocked_endpoint", "The URL is malformed.") from None
        started = self.clock.monotonic()
        # Did this attempt reach the provider? None when nothing tells (a pooled connection
        # that hung, or a mock transport).
        reached: bool | None = None
        broken = False  # connected, then the exchange broke before any answer
        try:
            async with asyncio.timeout(timeout):
                response = await self.client.send(request, stream=True, follow_redirects=False)
                reached = True
                if self.obs.first_response_ms is None:
                    self.obs.first_response_ms = round((self.clock.monotonic() - started) * 1000)
                content: bytes | None = None
                if not (keep_open and 200 <= response.status_code < 300):
                    try:
                        content = await _read_capped(response, MAX_RESPONSE_BYTES)
                    finally:
                        await response.aclose()
        except ProviderError as err:  # the guard refused the address
            reached = False if err.code == "blocked_endpoint" else reached
            raise
        except TimeoutError:
            if reached is None and trace.started is not None:
                reached = trace.connected
            raise _timeout_error(self.budget) from None
        except httpx.ConnectTimeout:
            reached = False
            raise ProviderError("timeout", "Timed out connecting to the provider.") from None
        except httpx.TimeoutException:
            reached = True
            raise _timeout_error(self.budget) from None
        except httpx.ConnectError as exc:
            reached = False
            raise ProviderError(
                "network_error", f"Could not connect to the provider: {_reason(exc)}"
            ) from None
        except (httpx.NetworkError, httpx.ProtocolError) as exc:
            # A connection reset or closed before any answer: the provider cannot be talked
            # to, whatever the TCP handshake did (connectivity fails with the error).
            reached, broken = False, True
            raise ProviderError(
                "network_error", f"The connection to the provider failed: {_reason(exc)}"
            ) from None
        except httpx.UnsupportedProtocol:
            reached = False
            raise ProviderError("blocked_endpoint", "Only https:// URLs are allowed.") from None
        except httpx.DecodingError:
            raise ProviderError(
                "bad_response", "The provider's answer could not be decoded.", retryable=False
            ) from None
        except httpx.TransportError as exc:
            raise ProviderError("network_error", f"The request failed: {_reason(exc)}") from None
        finally:
            if trace.connected and not broken:
                reached = True
            if reached is not None:
                self.obs.saw_connect(reached)
            if self.obs.connect_ms is None and trace.connect_ms is not None:
                self.obs.connect_ms = trace.connect_ms
        return response, content

    def note_failure(self, err: ProviderError) -> None:
        """Connectivity from an error whose cause the trace could not see (mock transports)."""
        if err.http_status is not None:
            self.obs.saw_connect(True)
        elif err.code in ("network_error", "blocked_endpoint"):
            self.obs.saw_connect(False)

    def _handle(
        self,
        response: httpx.Response,
        content: bytes,
        classify: Classifier,
        model_call: bool,
    ) -> JsonResponse:
        status = response.status_code
        if 200 <= status < 300:
            self.obs.auth_proven = True
            self._note_headroom(response.headers)
            try:
                data = json.loads(content)
            except ValueError:
                raise ProviderError(
                    "bad_response",
                    f"The provider answered HTTP {status} with a body that is not JSON.",
                    http_status=status,
                    retryable=False,
                ) from None
            return JsonResponse(status, data, response.headers)
        raise self._error(response, content, classify, model_call)

    def _error(
        self, response: httpx.Response, content: bytes, classify: Classifier, model_call: bool
    ) -> ProviderError:
        """The classified error of a non-2xx answer."""
        status = response.status_code
        try:
            body = json.loads(content) if content else None
        except ValueError:
            body = None
        resp = ErrorResponse(status, body, response.headers, model_call)
        if 300 <= status < 400:
            return by_status(resp)
        if status == 429 and has_account_rate_headers(response.headers):
            self.obs.auth_proven = True
        return classify(resp)

    def _note_headroom(self, headers: Mapping[str, str]) -> None:
        found = headroom(headers)
        current = self.obs.headroom
        if found is not None and (current is None or found.ratio < current.ratio):
            self.obs.headroom = found

    async def call_blocking(
        self, fn: Callable[[], T], *, classify: Callable[[Exception], ProviderError | None]
    ) -> T:
        """A blocking SDK call (boto3) in a thread, with the same budget and retries.

        ``classify`` maps the SDK's exceptions to ProviderError (None: not a provider failure,
        re-raised as is). A thread cannot be cancelled: on timeout the caller moves on and the
        thread ends with the SDK's own timeouts, which the adapter derives from the budget.
        """

        async def attempt() -> T:
            timeout = self.budget.require()
            started = self.clock.monotonic()
            try:
                async with asyncio.timeout(timeout):
                    result = await asyncio.to_thread(fn)
            except TimeoutError:
                raise _timeout_error(self.budget) from None
            except ProviderError:
                raise
            except Exception as exc:
                err = classify(exc)
                if err is None:
                    raise
                self.note_failure(err)
                if err.http_status is not None and self.obs.first_response_ms is None:
                    self.obs.first_response_ms = round((self.clock.monotonic() - started) * 1000)
                raise err from None
            self.obs.saw_connect(True)
            self.obs.auth_proven = True
            if self.obs.first_response_ms is None:
                self.obs.first_response_ms = round((self.clock.monotonic() - started) * 1000)
            return result

        return await self.run(attempt)


# What a network failure means, when the library's exception says nothing itself.
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ReadError, "the provider closed the connection without answering "
                      "(connection reset)"),
    (httpx.RemoteProtocolError, "the provider closed the connection without a valid answer"),
    (httpx.WriteError, "the connection broke while the request was being sent"),
    (httpx.ConnectError, "the provider did not accept the connection"),
    (httpx.ProxyError, "a proxy refused the connection"),
)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    if text:
        return text
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "the network connection failed"
