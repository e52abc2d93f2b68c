"""Safe fetching of untrusted links: SSRF-guarded, size-capped, deadline-bounded.

Every request goes through an `ssrfguard` client, which resolves the host once, refuses any address
in a special-purpose range (the one table in `ringkas/ssrf`) and connects to exactly the address it
checked (so DNS rebinding cannot slip a second answer in; TLS still verifies the host name).
Redirects are followed here, one hop at a time, so every hop is checked again. Bodies are read raw
and decompressed by us with a hard byte cap, so neither a huge page nor a gzip bomb is ever held
whole in memory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
import time
import zlib
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Literal
from urllib.parse import urljoin, urlsplit

import httpx
from ssrfguard import AddressTable, BlockedAddressError, BlockedURLError, Policy, Resolver, SSRFGuardError
from ssrfguard.httpx import AsyncClient as GuardedClient

from ringkas.documents import FetchResult
from ringkas.errors import (
    BlockedAddress,
    FetchTimeout,
    InvalidURL,
    SiteRefused,
    TooLarge,
    TooManyRedirects,
    UnsupportedContent,
)
from ringkas.reading.markup import (
    FEED_TYPES,
    HTML_TYPES,
    PDF_TYPES,
    TEXT_TYPES,
    UNKNOWN_TYPES,
    looks_like_feed,
    looks_like_html,
    looks_like_pdf,
    looks_like_text,
    strip_bom,
)
from ringkas.ssrf import DENIED_TABLE
from ringkas.urls import ascii_host

log = logging.getLogger("ringkas.fetch")

USER_AGENT = "RingkasBot/0.1 (+https://github.com/ringkas/ringkas; Slack summaries)"
MAX_REDIRECTS = 5
PUBLIC_PORTS = frozenset({80, 443, 8080, 8443})
MAX_URL_LENGTH = 8192

Accept = Literal["document", "feed"]

_ACCEPT_HEADER = {
    "document": "text/html,application/xhtml+xml,application/pdf;q=0.9,text/plain;q=0.8,*/*;q=0.5",
    "feed": "application/rss+xml,application/atom+xml,application/feed+json,application/xml;q=0.9,"
    "text/xml;q=0.9,*/*;q=0.5",
}
_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_DROPPED_RESPONSE_HEADERS = frozenset({"set-cookie", "set-cookie2"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_TYPE_WORDS = {
    "image/": "an image", "video/": "a video", "audio/": "an audio file", "font/": "a font file",
    "application/zip": "a ZIP archive", "application/x-zip-compressed": "a ZIP archive",
    "application/gzip": "a compressed archive", "application/x-tar": "an archive",
    "application/x-7z-compressed": "an archive", "application/vnd.rar": "an archive",
    "application/json": "JSON data", "application/javascript": "a script", "text/javascript": "a script",
    "text/css": "a style sheet", "application/vnd.ms-excel": "a spreadsheet",
    "application/vnd.openxmlformats-officedocument": "an Office document",
    "application/msword": "a Word file",
    "application/x-msdownload": "a program", "application/vnd.android.package-archive": "an app package",
    "text/csv": "a CSV table",
}


# --- content types ------------------------------------------------------------------------------


def parse_content_type(value: str | None) -> tuple[str, str | None]:
    """('text/html', 'utf-8') from 'text/html; charset="UTF-8"'; media type lower case, '' if missing."""
    if not value:
        return "", None
    parts = value.split(";")
    media = parts[0].strip().lower()
    if "/" not in media:
        media = ""
    charset = None
    for part in parts[1:]:
        name, _, raw = part.partition("=")
        if name.strip().lower() == "charset":
            charset = raw.strip().strip("\"'").strip().lower() or None
    return media, charset


def describe_type(media: str) -> str:
    """Plain words for a media type, e.g. 'an image (image/png)'."""
    for prefix, words in _TYPE_WORDS.items():
        if media.startswith(prefix):
            return f"{words} ({media})"
    return f"a file of type {media}" if media else "a file of unknown type"


def sniff_document_type(declared: str, body: bytes) -> str | None:
    """The media type we should treat a document as, or None when it is none we read."""
    if declared in PDF_TYPES or declared in UNKNOWN_TYPES:
        if looks_like_pdf(body):
            return "application/pdf"
        if declared in PDF_TYPES:
            return "text/html" if looks_like_html(body) else None
    elif strip_bom(body[:16]).lstrip().startswith(b"%PDF-"):
        return "application/pdf"  # a PDF served with a text or HTML label
    if declared in HTML_TYPES:
        return "text/html"
    if declared in TEXT_TYPES:
        return "text/markdown" if declared != "text/plain" else "text/plain"
    if declared in UNKNOWN_TYPES or declared in {"application/xml", "text/xml"} or declared.endswith("+xml"):
        if looks_like_html(body):
            return "text/html"
        if declared in UNKNOWN_TYPES and not looks_like_feed(body) and looks_like_text(body):
            return "text/plain"
    return None


def sniff_feed_type(declared: str, body: bytes) -> str | None:
    """The media type of a feed response; HTML is passed on (it may link to a feed or be one)."""
    labelled_feed = declared in FEED_TYPES or declared.endswith(("+xml", "+json"))
    if looks_like_feed(body):
        if labelled_feed:
            return declared
        return "application/feed+json" if body.lstrip()[:1] == b"{" else "application/xml"
    if labelled_feed:
        return declared  # let the feed parser judge odd but honestly labelled feeds
    if declared in HTML_TYPES or looks_like_html(body):
        return "text/html"
    return None


def _plausible_before_body(declared: str, accept: Accept) -> bool:
    """Refuse obviously wrong types (images, archives, ...) from the headers, before reading a byte."""
    if declared in UNKNOWN_TYPES or declared in HTML_TYPES or declared in TEXT_TYPES:
        return True
    if declared in PDF_TYPES:
        return accept == "document"
    if declared in FEED_TYPES or declared.endswith(("+xml", "+json")):
        return accept == "feed" or declared.endswith("xml")
    return False


# --- bounded decompression ------------------------------------------------------------------------


class _Inflate:
    """One gzip or deflate stage whose output per call never exceeds the remaining budget."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._raw_deflate_tried = False
        self._obj = self._new()

    def _new(self):  # type: ignore[no-untyped-def]
        if self.coding in {"gzip", "x-gzip"}:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj()

    def feed(self, data: bytes, budget: int) -> bytes:
        out = bytearray()
        pending = data
        while pending and len(out) <= budget:
            try:
                out += self._obj.decompress(pending, budget - len(out) + 1)
            except zlib.error:
                if self.coding == "deflate" and not self._raw_deflate_tried and not out:
                    # Some servers send raw deflate without the zlib wrapper.
                    self._raw_deflate_tried = True
                    self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise
            if self._obj.unconsumed_tail:
                pending = self._obj.unconsumed_tail
            elif self._obj.eof and self._obj.unused_data:
                pending = self._obj.unused_data  # concatenated gzip members
                self._obj = self._new()
            else:
                pending = b""
        return bytes(out)


class _BodyReader:
    """Counts raw and decoded bytes while decoding; raises TooLarge as soon as the cap is passed."""

    def __init__(self, encodings: Sequence[str], max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.raw = 0
        self.stages = [_Inflate(coding) for coding in reversed(encodings)]
        self.parts: list[bytes] = []
        self.decoded = 0

    def feed(self, chunk: bytes) -> None:
        self.raw += len(chunk)
        data = chunk
        for stage in self.stages:
            data = stage.feed(data, self.max_bytes - self.decoded)
        self.decoded += len(data)
        if self.decoded > self.max_bytes or self.raw > self.max_bytes:
            raise TooLarge(
                f"That page is larger than the {_megabytes(self.max_bytes)} I read, so I stopped.",
                detail=f"stopped after {self.raw} raw bytes, {self.decoded} decoded; cap {self.max_bytes}",
            )
        self.parts.append(data)

    def body(self) -> bytes:
        return b"".join(self.parts)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size // 1024} KB"


def _content_encodings(headers: httpx.Headers) -> list[str]:
    codings = [c.strip().lower() for c in headers.get("content-encoding", "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    for coding in codings:
        if coding not in {"gzip", "x-gzip", "deflate"}:
            raise UnsupportedContent(
                f"The site sent the page compressed as '{coding[:40]}', which I can't read."
            )
    if len(codings) > 2:
        raise UnsupportedContent("The site wrapped the page in too many layers of compression.")
    return codings


# --- the fetcher ----------------------------------------------------------------------------------


def _host_as_written(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def check_url_shape(url: str) -> str:
    """Refuse what is not a plain http(s) URL with a host; returns the stripped URL."""
    url = url.strip()
    if not url:
        raise InvalidURL("That link is empty.")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL("That link is too long to be a normal web address.")
    if _CONTROL.search(url):
        raise InvalidURL("That link contains spaces or control characters, so it isn't a valid web address.")
    try:
        split = urlsplit(url)
        host = split.hostname
        port = split.port
    except ValueError:
        raise InvalidURL("That link is malformed (its host or port can't be read).") from None
    if split.scheme.lower() not in {"http", "https"}:
        raise InvalidURL()
    if not host:
        raise InvalidURL("That link has no site name in it.")
    if split.username is not None or split.password is not None or "@" in split.netloc:
        raise InvalidURL("That link carries a user name or password, so I won't open it.")
    if port == 0:
        raise InvalidURL("That link names port 0, which isn't a real port.")
    return url


class SafeFetcher:
    """Fetches untrusted http(s) URLs without ever reaching private addresses.

    `allow_hosts`: host names or IP literals (as written in URLs, case-insensitive) exempt from the
    private-address block, on any port. Every other host must resolve only to globally routable
    addresses and use port 80, 443, 8080 or 8443. One pooled client per policy; `aclose` closes them.
    """

    def __init__(
        self,
        *,
        allow_hosts: Sequence[str] = (),
        timeout: float = 20.0,
        max_bytes: int = 10 * 1024 * 1024,
        user_agent: str = USER_AGENT,
        resolver: Resolver | None = None,
        extra_allowed_networks: Sequence[str] = (),
    ) -> None:
        self.timeout = float(timeout)
        self.max_bytes = int(max_bytes)
        self.user_agent = user_agent
        self._resolver = resolver
        self.allow_hosts = frozenset(
            h.strip().lower().removeprefix("[").removesuffix("]") for h in allow_hosts if h and h.strip()
        )
        self._public_policy = Policy(
            allowed_ports=PUBLIC_PORTS,
            denied_networks=DENIED_TABLE,  # every IANA special-purpose range: ringkas/ssrf
            allowed_networks=tuple(extra_allowed_networks),  # type: ignore[arg-type]
            max_redirects=MAX_REDIRECTS,
            max_url_length=MAX_URL_LENGTH,
        )
        self._exempt_policy: Policy | None = None
        if self.allow_hosts:
            try:
                self._exempt_policy = Policy(
                    allowed_ports=frozenset(range(1, 65536)),
                    denied_networks=AddressTable(()),
                    allowed_hosts=frozenset(ascii_host(h) for h in self.allow_hosts),
                    max_redirects=MAX_REDIRECTS,
                    max_url_length=MAX_URL_LENGTH,
                )
            except ValueError as exc:
                from ringkas.errors import ConfigError

                raise ConfigError(f"FETCH_ALLOW_HOSTS is invalid: {exc}") from None
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._closed = False

    # clients -----------------------------------------------------------------------------------

    def _client(self, exempt: bool) -> httpx.AsyncClient:
        key = "exempt" if exempt else "public"
        client = self._clients.get(key)
        if client is None:
            if self._closed:
                raise RuntimeError("SafeFetcher is closed")
            policy = self._exempt_policy if exempt else self._public_policy
            assert policy is not None
            client = GuardedClient(
                policy=policy,
                resolver=self._resolver,
                trust_env=False,  # HTTP(S)_PROXY must never route around the guard
                follow_redirects=False,
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=10, keepalive_expiry=30),
                headers={"User-Agent": self.user_agent},
            )
            self._clients[key] = client
        return client

    def is_exempt(self, url: str) -> bool:
        return bool(self.allow_hosts) and _host_as_written(url) in self.allow_hosts

    def _check(self, url: str) -> bool:
        """Validate one hop without touching the network; returns whether the host is exempt."""
        check_url_shape(url)
        exempt = self.is_exempt(url)
        policy = self._exempt_policy if exempt else self._public_policy
        assert policy is not None
        try:
            if not exempt:
                host = _host_as_written(url)
                if _legacy_numeric_host(host):
                    # 0x7f000001, 127.1, 017700000001: glibc would read these as addresses.
                    raise BlockedAddress(detail=f"numeric host in a legacy notation: {host[:60]}")
                literal = _literal_ip(host)
                if literal is not None:
                    policy.check_address(literal)  # the address verdict beats the port verdict
            policy.check_url(url)
        except SSRFGuardError as exc:
            raise _blocked(exc, url) from None
        return exempt

    async def aclose(self) -> None:
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    # fetching ------------------------------------------------------------------------------------

    async def fetch(
        self, url: str, *, headers: Mapping[str, str] | None = None, accept: Accept = "document"
    ) -> FetchResult:
        """GET `url` within one overall deadline; raises a RingkasError subclass on every failure."""
        url = check_url_shape(url)
        started = time.monotonic()
        host = _host_as_written(url)
        try:
            async with asyncio.timeout(self.timeout):
                result = await self._fetch(url, headers or {}, accept)
        except TimeoutError:
            log.info("fetch timed out", extra={"host": host, "timeout": self.timeout})
            raise FetchTimeout(
                f"{host} took longer than {self.timeout:g} seconds to send the page, so I gave up."
            ) from None
        log.info(
            "fetched",
            extra={
                "host": host,
                "status": result.status,
                "content_type": result.content_type,
                "bytes": len(result.body),
                "ms": round((time.monotonic() - started) * 1000),
            },
        )
        return result

    async def _fetch(self, url: str, extra_headers: Mapping[str, str], accept: Accept) -> FetchResult:
        request_headers = {"Accept": _ACCEPT_HEADER[accept], "Accept-Encoding": "gzip, deflate"}
        request_headers.update(extra_headers)
        current = url
        passed_public_host = False
        for _hop in range(MAX_REDIRECTS + 1):
            exempt = self._check(current)
            if exempt and passed_public_host:
                # An allow-listed intranet host is for links people share, not for any outside page
                # that redirects there (which would reach intranet URLs no one chose to open).
                target = _host_as_written(current)
                raise BlockedAddress(detail=f"redirect from a public host to allow-listed {target}")
            passed_public_host = passed_public_host or not exempt
            client = self._client(exempt)
            response = await self._send(client, current, request_headers)
            try:
                if response.status_code in _REDIRECT_STATUSES and response.headers.get("location"):
                    following = self._next_hop(current, response.headers["location"])
                    if _origin(following) != _origin(current):
                        request_headers = {
                            k: v for k, v in request_headers.items() if k.lower() not in _SENSITIVE_HEADERS
                        }
                    current = following
                    continue
                return await self._finish(url, current, response, accept)
            finally:
                await response.aclose()
        raise TooManyRedirects(f"That link redirected more than {MAX_REDIRECTS} times, so I gave up.")

    @staticmethod
    def _next_hop(current: str, location: str) -> str:
        location = location.strip()
        target = urljoin(current, location)
        scheme = urlsplit(target).scheme.lower() if ":" in target else ""
        if scheme not in {"http", "https"}:
            raise BlockedAddress("That link redirected to something that isn't a web address, so I stopped.")
        return target

    async def _send(self, client: httpx.AsyncClient, url: str, headers: Mapping[str, str]) -> httpx.Response:
        host = _host_as_written(url)
        try:
            request = client.build_request("GET", url, headers=headers)
            return await client.send(request, stream=True)
        except SSRFGuardError as exc:
            raise _blocked(exc, url) from None
        except httpx.TimeoutException:
            raise FetchTimeout(f"{host} took too long to answer, so I gave up.") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise InvalidURL() from None
        except httpx.ConnectError as exc:
            raise _connect_failure(exc, host) from None
        except httpx.TransportError as exc:
            raise SiteRefused(
                f"The connection to {host} broke off before the page arrived.", detail=type(exc).__name__
            ) from None

    async def _finish(
        self, url: str, final_url: str, response: httpx.Response, accept: Accept
    ) -> FetchResult:
        status = response.status_code
        declared, charset = parse_content_type(response.headers.get("content-type"))
        headers = {
            k.lower(): v for k, v in response.headers.items() if k.lower() not in _DROPPED_RESPONSE_HEADERS
        }
        if status == 304:
            return FetchResult(url, final_url, 304, declared, charset, b"", headers)
        if status >= 400 or status in _REDIRECT_STATUSES or 300 <= status < 400:
            detail = f"HTTP {status} from {_host_as_written(final_url)}"
            raise SiteRefused(_status_words(status), detail=detail)
        if not _plausible_before_body(declared, accept):
            raise _unsupported(declared, accept)
        length = response.headers.get("content-length", "")
        if length.strip().isdigit() and int(length) > self.max_bytes:
            raise TooLarge(
                f"That page is {_megabytes(int(length))}, more than the {_megabytes(self.max_bytes)} I read.",
                detail=f"content-length {length}",
            )
        reader = _BodyReader(_content_encodings(response.headers), self.max_bytes)
        host = _host_as_written(final_url)
        try:
            async for chunk in response.aiter_raw():
                reader.feed(chunk)
        except zlib.error:
            raise SiteRefused(f"{host} sent a damaged compressed page.") from None
        except httpx.TimeoutException:
            raise FetchTimeout(f"{host} took too long to send the page, so I gave up.") from None
        except httpx.TransportError as exc:
            raise SiteRefused(
                f"The connection to {host} broke off before the page arrived.", detail=type(exc).__name__
            ) from None
        body = reader.body()
        if not body:
            return FetchResult(url, final_url, status, declared or "text/plain", charset, b"", headers)
        sniff = sniff_document_type if accept == "document" else sniff_feed_type
        sniffed = sniff(declared, body)
        if sniffed is None:
            raise _unsupported(declared, accept)
        return FetchResult(url, final_url, status, sniffed, charset, body, headers)


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _legacy_numeric_host(host: str) -> bool:
    """True for hosts that are IPv4 addresses in a non-canonical notation (hex, octal, short, integer)."""
    if not host or _literal_ip(host) is not None or not re.fullmatch(r"[0-9a-fA-FxX.]+", host):
        return False
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def _origin(url: str) -> tuple[str, str, int | None]:
    split = urlsplit(url)
    return split.scheme.lower(), (split.hostname or "").lower(), split.port


def _status_words(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    words = f"The site answered {status} {phrase}".rstrip() + "."
    if status in {401, 403}:
        words += " It may need a login or block automated readers."
    elif status == 429:
        words += " It is limiting requests; try again later."
    elif status >= 500:
        words += " The site seems to be having trouble; try again later."
    elif 300 <= status < 400:
        words = f"The site answered {status} {phrase} without saying where the page moved.".replace("  ", " ")
    return words


def _unsupported(declared: str, accept: Accept) -> UnsupportedContent:
    what = describe_type(declared)
    if accept == "feed":
        return UnsupportedContent(f"That link is {what}, not an RSS or Atom feed.")
    return UnsupportedContent(
        f"That link is {what}, not a web page, PDF or text file, so I can't summarize it."
    )


def _blocked(exc: SSRFGuardError, url: str) -> BlockedAddress:
    reason = str(getattr(exc, "reason", "") or exc)
    if isinstance(exc, BlockedURLError) and "allowed_ports" in reason:
        port = urlsplit(url).port
        return BlockedAddress(
            f"I only open links on the usual web ports (80, 443, 8080, 8443), not port {port}.", detail=reason
        )
    if isinstance(exc, BlockedURLError | BlockedAddressError):
        return BlockedAddress(detail=reason)
    return BlockedAddress(detail=reason)


def _connect_failure(exc: httpx.ConnectError, host: str) -> SiteRefused:
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, ssl.SSLError):
            return SiteRefused(
                f"{host}'s secure connection (TLS certificate) could not be verified, so I didn't read it.",
                detail=str(cause)[:200],
            )
        if isinstance(cause, socket.gaierror):
            return _unresolvable(host, str(cause))
        cause = cause.__cause__ or cause.__context__
        seen += 1
    text = str(exc)
    if "CERTIFICATE" in text.upper() or "SSL" in text.upper():
        return SiteRefused(
            f"{host}'s secure connection (TLS certificate) could not be verified, so I didn't read it.",
            detail=text[:200],
        )
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return _unresolvable(host, text)
    return SiteRefused(
        f"I couldn't connect to {host}; it refused the connection or is down.", detail=text[:200]
    )


def _unresolvable(host: str, detail: str) -> SiteRefused:
    return SiteRefused(f"I couldn't find the site {host} (its name doesn't resolve).", detail=detail[:200])
