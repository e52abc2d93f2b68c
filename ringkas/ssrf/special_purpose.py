"""The one table of addresses a link may never lead to.

Every row of the IANA IPv4 and IPv6 Special-Purpose Address Registries (as of 2025), plus the blocks
those registries leave to others (multicast, deprecated site-local and IPv4-compatible, SIIT's
IPv4-translated `::ffff:0:0:0/96`), plus cloud-metadata addresses named so a refusal can say which
service it protected.

Unlike the registries, a range IANA marks "globally reachable" (anycast services, AS112, AMT, ORCHIDv2)
is refused too: no news page lives there, and a special-purpose address in a shared link is a probe.
Only two prefixes are *decoded* instead of refused, because ordinary public sites show up in them:
IPv4-mapped (`::ffff:a.b.c.d`, what getaddrinfo returns under AI_V4MAPPED) and NAT64 (`64:ff9b::/96`,
what DNS64 returns on IPv6-only hosts). The IPv4 address inside is checked against this same table.

`tests/test_ssrf_table.py` generates addresses from every row (first, last, middle, and the IPv4 rows
wrapped in every IPv6 form) and checks the fetcher refuses each one.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Literal

from ssrfguard import AddressTable
from ssrfguard._registry import Block, Reach  # the row type ssrfguard's AddressTable is built from

Verdict = Literal["deny", "decode"]


@dataclass(frozen=True)
class Range:
    cidr: str
    name: str
    rfc: str
    verdict: Verdict = "deny"

    @property
    def network(self) -> IPv4Network | IPv6Network:
        return ip_network(self.cidr)


SPECIAL_PURPOSE: tuple[Range, ...] = (
    # --- IANA IPv4 Special-Purpose Address Registry ---
    Range("0.0.0.0/8", "This network", "RFC791"),
    Range("0.0.0.0/32", "This host on this network", "RFC1122"),
    Range("10.0.0.0/8", "Private-Use", "RFC1918"),
    Range("100.64.0.0/10", "Shared Address Space (CGNAT)", "RFC6598"),
    Range("127.0.0.0/8", "Loopback", "RFC1122"),
    Range("169.254.0.0/16", "Link Local", "RFC3927"),
    Range("172.16.0.0/12", "Private-Use", "RFC1918"),
    Range("192.0.0.0/24", "IETF Protocol Assignments", "RFC6890"),
    Range("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC7335"),
    Range("192.0.0.8/32", "IPv4 dummy address", "RFC7600"),
    Range("192.0.0.9/32", "Port Control Protocol Anycast", "RFC7723"),
    Range("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC8155"),
    Range("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC8880"),
    Range("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC8880"),
    Range("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC5737"),
    Range("192.31.196.0/24", "AS112-v4", "RFC7535"),
    Range("192.52.193.0/24", "AMT", "RFC7450"),
    Range("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC7526"),
    Range("192.88.99.2/32", "6a44-relay anycast address", "RFC6751"),
    Range("192.168.0.0/16", "Private-Use", "RFC1918"),
    Range("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC7534"),
    Range("198.18.0.0/15", "Benchmarking", "RFC2544"),
    Range("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC5737"),
    Range("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC5737"),
    Range("240.0.0.0/4", "Reserved", "RFC1112"),
    Range("255.255.255.255/32", "Limited Broadcast", "RFC919"),
    # --- IANA IPv6 Special-Purpose Address Registry ---
    Range("::1/128", "Loopback Address", "RFC4291"),
    Range("::/128", "Unspecified Address", "RFC4291"),
    Range("::ffff:0:0/96", "IPv4-mapped Address", "RFC4291", "decode"),
    Range("64:ff9b::/96", "IPv4-IPv6 Translation (NAT64)", "RFC6052", "decode"),
    Range("64:ff9b:1::/48", "IPv4-IPv6 Translation (local use)", "RFC8215"),
    Range("100::/64", "Discard-Only Address Block", "RFC6666"),
    Range("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC9780"),
    Range("2001::/23", "IETF Protocol Assignments", "RFC2928"),
    Range("2001::/32", "TEREDO", "RFC4380"),
    Range("2001:1::1/128", "Port Control Protocol Anycast", "RFC7723"),
    Range("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC8155"),
    Range("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC9665"),
    Range("2001:2::/48", "Benchmarking", "RFC5180"),
    Range("2001:3::/32", "AMT", "RFC7450"),
    Range("2001:4:112::/48", "AS112-v6", "RFC7535"),
    Range("2001:10::/28", "Deprecated (previously ORCHID)", "RFC4843"),
    Range("2001:20::/28", "ORCHIDv2", "RFC7343"),
    Range("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs)", "RFC9374"),
    Range("2001:db8::/32", "Documentation", "RFC3849"),
    Range("2002::/16", "6to4", "RFC3056"),
    Range("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC7534"),
    Range("3fff::/20", "Documentation", "RFC9637"),
    Range("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC9602"),
    Range("fc00::/7", "Unique-Local", "RFC4193"),
    Range("fe80::/10", "Link-Local Unicast", "RFC4291"),
    # --- special-purpose blocks the two registries leave to others ---
    Range("::ffff:0:0:0/96", "IPv4-translated Address (SIIT)", "RFC2765"),
    Range("::/96", "IPv4-Compatible Address (deprecated)", "RFC4291"),
    Range("224.0.0.0/4", "Multicast", "RFC5771"),
    Range("ff00::/8", "Multicast", "RFC4291"),
    Range("fec0::/10", "Site-Local (deprecated)", "RFC3879"),
    # --- inside denied blocks already; named so a refusal says which service it protected ---
    Range("169.254.169.254/32", "Cloud metadata (AWS, GCP, Azure)", "RFC3927"),
    Range("169.254.170.2/32", "Cloud metadata (AWS ECS task)", "RFC3927"),
    Range("100.100.100.200/32", "Cloud metadata (Alibaba Cloud)", "RFC6598"),
    Range("192.0.0.192/32", "Cloud metadata (Oracle Cloud)", "RFC6890"),
    Range("fd00:ec2::254/128", "Cloud metadata (AWS over IPv6)", "RFC4193"),
)

_REACH = {"deny": Reach.DENIED, "decode": Reach.TRANSLATED}

#: The table every fetch policy uses (ssrfguard's `Policy(denied_networks=...)`).
DENIED_TABLE = AddressTable(
    tuple(Block(network=r.network, name=r.name, rfc=r.rfc, reach=_REACH[r.verdict]) for r in SPECIAL_PURPOSE)
)
