"""The special-purpose table, tested by generation: for every row, addresses at its edges and middle, and
(for IPv4 rows) the same address wrapped in every IPv6 form, must be refused by the real fetcher before
any connection. Public control addresses in the same forms must pass, so the test can fail."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from ssrfguard._registry import TABLE as SSRFGUARD_TABLE

from ringkas.errors import BlockedAddress
from ringkas.fetch import SafeFetcher
from ringkas.ssrf import DENIED_TABLE, SPECIAL_PURPOSE

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _samples(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Iterator[IPAddress]:
    first, last = int(network.network_address), int(network.broadcast_address)
    kind = type(network.network_address)
    for value in {first, last, (first + last) // 2, min(first + 1, last)}:
        yield kind(value)


def _wrapped(v4: ipaddress.IPv4Address) -> Iterator[str]:
    """The IPv6 spellings that carry an IPv4 address."""
    n = int(v4)
    yield f"::ffff:{v4}"  # IPv4-mapped
    yield str(ipaddress.IPv6Address((0xFFFF << 32) | n))  # mapped, hex form
    yield str(ipaddress.IPv6Address((0xFFFF << 48) | n))  # IPv4-translated ::ffff:0:a.b.c.d
    yield str(ipaddress.IPv6Address((0x64FF9B << 96) | n))  # NAT64
    yield str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80)))  # 6to4
    yield str(ipaddress.IPv6Address(n))  # IPv4-compatible


def _denied_addresses() -> list[str]:
    out: list[str] = []
    for row in SPECIAL_PURPOSE:
        for address in _samples(row.network):
            if row.verdict == "decode":
                continue  # a decoded prefix is refused or not by what it carries: checked below
            out.append(str(address))
            if address.version == 4:
                out.extend(_wrapped(address))
    return sorted(set(out))


DENIED = _denied_addresses()
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
          "::ffff:8.8.8.8", "64:ff9b::101:101"]


def _url(address: str) -> str:
    return f"http://[{address}]/" if ":" in address else f"http://{address}/"


def test_generated_cases_cover_every_row() -> None:
    assert len(DENIED) > 400
    for row in SPECIAL_PURPOSE:
        if row.verdict == "deny":
            assert str(row.network.network_address) in DENIED


def test_every_ssrfguard_row_is_in_our_table() -> None:
    ours = {row.network for row in SPECIAL_PURPOSE}
    missing = [str(block.network) for block in SSRFGUARD_TABLE if block.network not in ours]
    assert missing == []


@pytest.mark.parametrize("address", DENIED)
def test_table_refuses(address: str) -> None:
    assert DENIED_TABLE.classify(address).blocked, address


@pytest.mark.parametrize("address", PUBLIC)
def test_table_lets_public_addresses_through(address: str) -> None:
    assert not DENIED_TABLE.classify(address).blocked, address


async def test_fetcher_refuses_every_generated_address_without_connecting() -> None:
    fetcher = SafeFetcher(timeout=2)
    try:
        for address in DENIED:
            with pytest.raises(BlockedAddress):
                await fetcher.fetch(_url(address))
    finally:
        await fetcher.aclose()


def test_fetcher_check_accepts_public_literals() -> None:
    fetcher = SafeFetcher(timeout=2)
    for address in PUBLIC:
        assert fetcher._check(_url(address)) is False  # no exception: allowed, not exempt


def test_ipv4_translated_range_from_the_report() -> None:
    fetcher = SafeFetcher(timeout=2)
    for url in ("http://[::ffff:0:127.0.0.1]/", "http://[::ffff:0:a9fe:a9fe]/", "http://[::ffff:0:8.8.8.8]/"):
        with pytest.raises(BlockedAddress):
            fetcher._check(url)
