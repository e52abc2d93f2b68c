"""A strict reader of JSON Feed 1.0 and 1.1 (https://www.jsonfeed.org/version/1.1/).

feedparser does not read JSON Feed, and the PyPI readers are thin dict wrappers (one item without an `id`
rejects the whole feed, field types are not checked), so this reads the spec's fields itself: a document
that is not a JSON Feed raises ValueError; an item that breaks the spec is skipped, not the feed.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass

VERSIONS = ("https://jsonfeed.org/version/1", "https://jsonfeed.org/version/1.1")
MAX_ITEMS = 1000


@dataclass(frozen=True)
class JsonFeedItem:
    id: str
    url: str | None
    external_url: str | None
    title: str
    summary: str
    content_html: str
    content_text: str
    date_published: str | None
    date_modified: str | None


@dataclass(frozen=True)
class JsonFeed:
    version: str
    title: str
    home_page_url: str | None
    feed_url: str | None
    items: tuple[JsonFeedItem, ...]


def looks_like_json(body: bytes) -> bool:
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _optional(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _decode(body: bytes, charset: str | None) -> str:
    """JSON Feed is UTF-8 (RFC 8259); a server's declared charset is honoured when the bytes are not."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        if charset:
            try:
                codecs.lookup(charset)
                return body.decode(charset)
            except (LookupError, UnicodeDecodeError):
                pass
        raise ValueError("not a readable feed (JSON that is not UTF-8)") from None


def _item(raw: object) -> JsonFeedItem | None:
    if not isinstance(raw, dict):
        return None
    ident = raw.get("id")
    if isinstance(ident, bool) or not isinstance(ident, (str, int, float)):  # 1.0 feeds often use numbers
        return None
    ident = str(ident).strip()
    if not ident:
        return None
    content_html, content_text = _text(raw.get("content_html")), _text(raw.get("content_text"))
    return JsonFeedItem(
        id=ident,
        url=_optional(raw.get("url")),
        external_url=_optional(raw.get("external_url")),
        title=_text(raw.get("title")),
        summary=_text(raw.get("summary")),
        content_html=content_html,
        content_text=content_text,
        date_published=_optional(raw.get("date_published")),
        date_modified=_optional(raw.get("date_modified")),
    )


def parse_json_feed(body: bytes, *, charset: str | None = None) -> JsonFeed:
    """Raises ValueError when `body` is not a JSON Feed of version 1 or 1.1."""
    text = _decode(body, charset)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("not a readable feed (broken JSON)") from None
    if not isinstance(data, dict):
        raise ValueError("not a readable feed (JSON without a feed object)")
    version = data.get("version")
    if not isinstance(version, str) or version.rstrip("/") not in VERSIONS:
        raise ValueError("not a readable feed (JSON without a JSON Feed version)")
    items = data.get("items")
    if not isinstance(items, list):
        raise ValueError("not a readable feed (JSON Feed without items)")
    parsed = tuple(item for item in (_item(raw) for raw in items[:MAX_ITEMS]) if item is not None)
    return JsonFeed(
        version=version,
        title=_text(data.get("title")).strip(),
        home_page_url=_optional(data.get("home_page_url")),
        feed_url=_optional(data.get("feed_url")),
        items=parsed,
    )
