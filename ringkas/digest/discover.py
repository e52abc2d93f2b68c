"""Feeds an HTML page names in its `<link rel="alternate" type="application/rss+xml" href="…">` tags."""

from __future__ import annotations

import contextlib
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

FEED_LINK_TYPES = {
    "application/rss+xml": 0, "application/atom+xml": 1, "application/feed+json": 2,
    "application/json": 3, "application/rdf+xml": 4, "application/xml": 5, "text/xml": 6,
}
HEAD_BYTES = 512 * 1024  # feed links live in <head>; a page's body is never read
MAX_LINKS = 10
_HTML = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|meta|title|body)\b", re.I | re.S)


def looks_like_html(body: bytes) -> bool:
    return bool(_HTML.match(body[:4096].lstrip(b"\xef\xbb\xbf")))


class _FeedLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str]] = []
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "body":
            self.done = True
            return
        if tag != "link" or len(self.found) >= MAX_LINKS:
            return
        values = {name.lower(): (value or "") for name, value in attrs[:30]}
        rels = values.get("rel", "").lower().split()
        kind = values.get("type", "").lower().split(";")[0].strip()
        href = values.get("href", "").strip()
        if "alternate" in rels and kind in FEED_LINK_TYPES and href:
            self.found.append((FEED_LINK_TYPES[kind], href))

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.done = True


def feed_links(body: bytes, *, base_url: str, charset: str | None = None) -> list[str]:
    """Absolute http(s) feed URLs a page declares, RSS before Atom before JSON Feed, without the page."""
    head = body[:HEAD_BYTES]
    try:
        text = head.decode(charset or "utf-8", errors="replace")
    except LookupError:
        text = head.decode("utf-8", errors="replace")
    parser = _FeedLinks()
    with contextlib.suppress(Exception):  # broken markup: whatever was found before it still counts
        parser.feed(text)
        parser.close()
    found: list[str] = []
    page = base_url.split("#")[0]
    for _, href in sorted(parser.found, key=lambda pair: pair[0]):
        url = urljoin(base_url, href)
        parts = urlsplit(url)
        if parts.scheme in {"http", "https"} and parts.hostname and url.split("#")[0] != page \
                and url not in found and len(url) <= 2048:
            found.append(url)
    return found
