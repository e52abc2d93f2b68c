"""Hostile bytes at the sniffing step: content sniffing runs on the event loop, so it must be linear."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ringkas.errors import BlockedAddress, UnsupportedContent
from ringkas.fetch import SafeFetcher, looks_like_feed, looks_like_html
from tests.support.web_stub import WebStub
from tests.test_ssrf import FakeDNS

# 300 comments and then no markup: the old sniffing pattern backtracked through 2^300 ways to split them.
COMMENT_FLOOD = b"<!--a-->" * 300 + b"just words, no markup"


@pytest.fixture
async def fetcher():
    instance = SafeFetcher(allow_hosts=["127.0.0.1"], timeout=5, max_bytes=1024 * 1024)
    yield instance
    await instance.aclose()


def test_comment_flood_is_sniffed_in_linear_time() -> None:
    # In a child process so that a regression fails here instead of freezing the whole test run
    # (the regex engine holds the GIL, so no in-process timeout could fire).
    probe = (
        "from ringkas.fetch import looks_like_html, looks_like_feed\n"
        f"body = {COMMENT_FLOOD!r}\n"
        "print(looks_like_html(body), looks_like_feed(body), looks_like_html(body + b'<html>'))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60, check=True)
    assert done.stdout.split() == [b"False", b"False", b"False"]


def test_comments_before_the_real_start_are_still_skipped() -> None:
    assert looks_like_html(b"<!-- one --> <!-- two -->\n<!doctype html><html><p>x</p></html>")
    assert looks_like_html(b"<?xml version='1.0'?><!-- a --><html xmlns='http://www.w3.org/1999/xhtml'>")
    assert looks_like_feed(b'<?xml version="1.0"?><!-- c --><?xml-stylesheet href="s.xsl"?>\n<rss>')
    # A comment ends at its first "-->": text after it is not a comment, whatever follows.
    assert not looks_like_html(b"<!-- a --> not a comment --> <p>")


async def test_comment_flood_served_without_a_type_is_refused_plainly(web: WebStub, fetcher) -> None:
    body = b"\x00\x01" + COMMENT_FLOOD  # binary-looking: neither HTML, feed nor text
    url = web.add("/flood", body, content_type="application/octet-stream")
    with pytest.raises(UnsupportedContent):
        await fetcher.fetch(url)
    text_url = web.add("/flood.txt", COMMENT_FLOOD, content_type="application/octet-stream")
    result = await fetcher.fetch(text_url)
    assert result.content_type == "text/plain"


async def test_an_outside_page_cannot_redirect_into_an_allow_listed_intranet_host(web: WebStub) -> None:
    web.add("/admin/delete-all", "<html><body><p>Internal admin page.</p></body></html>")
    web.add("/internal-story", "<html><body><p>Intranet story shared directly.</p></body></html>")
    web.redirect("/innocent", f"http://intranet.example:{web.port}/admin/delete-all")
    dns = FakeDNS({"news.example": ["127.0.0.1"], "intranet.example": ["127.0.0.1"]}, port=web.port)
    fetcher = SafeFetcher(
        allow_hosts=["intranet.example"], resolver=dns, extra_allowed_networks=["127.0.0.1/32"], timeout=5
    )
    try:
        with pytest.raises(BlockedAddress):
            await fetcher.fetch("http://news.example/innocent")
        assert web.hits["/innocent"] == 1 and web.hits["/admin/delete-all"] == 0
        # Shared directly, the allow-listed host is still read.
        direct = await fetcher.fetch(f"http://intranet.example:{web.port}/internal-story")
        assert b"shared directly" in direct.body
    finally:
        await fetcher.aclose()
