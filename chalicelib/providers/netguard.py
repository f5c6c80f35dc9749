"""Outbound safety: which URLs and addresses the service may call on a user's behalf.

Two layers:

* ``check_url`` runs when a connection is saved (and before every test). It looks at the URL
  only: scheme, userinfo, host, literal IP addresses in every spelling ``inet_aton`` accepts.
  It never resolves DNS: a host that does not resolve today is no reason to refuse a save.
* ``GuardedTransport`` runs at connect time. It resolves the host itself, refuses the request
  if ANY resolved address is blocked, and connects to the vetted address (the URL host is
  rewritten to the IP; the Host header and the TLS server name stay the real host name), so a
  DNS answer that changes between check and connect (rebinding) cannot reach a blocked address.

``allow_hosts`` exempts host names or IPs listed literally, on any port (``127.0.0.1``) or on
one port only (``127.0.0.1:8900``, ``[::1]:8900``): `make run` lists the fake provider's host
and port, so neither the emulated AWS nor the API itself can be reached through a connection.
``localhost`` or ``0x7f000001`` are not "127.0.0.1".
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import httpx

from chalicelib.providers.base import ProviderError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class BlockedURL(ValueError):
    """The URL may not be called; the message is safe to show the user."""


_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_BLOCKED_NAMES = frozenset({"localhost", "metadata.google.internal", "metadata.goog"})
# Every all-numeric host spelling inet_aton accepts: 1 to 4 parts, decimal, octal or hex.
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?", re.I)
_BAD_HOST_CHARS = re.compile(r"[\s%/\\@#?\x00-\x1f\x7f]")


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo)."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]  # the client address, already de-obfuscated
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    as_int = int(addr)
    if 1 < as_int < 2**32:  # deprecated IPv4-compatible ::a.b.c.d (:: and ::1 excluded)
        return ipaddress.IPv4Address(as_int)
    return None


def blocked_reason(addr: IPAddress) -> str | None:
    """Why ``addr`` may not be called, or None when it is a public unicast address."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            addr = ipaddress.IPv6Address(str(addr).split("%", 1)[0])
        embedded = _embedded_ipv4(addr)
        if embedded is not None:
            reason = blocked_reason(embedded)
            if reason is not None:
                return f"{reason} (embedded in an IPv6 address)"
            if addr.ipv4_mapped is not None or addr.sixtofour is not None or addr in _NAT64:
                return None  # these reach the public IPv4 address they carry
        if addr in _NAT64_LOCAL:
            return "private network address"
    if addr in _METADATA:
        return "cloud metadata address"
    if addr.is_unspecified:
        return "unspecified address"
    if addr.is_loopback:
        return "loopback address"
    if addr.is_link_local:
        return "link-local address"
    if addr.is_multicast:
        return "multicast address"
    if isinstance(addr, ipaddress.IPv4Address):
        if addr in _CGNAT:
            return "carrier-grade NAT address"
        if addr == ipaddress.IPv4Address("255.255.255.255"):
            return "broadcast address"
    elif addr.is_site_local:
        return "private network address"
    if addr.is_private:
        return "private network address"
    if addr.is_reserved:
        return "reserved address"
    if not addr.is_global:
        return "non-public address"
    return None


def parse_ip_host(host: str) -> IPAddress | None:
    """``host`` as an IP address, or None for a host name.

    Understands the shortened, decimal, octal and hex IPv4 forms (``2852039166``,
    ``0xA9FEA9FE``, ``0251.0376.0251.0376``, ``169.254.43518``) the way ``inet_aton`` and
    therefore most HTTP stacks do. Raises BlockedURL for an all-numeric host that is no
    valid address.
    """
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare.rstrip(".")))
        except OSError:
            raise BlockedURL("The host is a malformed numeric address.") from None
    return None


def _normalise_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _allow_entry(entry: str) -> str:
    """``host`` or ``host:port`` (``[v6]:port``), normalised; a bare IPv6 address is a host."""
    entry = entry.strip()
    if entry.startswith("[") and "]:" in entry:
        host, _, port = entry[1:].partition("]:")
        return _with_port(_normalise_host(host), int(port))
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return _with_port(_normalise_host(host), int(port))
    return _normalise_host(entry)


def _with_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _normalise_allow(allow_hosts: Iterable[str]) -> frozenset[str]:
    return frozenset(_allow_entry(h) for h in allow_hosts)


def is_allowed(host: str, port: int | None, allow_hosts: Iterable[str]) -> bool:
    """Whether ``host`` (on ``port``) is listed: as a host (any port) or with this port."""
    allowed = _normalise_allow(allow_hosts)
    name = _normalise_host(host)
    return name in allowed or (port is not None and _with_port(name, port) in allowed)


def check_host(host: str, *, allow_hosts: frozenset[str],
               port: int | None = None) -> IPAddress | None:
    """Check a host without DNS; return its address when it is a literal IP.

    Raises BlockedURL with a user-safe reason.
    """
    if not host:
        raise BlockedURL("The URL has no host.")
    if is_allowed(host, port, allow_hosts):
        return None
    addr = parse_ip_host(host)
    if addr is not None:
        reason = blocked_reason(addr)
        if reason is not None:
            raise BlockedURL(f"The host is a {reason}.")
        return addr
    name = _normalise_host(host)
    if _BAD_HOST_CHARS.search(name):
        raise BlockedURL("The host name contains invalid characters.")
    if name in _BLOCKED_NAMES or name.endswith(".localhost"):
        raise BlockedURL("The host name points at a local or metadata service.")
    return None


def check_url(url: str, *, allow_hosts: frozenset[str], allow_http: bool) -> None:
    """Refuse URLs the service must never call. Does not resolve DNS.

    Rules: ``https`` only (``http`` too when ``allow_http``), no userinfo, a host is present,
    and a literal IP (in any spelling) is a public address; ``allow_hosts`` exempts the hosts
    it lists literally from the address rules.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        raise BlockedURL("The URL is malformed.") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise BlockedURL("Only https:// URLs are allowed.")
    if "@" in parts.netloc:
        raise BlockedURL("URLs with a user name or password are not allowed.")
    check_host(host, allow_hosts=allow_hosts,
               port=port if port is not None else (443 if scheme == "https" else 80))


async def _system_resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def vet_host(
    host: str,
    port: int,
    *,
    allow_hosts: frozenset[str],
    resolver: Resolver | None = None,
) -> list[IPAddress] | None:
    """Resolve ``host`` and return its addresses, all vetted; None when it is allow-listed.

    Raises ProviderError("blocked_endpoint") when the host or any resolved address is
    blocked, and httpx.ConnectError when the name does not resolve.
    """
    try:
        literal = check_host(host, allow_hosts=allow_hosts, port=port)
    except BlockedURL as exc:
        raise ProviderError("blocked_endpoint", str(exc)) from None
    if is_allowed(host, port, allow_hosts):
        return None
    if literal is not None:
        return [literal]
    try:
        resolved = await (resolver or _system_resolve)(host, port)
    except (OSError, UnicodeError) as exc:
        raise httpx.ConnectError(f"Could not resolve the host name {host}.") from exc
    addrs: list[IPAddress] = []
    for text in resolved:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
        reason = blocked_reason(addr)
        if reason is not None:
            raise ProviderError("blocked_endpoint", f"The host {host} resolves to a {reason}.")
        if addr not in addrs:
            addrs.append(addr)
    if not addrs:
        raise httpx.ConnectError(f"Could not resolve the host name {host}.")
    return addrs


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that only ever connects to vetted public addresses.

    Wraps one ``httpx.AsyncHTTPTransport(retries=0)`` per host name: the inner pool is keyed
    by the IP the URL is rewritten to, so sharing one pool across host names could reuse a
    TLS session verified for another name.
    """

    def __init__(
        self,
        allow_hosts: frozenset[str] = frozenset(),
        allow_http: bool = False,
        *,
        transport_factory: Callable[[], httpx.AsyncBaseTransport] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._allow_hosts = _normalise_allow(allow_hosts)
        self._allow_http = allow_http
        self._factory = transport_factory or (
            lambda: httpx.AsyncHTTPTransport(retries=0, verify=_ssl_context())
        )
        self._resolver = resolver
        self._inner: dict[str, httpx.AsyncBaseTransport] = {}

    def _transport_for(self, host: str) -> httpx.AsyncBaseTransport:
        inner = self._inner.get(host)
        if inner is None:
            inner = self._inner[host] = self._factory()
        return inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "https" and not (url.scheme == "http" and self._allow_http):
            raise ProviderError("blocked_endpoint", "Only https:// URLs are allowed.")
        if url.userinfo:
            raise ProviderError(
                "blocked_endpoint", "URLs with a user name or password are not allowed."
            )
        host = url.raw_host.decode("ascii")  # IDNA-encoded, as DNS and TLS want it
        port = url.port or (443 if url.scheme == "https" else 80)
        addrs = await vet_host(host, port, allow_hosts=self._allow_hosts, resolver=self._resolver)
        inner = self._transport_for(host)
        if addrs is None:
            return await inner.handle_async_request(request)
        extensions = dict(request.extensions)
        if url.scheme == "https":
            extensions["sni_hostname"] = host  # verify the certificate for the real name
        last_error: httpx.ConnectError | None = None
        for addr in addrs:  # the next vetted address when one is unreachable
            request.url = url.copy_with(host=str(addr))
            request.extensions = extensions
            try:
                return await inner.handle_async_request(request)
            except httpx.ConnectError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def aclose(self) -> None:
        inners, self._inner = list(self._inner.values()), {}
        for inner in inners:
            await inner.aclose()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle costs ~20 ms, too much
    to pay on every invoke of a warm Lambda."""
    return httpx.create_ssl_context()


def guarded_client(
    *, allow_hosts: frozenset[str] = frozenset(), allow_http: bool = False
) -> httpx.AsyncClient:
    """An AsyncClient for provider calls: guarded, no proxies from the environment, no redirects.

    The daily batch may share one across many tests; close it with ``await client.aclose()``.
    """
    return httpx.AsyncClient(
        transport=GuardedTransport(allow_hosts, allow_http),
        trust_env=False,
        follow_redirects=False,
    )
