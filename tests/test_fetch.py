"""SafeFetcher against a real local web server: redirects, statuses, content types, caps and deadlines."""

from __future__ import annotations

import asyncio
import gzip
import re
import tracemalloc
import zlib

import pytest

from ringkas.errors import (
    FetchTimeout,
    InvalidURL,
    SiteRefused,
    TooLarge,
    TooManyRedirects,
    UnsupportedContent,
)
from ringkas.fetch import USER_AGENT, SafeFetcher, parse_content_type
from tests.support.web_stub import WebStub

HTML = "<!doctype html><html><head><title>T</title></head><body><p>Hello from the page.</p></body></html>"
RSS = (
    '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>AI</title>'
    "<item><title>One</title><link>https://example.com/1</link></item></channel></rss>"
)
PDF_HEAD = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << >> endobj\n"


@pytest.fixture
async def fetcher():
    instance = SafeFetcher(allow_hosts=["127.0.0.1", "localhost"], timeout=5, max_bytes=1024 * 1024)
    yield instance
    await instance.aclose()


async def test_fetches_a_page_with_honest_user_agent_and_lower_case_headers(web: WebStub, fetcher) -> None:
    url = web.add("/a", HTML, headers={"ETag": '"v1"', "Last-Modified": "Wed, 01 May 2024 10:00:00 GMT"})
    result = await fetcher.fetch(url)
    assert result.status == 200
    assert result.url == url and result.final_url == url
    assert result.content_type == "text/html" and result.charset == "utf-8"
    assert result.body == HTML.encode()
    assert result.headers["etag"] == '"v1"'
    assert result.headers["last-modified"].startswith("Wed, 01 May 2024")
    assert all(key == key.lower() for key in result.headers)
    sent = web.request_headers["/a"]
    assert sent["User-Agent"] == USER_AGENT and "RingkasBot" in USER_AGENT
    assert "text/html" in sent["Accept"]


async def test_conditional_request_returns_304_with_empty_body(web: WebStub, fetcher) -> None:
    url = web.add("/feed.xml", b"", status=304, content_type="application/rss+xml", headers={"ETag": '"v2"'})
    result = await fetcher.fetch(url, headers={"If-None-Match": '"v2"'}, accept="feed")
    assert result.status == 304 and result.body == b""
    assert result.headers["etag"] == '"v2"'
    assert web.request_headers["/feed.xml"]["If-None-Match"] == '"v2"'


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_follows_each_redirect_kind(status: int, web: WebStub, fetcher) -> None:
    web.add("/final", HTML)
    start = web.redirect("/start", "/final", status=status)
    result = await fetcher.fetch(start)
    assert result.url == start and result.final_url == web.url("/final")
    assert result.body == HTML.encode()


async def test_five_redirects_are_fine_six_are_too_many(web: WebStub, fetcher) -> None:
    web.add("/r5", HTML)
    for i in range(5):
        web.redirect(f"/r{i}", web.url(f"/r{i + 1}"))
    assert (await fetcher.fetch(web.url("/r0"))).final_url == web.url("/r5")

    for i in range(6):
        web.redirect(f"/s{i}", f"/s{i + 1}")
    web.add("/s6", HTML)
    with pytest.raises(TooManyRedirects):
        await fetcher.fetch(web.url("/s0"))
    assert web.hits["/s6"] == 0


async def test_redirect_loop_stops(web: WebStub, fetcher) -> None:
    web.redirect("/loop-a", "/loop-b")
    web.redirect("/loop-b", "/loop-a")
    with pytest.raises(TooManyRedirects):
        await fetcher.fetch(web.url("/loop-a"))


async def test_redirect_without_location_is_refused(web: WebStub, fetcher) -> None:
    url = web.add("/moved", b"", status=302)
    with pytest.raises(SiteRefused) as caught:
        await fetcher.fetch(url)
    assert "302" in caught.value.user_message


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (404, "The site answered 404 Not Found."),
        (410, "The site answered 410 Gone."),
        (403, "The site answered 403 Forbidden."),
        (429, "The site answered 429 Too Many Requests."),
        (500, "The site answered 500 Internal Server Error."),
        (503, "The site answered 503 Service Unavailable."),
    ],
)
async def test_error_statuses_are_explained_in_plain_words(
    status: int, words: str, web: WebStub, fetcher
) -> None:
    url = web.add("/err", "nope", status=status)
    with pytest.raises(SiteRefused) as caught:
        await fetcher.fetch(url)
    assert caught.value.user_message.startswith(words)


async def test_connection_refused(fetcher) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SiteRefused) as caught:
        await fetcher.fetch(f"http://127.0.0.1:{port}/")
    assert "couldn't connect" in caught.value.user_message


async def test_server_that_never_answers_times_out(web: WebStub) -> None:
    url = web.add("/hang", HTML, delay=3)
    fetcher = SafeFetcher(allow_hosts=["127.0.0.1"], timeout=1)
    try:
        with pytest.raises(FetchTimeout) as caught:
            await fetcher.fetch(url)
        assert "took longer than 1 seconds" in caught.value.user_message
    finally:
        await fetcher.aclose()


async def test_slow_drip_server_hits_the_overall_deadline(web: WebStub) -> None:
    """One byte every 0.3 s never trips a per-read timeout; the overall deadline must."""
    url = web.add("/drip", HTML, trickle=0.3)
    fetcher = SafeFetcher(allow_hosts=["127.0.0.1"], timeout=1.5)
    try:
        with pytest.raises(FetchTimeout):
            await fetcher.fetch(url)
        assert web.bytes_sent["/drip"] < len(HTML)
    finally:
        await fetcher.aclose()


async def test_huge_streamed_body_is_cut_off_early(web: WebStub, fetcher) -> None:
    chunk = b"<p>" + b"x" * (64 * 1024 - 7) + b"</p>\n"
    url = web.add("/huge", chunk, chunks=1, repeat=480)  # ~30 MB, no Content-Length
    with pytest.raises(TooLarge) as caught:
        await fetcher.fetch(url)
    raw = int(re.search(r"after (\d+) raw bytes", caught.value.detail or "").group(1))
    assert raw <= 1024 * 1024 + len(chunk)
    await asyncio.sleep(0.2)
    total = len(chunk) * 480
    assert web.bytes_sent["/huge"] < total / 3  # the server was cut off, not drained
    assert "larger than the 1 MB" in caught.value.user_message


async def test_declared_content_length_above_cap_is_refused_before_reading(web: WebStub, fetcher) -> None:
    url = web.add("/big", b"a" * (2 * 1024 * 1024), content_type="text/plain")
    with pytest.raises(TooLarge) as caught:
        await fetcher.fetch(url)
    assert "content-length" in (caught.value.detail or "")
    assert "2 MB" in caught.value.user_message


async def test_gzip_bomb_is_never_inflated_whole(web: WebStub, fetcher) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1024 * 1024)
    bomb = b"".join(packer.compress(block) for _ in range(200)) + packer.flush()  # 200 MB inflated
    assert len(bomb) < 300_000
    url = web.add("/bomb", bomb, headers={"Content-Encoding": "gzip"})
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge) as caught:
            await fetcher.fetch(url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    decoded = int(re.search(r"(\d+) decoded", caught.value.detail or "").group(1))
    assert decoded <= 1024 * 1024 + 1
    assert peak < 20 * 1024 * 1024  # far below the 200 MB the bomb inflates to


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_pages_are_decoded(encoding: str, web: WebStub, fetcher) -> None:
    page = (HTML * 50).encode()
    if encoding == "gzip":
        body = gzip.compress(page)
    elif encoding == "deflate":
        body = zlib.compress(page)
    else:
        packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = packer.compress(page) + packer.flush()
    url = web.add("/z", body, headers={"Content-Encoding": encoding.replace("raw-", "")})
    result = await fetcher.fetch(url)
    assert result.body == page


async def test_unknown_content_encoding_is_refused(web: WebStub, fetcher) -> None:
    url = web.add("/br", b"\x1b\x00", headers={"Content-Encoding": "br"})
    with pytest.raises(UnsupportedContent):
        await fetcher.fetch(url)


async def test_damaged_gzip_is_a_clear_error(web: WebStub, fetcher) -> None:
    url = web.add("/bad", b"\x1f\x8bnot really gzip at all", headers={"Content-Encoding": "gzip"})
    with pytest.raises(SiteRefused):
        await fetcher.fetch(url)


@pytest.mark.parametrize(
    ("content_type", "body", "words"),
    [
        ("image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "an image (image/png)"),
        ("application/zip", b"PK\x03\x04" + b"\0" * 100, "a ZIP archive"),
        ("application/json", b'{"items": [1, 2, 3]}', "JSON data"),
        ("video/mp4", b"\0\0\0\x18ftypmp42", "a video"),
        ("application/octet-stream", b"\0\x01\x02\x03" * 100, "unknown type"),
    ],
)
async def test_non_article_content_is_refused_with_its_type(
    content_type: str, body: bytes, words: str, web: WebStub, fetcher
) -> None:
    url = web.add("/thing", body, content_type=content_type)
    with pytest.raises(UnsupportedContent) as caught:
        await fetcher.fetch(url)
    message = caught.value.user_message
    assert words in message or "octet-stream" in message


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/octet-stream", PDF_HEAD, "application/pdf"),
        ("application/pdf", PDF_HEAD, "application/pdf"),
        ("text/plain", PDF_HEAD, "application/pdf"),
        ("application/octet-stream", HTML.encode(), "text/html"),
        ("application/octet-stream", b"Just some plain words in a file.\nSecond line.", "text/plain"),
        ("application/pdf", HTML.encode(), "text/html"),
        ("application/xhtml+xml", HTML.encode(), "text/html"),
        ("text/plain; charset=utf-8", b"plain notes", "text/plain"),
        ("text/markdown", b"# Title\n\nBody", "text/markdown"),
        ("application/xml", b'<?xml version="1.0"?><html><body><p>x</p></body></html>', "text/html"),
    ],
)
async def test_documents_are_sniffed_when_the_label_is_missing_or_wrong(
    content_type: str, body: bytes, expected: str, web: WebStub, fetcher
) -> None:
    url = web.add("/doc", body, content_type=content_type)
    result = await fetcher.fetch(url)
    assert result.content_type == expected


async def test_xml_that_is_a_feed_is_not_a_document(web: WebStub, fetcher) -> None:
    url = web.add("/feed", RSS, content_type="application/xml")
    with pytest.raises(UnsupportedContent):
        await fetcher.fetch(url)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/rss+xml", RSS, "application/rss+xml"),
        ("application/atom+xml", '<feed xmlns="http://www.w3.org/2005/Atom"></feed>', "application/atom+xml"),
        ("text/xml", RSS, "text/xml"),
        ("text/html; charset=utf-8", RSS, "application/xml"),
        ("text/plain", RSS, "application/xml"),
        ("application/octet-stream", RSS, "application/xml"),
        ("application/feed+json", '{"version": "https://jsonfeed.org/version/1.1", "items": []}',
         "application/feed+json"),
        ("text/html", HTML, "text/html"),
    ],
)
async def test_feeds_are_accepted_under_their_many_labels(
    content_type: str, body: str, expected: str, web: WebStub, fetcher
) -> None:
    url = web.add("/feed", body, content_type=content_type)
    result = await fetcher.fetch(url, accept="feed")
    assert result.content_type == expected
    assert "application/rss+xml" in web.request_headers["/feed"]["Accept"]


async def test_feed_mode_still_refuses_images(web: WebStub, fetcher) -> None:
    url = web.add("/logo.png", b"\x89PNG....", content_type="image/png")
    with pytest.raises(UnsupportedContent) as caught:
        await fetcher.fetch(url, accept="feed")
    assert "feed" in caught.value.user_message


async def test_fetches_run_concurrently_on_one_pool(web: WebStub, fetcher) -> None:
    for i in range(8):
        web.add(f"/p{i}", HTML, delay=0.2)
    results = await asyncio.gather(*(fetcher.fetch(web.url(f"/p{i}")) for i in range(8)))
    assert [r.status for r in results] == [200] * 8


async def test_invalid_links_are_refused_without_traffic(fetcher) -> None:
    for url in ["ftp://example.com/", "notaurl", "http://", "https://user:pw@example.com/", "http://a b/"]:
        with pytest.raises(InvalidURL):
            await fetcher.fetch(url)


async def test_closed_fetcher_cannot_be_used(web: WebStub) -> None:
    fetcher = SafeFetcher(allow_hosts=["127.0.0.1"])
    url = web.add("/a", HTML)
    await fetcher.fetch(url)
    await fetcher.aclose()
    with pytest.raises(RuntimeError):
        await fetcher.fetch(url)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('text/html; charset="UTF-8"', ("text/html", "utf-8")),
        ("TEXT/HTML;Charset=ISO-8859-1", ("text/html", "iso-8859-1")),
        ("application/pdf", ("application/pdf", None)),
        ("", ("", None)),
        (None, ("", None)),
        ("garbage", ("", None)),
    ],
)
def test_parse_content_type(header: str | None, expected: tuple[str, str | None]) -> None:
    assert parse_content_type(header) == expected
