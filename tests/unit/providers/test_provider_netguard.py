"""Outbound safety: URL checks at save time and the connect-time guard."""

from __future__ import annotations

import ipaddress
import socket

import httpx
import pytest

from chalicelib.providers.base import ProviderError
from chalicelib.providers.netguard import (
    BlockedURL,
    GuardedTransport,
    blocked_reason,
    check_url,
    parse_ip_host,
)
from tests.unit.providers.provider_testkit import run

pytestmark = pytest.mark.unit

NONE: frozenset[str] = frozenset()
LOCAL = frozenset({"127.0.0.1"})

BLOCKED_URLS = [
    "https://169.254.169.254/latest/meta-data/",
    "https://[::ffff:169.254.169.254]/",
    "https://[::ffff:a9fe:a9fe]/",
    "https://10.0.0.1/v1",
    "https://100.64.0.1/",
    "https://100.100.100.200/",
    "https://[fd00::1]/",
    "https://[fd00:ec2::254]/",
    "https://[fe80::1]/",
    "https://[::1]/",
    "https://127.0.0.1/",
    "https://0.0.0.0/",
    "https://2852039166/",
    "https://0xA9FEA9FE/",
    "https://0251.0376.0251.0376/",
    "https://169.254.43518/",
    "https://0x7f.1/",
    "https://127.1/",
    "https://127.0.0.1./",
    "https://[2002:a9fe:a9fe::1]/",
    "https://[64:ff9b::a9fe:a9fe]/",
    "https://[::127.0.0.1]/",
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "https://224.0.0.1/",
    "https://255.255.255.255/",
    "https://192.168.1.10/",
    "https://172.16.5.4/",
    "https://localhost/",
    "https://api.localhost/",
    "https://metadata.google.internal/",
    "http://api.openai.com/v1",
    "https://user:pass@api.openai.com/v1",
    "https://api.openai.com@10.0.0.1/",
    "ftp://api.openai.com/",
    "https:///nohost",
    "https://999999999999/",
]


@pytest.mark.parametrize("url", BLOCKED_URLS)
def test_check_url_blocks(url: str) -> None:
    with pytest.raises(BlockedURL):
        check_url(url, allow_hosts=NONE, allow_http=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "https://8.8.8.8/",
        "https://[2606:4700:4700::1111]/",
        "https://[::ffff:8.8.8.8]/",
        "https://[2002:0808:0808::1]/",
        "https://contoso.openai.azure.com:443/",
        "https://does-not-resolve.invalid/v1",
    ],
)
def test_check_url_allows_public_https(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*_: object, **__: object) -> None:
        raise AssertionError("check_url must not resolve DNS")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    check_url(url, allow_hosts=NONE, allow_http=False)


def test_allow_hosts_exempts_only_the_literal_host() -> None:
    check_url("http://127.0.0.1:8765/openai/v1", allow_hosts=LOCAL, allow_http=True)
    for other in ("http://localhost:8765/", "http://0x7f000001/", "http://127.0.0.2/"):
        with pytest.raises(BlockedURL):
            check_url(other, allow_hosts=LOCAL, allow_http=True)
    with pytest.raises(BlockedURL):  # http needs allow_http even for an allowed host
        check_url("http://127.0.0.1:8765/", allow_hosts=LOCAL, allow_http=False)


def test_numeric_host_forms_are_normalised_like_inet_aton() -> None:
    metadata = ipaddress.IPv4Address("169.254.169.254")
    for host in (
        "2852039166",
        "0xA9FEA9FE",
        "0251.0376.0251.0376",
        "169.254.43518",
        "0xa9.0xfe.43518",
    ):
        assert parse_ip_host(host) == metadata
    assert parse_ip_host("api.openai.com") is None


def test_embedded_ipv4_is_unwrapped() -> None:
    assert blocked_reason(ipaddress.ip_address("::ffff:10.0.0.1")) is not None
    assert blocked_reason(ipaddress.ip_address("64:ff9b::10.0.0.1")) is not None
    assert blocked_reason(ipaddress.ip_address("2002:0a00:0001::")) is not None
    assert blocked_reason(ipaddress.ip_address("64:ff9b::8.8.8.8")) is None
    assert blocked_reason(ipaddress.ip_address("169.254.169.254")) == "cloud metadata address"


class Inner(httpx.AsyncBaseTransport):
    """Records what reaches the real transport; answers 200."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={})


def _dns(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> list[str]:
    asked: list[str] = []

    def fake(host: str, port: object, *args: object, **kwargs: object) -> list:
        asked.append(host)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 443))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return asked


def _get(url: str, inner: Inner, **kw: object) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = GuardedTransport(transport_factory=lambda: inner, **kw)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            return await client.get(url)

    return run(go())


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/",
        "https://[::ffff:169.254.169.254]/",
        "https://10.0.0.1/",
        "https://100.64.0.1/",
        "https://[fd00::1]/",
        "https://2852039166/",
        "https://0xA9FEA9FE/",
    ],
)
def test_guard_blocks_literal_addresses_before_connecting(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner = Inner()
    asked = _dns(monkeypatch, "8.8.8.8")
    with pytest.raises(ProviderError) as info:
        _get(url, inner)
    assert info.value.code == "blocked_endpoint"
    assert inner.requests == []  # no connection was attempted
    assert asked == []


def test_guard_blocks_a_name_resolving_to_a_private_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inner = Inner()
    _dns(monkeypatch, "10.0.0.7")
    with pytest.raises(ProviderError) as info:
        _get("https://internal.example.com/v1/models", inner)
    assert info.value.code == "blocked_endpoint"
    assert "private" in info.value.message
    assert inner.requests == []


def test_guard_blocks_when_any_resolved_address_is_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    inner = Inner()
    _dns(monkeypatch, "93.184.216.34", "169.254.169.254")
    with pytest.raises(ProviderError):
        _get("https://rebind.example.com/", inner)
    assert inner.requests == []


def test_guard_connects_to_the_vetted_ip_with_original_host_and_sni(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inner = Inner()
    _dns(monkeypatch, "93.184.216.34")
    _get("https://api.example.com:8443/v1/models?x=1", inner)
    sent = inner.requests[0]
    assert sent.url.host == "93.184.216.34"
    assert sent.url.port == 8443
    assert sent.url.path == "/v1/models"
    assert sent.headers["host"] == "api.example.com:8443"
    assert sent.extensions["sni_hostname"] == "api.example.com"


def test_guard_tries_the_next_vetted_address_when_one_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hosts: list[str] = []

    class Flaky(Inner):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            hosts.append(request.url.host)
            if request.url.host == "2606:4700::1":
                raise httpx.ConnectError("Network is unreachable", request=request)
            return httpx.Response(200, json={})

    inner = Flaky()
    _dns(monkeypatch, "2606:4700::1", "93.184.216.34")
    assert _get("https://api.example.com/", inner).status_code == 200
    assert hosts == ["2606:4700::1", "93.184.216.34"]


def test_guard_refuses_http_unless_allowed_and_passes_allowlisted_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inner = Inner()
    asked = _dns(monkeypatch, "127.0.0.1")
    with pytest.raises(ProviderError):
        _get("http://api.example.com/", inner)
    _get("http://127.0.0.1:8765/openai/v1/models", inner, allow_hosts=LOCAL, allow_http=True)
    assert inner.requests[0].url.host == "127.0.0.1"
    assert asked == []
    with pytest.raises(ProviderError):  # a name resolving to loopback is still blocked
        _get("http://localhost:8765/", inner, allow_hosts=LOCAL, allow_http=True)


def test_guard_reports_unresolvable_host_as_connect_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object, **__: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(httpx.ConnectError):
        _get("https://nowhere.invalid/", Inner())


def test_an_allowlisted_host_and_port_admits_that_port_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 17 (8): `make run` allowlisted every port of 127.0.0.1 (the emulated AWS on
    4566 and the API on 8000 included); now only the fake providers' port."""
    only_fake = frozenset({"127.0.0.1:8900"})
    check_url("http://127.0.0.1:8900/openai/v1", allow_hosts=only_fake, allow_http=True)
    for other in ("http://127.0.0.1:4566/", "http://127.0.0.1:8000/health",
                  "http://127.0.0.1/", "http://127.0.0.1:89000/"):
        with pytest.raises(BlockedURL):
            check_url(other, allow_hosts=only_fake, allow_http=True)
    inner = Inner()
    _dns(monkeypatch, "127.0.0.1")
    _get("http://127.0.0.1:8900/openai/v1/models", inner, allow_hosts=only_fake,
         allow_http=True)
    with pytest.raises(ProviderError):  # the emulator, even past the save-time check
        _get("http://127.0.0.1:4566/", inner, allow_hosts=only_fake, allow_http=True)
    # IPv6 with a port, and the same entries written differently
    check_url("http://[::1]:8900/", allow_hosts=frozenset({"[::1]:8900"}), allow_http=True)
    with pytest.raises(BlockedURL):
        check_url("http://[::1]:8901/", allow_hosts=frozenset({"[::1]:8900"}), allow_http=True)


def test_make_run_allowlists_the_fake_providers_port_and_the_suite_any_loopback_port() -> None:
    from devtools import localenv

    assert localenv.environment(4566, fake_port=8900)["OUTBOUND_ALLOW_HOSTS"] == \
        "127.0.0.1:8900"
    assert localenv.environment(4566)["OUTBOUND_ALLOW_HOSTS"] == "127.0.0.1"
