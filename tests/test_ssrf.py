"""SSRF protection: every private/internal destination is refused, on the first request and on every hop.

No test here sends a packet to anything but 127.0.0.1: public-looking names are answered by a stand-in
resolver, and "public" addresses are simulated by treating 127.0.0.1 as public via the fetcher's
`extra_allowed_networks` hook, with the stand-in resolver pointing port 80 at the local test server.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from aiohttp import web as aioweb

from ringkas.errors import BlockedAddress, InvalidURL, SiteRefused
from ringkas.fetch import SafeFetcher
from tests.support.web_stub import WebStub

TLS = Path(__file__).parent / "fixtures" / "pages" / "tls"
LOOPBACK_AS_PUBLIC = ["127.0.0.1/32"]


class FakeDNS:
    """A getaddrinfo stand-in: answers from a table (or a sequence of tables), records every lookup.

    `port` rewrites the port in every answer, so a URL on port 80 reaches the local test server.
    """

    def __init__(self, *answers: dict[str, Sequence[str]], port: int | None = None) -> None:
        self.answers = list(answers) or [{}]
        self.port = port
        self.calls: list[str] = []

    def __call__(self, host: str, port: int, *_args: int) -> list[tuple]:
        self.calls.append(host)
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            table = self.answers[min(len(self.calls), len(self.answers)) - 1]
            name = host.rstrip(".").lower()
            if name not in table:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
            addresses: Iterable[str] = table[name]
        else:
            addresses = [str(literal)]
        out = []
        for address in addresses:
            ip = ipaddress.ip_address(address)
            target_port = self.port or port
            if ip.version == 4:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, target_port)))
            else:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, target_port, 0, 0)))
        return out


PAGE = "<html><body><article><p>" + "Secret internal page. " * 20 + "</p></article></body></html>"


@pytest.fixture
async def fetcher_factory():
    made: list[SafeFetcher] = []

    def make(**options) -> SafeFetcher:
        options.setdefault("timeout", 5)
        fetcher = SafeFetcher(**options)
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        await fetcher.aclose()


BLOCKED_URLS = [
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/admin",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/router",
    "http://169.254.169.254/latest/meta-data/iam/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.64.0.1/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::]/",
    "http://[fec0::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::1]/",
    "http://[::]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://198.18.0.1/",
    "http://192.0.0.8/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://0x7f000001/",
    "http://0x7f.0.0.1/",
    "http://017700000001/",
    "http://\u2460\u2461\u2466.0.0.1/",  # circled digits ①②⑦.0.0.1
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",  # full-width digits
    "http://127\u30020\u30020\u30021/",  # ideographic full stops
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://internal.example/",
    "http://v6-internal.example/",
    "https://example.com:22/",
    "http://example.com:6379/",
]
DNS_TABLE = {
    "localhost": ["127.0.0.1", "::1"],
    "metadata.google.internal": ["169.254.169.254"],
    "internal.example": ["10.1.2.3"],
    "v6-internal.example": ["fd12:3456::1"],
    "example.com": ["93.184.215.14"],
}


@pytest.mark.parametrize("url", BLOCKED_URLS)
async def test_private_and_odd_addresses_are_blocked(url: str, fetcher_factory) -> None:
    dns = FakeDNS(DNS_TABLE)
    fetcher = fetcher_factory(resolver=dns)
    with pytest.raises(BlockedAddress) as caught:
        await fetcher.fetch(url)
    assert "won't open" in caught.value.user_message or "usual web ports" in caught.value.user_message
    # literal and encoded addresses, and disallowed ports, are refused without any lookup
    if url.startswith(("http://1", "http://0", "http://2", "http://[")) or ":22/" in url or ":6379" in url:
        assert dns.calls == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/file",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
        "http://user:secret@example.com/",
        "http://example.com@127.0.0.1/",
        "https:///nohost",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "http://example.com/\x00",
        "",
    ],
)
async def test_malformed_or_non_web_urls_are_invalid(url: str, fetcher_factory) -> None:
    dns = FakeDNS(DNS_TABLE)
    with pytest.raises(InvalidURL):
        await fetcher_factory(resolver=dns).fetch(url)
    assert dns.calls == []


async def test_allowed_hosts_are_exempt_on_any_port(web: WebStub, fetcher_factory) -> None:
    web.add("/page", PAGE)
    dns = FakeDNS({"localhost": ["127.0.0.1"]})
    fetcher = fetcher_factory(allow_hosts=["127.0.0.1", "LocalHost"], resolver=dns)
    result = await fetcher.fetch(web.url("/page"))
    assert result.status == 200 and b"Secret internal page" in result.body
    result = await fetcher.fetch(web.url("/page", host="LOCALHOST"))
    assert result.status == 200
    assert web.hits["/page"] == 2


@pytest.mark.parametrize(
    "url_template",
    ["http://127.1:{port}/page", "http://[::ffff:127.0.0.1]:{port}/page", "http://0x7f000001:{port}/page"],
)
async def test_allow_list_matches_the_host_exactly_as_written(
    url_template: str, web: WebStub, fetcher_factory
) -> None:
    web.add("/page", PAGE)
    fetcher = fetcher_factory(allow_hosts=["127.0.0.1"], resolver=FakeDNS({}))
    with pytest.raises(BlockedAddress):
        await fetcher.fetch(url_template.format(port=web.port))
    assert web.hits["/page"] == 0


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost:{port}/secret",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::1]:{port}/secret",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/secret",
        "ftp://127.0.0.1/secret",
    ],
)
async def test_redirect_from_allowed_host_to_private_address_is_blocked(
    location: str, web: WebStub, fetcher_factory
) -> None:
    web.add("/secret", PAGE)
    start = web.redirect("/start", location.format(port=web.port))
    fetcher = fetcher_factory(allow_hosts=["127.0.0.1"], resolver=FakeDNS({"localhost": ["127.0.0.1"]}))
    with pytest.raises(BlockedAddress):
        await fetcher.fetch(start)
    assert web.hits["/start"] == 1
    assert web.hits["/secret"] == 0


async def test_public_name_resolving_to_private_address_is_blocked(fetcher_factory) -> None:
    dns = FakeDNS({"news.example": ["10.20.30.40"]})
    with pytest.raises(BlockedAddress):
        await fetcher_factory(resolver=dns).fetch("https://news.example/story")
    assert dns.calls == ["news.example"]


async def test_name_resolving_to_public_and_private_addresses_is_refused_whole(
    web: WebStub, fetcher_factory
) -> None:
    web.add("/story", PAGE)
    dns = FakeDNS({"mixed.example": ["127.0.0.1", "10.0.0.9"]}, port=web.port)
    fetcher = fetcher_factory(resolver=dns, extra_allowed_networks=LOOPBACK_AS_PUBLIC)
    with pytest.raises(BlockedAddress):
        await fetcher.fetch("http://mixed.example/story")
    assert web.hits["/story"] == 0


async def test_public_host_is_fetched_through_the_checked_address(web: WebStub, fetcher_factory) -> None:
    web.add("/story", PAGE)
    dns = FakeDNS({"news.example": ["127.0.0.1"]}, port=web.port)
    fetcher = fetcher_factory(resolver=dns, extra_allowed_networks=LOOPBACK_AS_PUBLIC)
    result = await fetcher.fetch("http://news.example/story")
    assert result.status == 200 and result.final_url == "http://news.example/story"
    assert web.request_headers["/story"]["Host"] == "news.example"


async def test_dns_rebinding_cannot_swap_the_address(web: WebStub, fetcher_factory) -> None:
    """First lookup answers a permitted address, every later one the metadata service."""
    web.add("/story", PAGE)
    dns = FakeDNS(
        {"rebind.example": ["127.0.0.1"]},
        {"rebind.example": ["169.254.169.254"]},
        port=web.port,
    )
    fetcher = fetcher_factory(resolver=dns, extra_allowed_networks=LOOPBACK_AS_PUBLIC)
    result = await fetcher.fetch("http://rebind.example/story")
    assert result.status == 200
    # exactly one lookup: no separate "validation" lookup that a second answer could differ from
    assert dns.calls == ["rebind.example"]
    assert web.hits["/story"] == 1  # the socket landed on the checked address

    # the pooled connection stays pinned to the checked address: no new lookup, same server
    await fetcher.fetch("http://rebind.example/story")
    assert dns.calls == ["rebind.example"]
    assert web.hits["/story"] == 2

    # a new connection looks the name up again, gets the metadata address, and is refused
    other = fetcher_factory(resolver=dns, extra_allowed_networks=LOOPBACK_AS_PUBLIC)
    with pytest.raises(BlockedAddress):
        await other.fetch("http://rebind.example/story")
    assert dns.calls == ["rebind.example", "rebind.example"]
    assert web.hits["/story"] == 2


async def test_redirect_from_public_host_to_internal_name_is_blocked(web: WebStub, fetcher_factory) -> None:
    web.add("/admin", PAGE)
    web.redirect("/go", "http://intranet.example/admin")
    dns = FakeDNS({"news.example": ["127.0.0.1"], "intranet.example": ["10.0.0.8"]}, port=web.port)
    fetcher = fetcher_factory(resolver=dns, extra_allowed_networks=LOOPBACK_AS_PUBLIC)
    with pytest.raises(BlockedAddress):
        await fetcher.fetch("http://news.example/go")
    assert dns.calls == ["news.example", "intranet.example"]
    assert web.hits["/admin"] == 0


async def test_redirect_to_a_non_web_port_is_blocked(web: WebStub, fetcher_factory) -> None:
    web.redirect("/go", "http://news.example:25/")
    dns = FakeDNS({"news.example": ["127.0.0.1"]}, port=web.port)
    fetcher = fetcher_factory(resolver=dns, extra_allowed_networks=LOOPBACK_AS_PUBLIC)
    with pytest.raises(BlockedAddress) as caught:
        await fetcher.fetch("http://news.example/go")
    assert "port 25" in caught.value.user_message


async def test_proxy_environment_is_ignored(web: WebStub, fetcher_factory, monkeypatch) -> None:
    proxy = await WebStub().start()
    try:
        proxy.add("/", "proxied", status=200)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url("/"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        web.add("/story", PAGE)
        dns = FakeDNS({"news.example": ["127.0.0.1"]}, port=web.port)
        fetcher = fetcher_factory(resolver=dns, extra_allowed_networks=LOOPBACK_AS_PUBLIC)
        result = await fetcher.fetch("http://news.example/story")
        assert b"Secret internal page" in result.body
        exempt = fetcher_factory(allow_hosts=["127.0.0.1"])
        assert (await exempt.fetch(web.url("/story"))).status == 200
        assert sum(proxy.hits.values()) == 0
        assert web.hits["/story"] == 2
    finally:
        await proxy.stop()


async def test_tls_certificate_is_verified_against_the_host_name(fetcher_factory) -> None:
    """The pinned connection still does TLS for the name: an untrusted certificate is refused."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    async def page(_request: aioweb.Request) -> aioweb.Response:
        return aioweb.Response(text="tls page")

    app = aioweb.Application()
    app.router.add_get("/", page)
    runner = aioweb.AppRunner(app, access_log=None)
    await runner.setup()
    site = aioweb.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        dns = FakeDNS({"secure.example": ["127.0.0.1"]}, port=port)
        fetcher = fetcher_factory(resolver=dns, extra_allowed_networks=LOOPBACK_AS_PUBLIC)
        with pytest.raises(SiteRefused) as caught:
            await fetcher.fetch("https://secure.example/")
        assert "secure connection" in caught.value.user_message
    finally:
        await runner.cleanup()


def test_allow_list_entries_must_be_usable() -> None:
    from ringkas.errors import ConfigError

    with pytest.raises(ConfigError):
        SafeFetcher(allow_hosts=["*"])
