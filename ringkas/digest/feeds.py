"""Reading RSS/Atom feeds: the feed list, conditional fetches through the safe fetcher, parsing.

feedparser only ever sees the bytes the safe fetcher got (never a URL: it would download it itself).
A feed that is down, slow, malformed or huge becomes a `failed` outcome and is logged; it never raises.
"""

from __future__ import annotations

import asyncio
import calendar
import html
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import urljoin, urlsplit

import feedparser

from ringkas.config import Settings
from ringkas.digest.dates import checked_date, feed_dates_doubtful
from ringkas.digest.discover import feed_links, looks_like_html
from ringkas.digest.jsonfeed import looks_like_json, parse_json_feed
from ringkas.digest.models import FeedItem, FeedOutcome, FeedSource, FeedState
from ringkas.digest.outlets import item_key, site_label
from ringkas.digest.relevance import RELEVANT, ai_relevance
from ringkas.documents import FetchResult
from ringkas.errors import ConfigError, RingkasError
from ringkas.reading.markup import tame_attribute_floods
from ringkas.urls import canonicalize, without_credentials

log = logging.getLogger("ringkas.digest.feeds")

MAX_ENTRIES_PER_FEED = 300
LINKED_FEEDS_TRIED = 2  # feeds named by an HTML page that are tried in turn
PARSE_THREADS = 2  # feeds parsed at once (bench/bench_digest.py measures the loop's stalls)
MAX_TITLE_CHARS = 300
MAX_EXCERPT_CHARS = 700
FUTURE_DOUBT = timedelta(hours=26)  # ahead of now by more than any time-zone mistake
_WEIGHT = re.compile(r"\bweight\s*=\s*([0-9]+(?:\.[0-9]+)?)")
_TOPIC = re.compile(r"\btopic\s*=\s*(ai|general)\b", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACES = re.compile(r"\s+")


class Fetcher(Protocol):
    async def fetch(
        self, url: str, *, headers: Mapping[str, str] | None = None, accept: Any = "document"
    ) -> FetchResult: ...


def parse_feed_sources(
    text: str, defaults: Mapping[str, FeedSource] | None = None, *, names: bool = True
) -> list[FeedSource]:
    """Lines of `URL  # Name  weight=1.2 topic=ai`; blank lines and comment lines are skipped.

    A URL found in `defaults` takes the name, weight and topic its line leaves out from there. With
    `names=False` the rest of the comment is only a comment, not the source's display name.
    """
    sources: list[FeedSource] = []
    seen: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        url, *rest = line.split(None, 1)
        tail = rest[0].strip() if rest else ""
        comment = tail[1:] if tail.startswith("#") else ""
        if url in seen:
            continue
        seen.add(url)
        match = _WEIGHT.search(comment)
        topic = _TOPIC.search(comment)
        name = (_TOPIC.sub("", _WEIGHT.sub("", comment)).strip() or None) if names else None
        known = (defaults or {}).get(url)
        sources.append(
            FeedSource(
                url=url,
                name=name or (known.name if known else None),
                weight=(
                    min(max(float(match.group(1)), 0.1), 5.0) if match else known.weight if known else 1.0
                ),
                topic=topic.group(1).lower() if topic else known.topic if known else None,
            )
        )
    return sources


def default_feed_sources() -> list[FeedSource]:
    text = resources.files("ringkas").joinpath("data/feeds.txt").read_text(encoding="utf-8")
    return parse_feed_sources(text)


def feed_sources(settings: Settings) -> list[FeedSource]:
    """`DIGEST_FEEDS` when set, else the built-in list. Lines of a feed list file may carry `weight=` and
    `topic=` in their comment, as in the built-in list; the rest of a comment is just a comment. A built-in
    feed keeps its name, weight and topic unless its line says otherwise; other feeds are named by their
    own title."""
    if not settings.digest_feeds:
        return default_feed_sources()
    builtin = {source.url: source for source in default_feed_sources()}
    sources: list[FeedSource] | None = None
    if settings.digest_feeds_file:
        try:
            text = Path(settings.digest_feeds_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:  # gone since start-up: the URLs read then still hold
            log.warning("feed list unreadable", extra={"path": settings.digest_feeds_file, "error": str(exc)})
        else:
            sources = parse_feed_sources(text, builtin, names=False)
    if sources is None:
        sources = [builtin.get(url, FeedSource(url=url)) for url in dict.fromkeys(settings.digest_feeds)]
    for source in sources:
        parts = urlsplit(source.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(
                f"DIGEST_FEEDS: {source.url[:200]!r} is neither an existing file nor an http(s) feed URL"
            )
    return sources


class _TextExtractor(HTMLParser):
    _SKIP: ClassVar[set[str]] = {"script", "style", "noscript", "iframe", "svg", "template"}
    _BREAK: ClassVar[set[str]] = {"p", "br", "div", "li", "h1", "h2", "h3", "h4", "blockquote", "tr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skipping += 1
        elif tag in self._BREAK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def plain_text(markup: str, limit: int) -> str:
    """Feed HTML (already sanitised by feedparser) to one line of plain text, capped at `limit` chars."""
    if "<" in markup or "&" in markup:
        parser = _TextExtractor()
        try:
            parser.feed(markup[: limit * 20])
            parser.close()
            markup = "".join(parser.parts)
        except Exception:  # malformed markup: fall back to dropping tags
            markup = html.unescape(re.sub(r"<[^>]*>", " ", markup))
    text = _SPACES.sub(" ", _CONTROL.sub("", markup)).strip()
    if len(text) > limit:
        cut = text[:limit].rsplit(" ", 1)[0]
        text = cut.rstrip(",.;:") + "…"
    return text


MAX_UNTITLED_WORDS = 12
MAX_UNTITLED_CHARS = 110
_XML_ENCODING = re.compile(rb"^\s*<\?xml[^>]*\bencoding\s*=", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s")


@dataclass
class _Entry:
    """One entry as a parser gave it, before cleaning."""

    title: str  # may hold markup
    links: list[Any]  # candidate links, best first (relative ones are resolved against the feed)
    content: str  # summary or content, may hold markup
    parsed: datetime | None  # the parser's reading of the date
    raw_date: str | None  # the date as the feed wrote it


def untitled_headline(text: str) -> str:
    """A headline for an untitled item (micro-blogs, podcasts): its first sentence or first words."""
    words = text.split()
    if not words:
        return ""
    head = " ".join(words[:MAX_UNTITLED_WORDS])
    sentence = _SENTENCE_END.split(head, maxsplit=1)[0]
    if len(sentence) >= 20 or sentence == text:
        head = sentence
    if len(head) > MAX_UNTITLED_CHARS:
        head = head[:MAX_UNTITLED_CHARS].rsplit(" ", 1)[0]
    if head != text and not head.endswith((".", "!", "?", "…")):
        head = head.rstrip(",;:-–—") + "…"
    return head


def _stamp(parsed: Any) -> datetime | None:
    if not parsed:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    except (OverflowError, ValueError, TypeError):
        return None


def _feedparser_entries(
    body: bytes, content_type: str | None, charset: str | None
) -> tuple[str, str | None, list[_Entry]]:
    media = content_type or "application/xml"
    if charset and not _XML_ENCODING.match(body[:500]) and not body.startswith((b"\xef\xbb\xbf", b"\xff\xfe",
                                                                                b"\xfe\xff")):
        media = f"{media}; charset={charset}"  # no declaration in the XML: the HTTP header says it
    body = tame_attribute_floods(body)  # xml.sax is quadratic in a tag's attribute count
    parsed = feedparser.parse(body, response_headers={"content-type": media}, sanitize_html=True,
                              resolve_relative_uris=True)
    if not parsed.entries and (parsed.bozo or not parsed.get("version")):
        reason = type(parsed.get("bozo_exception")).__name__ if parsed.bozo else "no feed found"
        raise ValueError(f"not a readable feed ({reason})")
    entries = []
    for entry in parsed.entries[:MAX_ENTRIES_PER_FEED]:
        links: list[Any] = [entry.get("link")]
        links += [link.get("href") for link in entry.get("links", [])
                  if link.get("rel", "alternate") == "alternate"]
        links.append(entry.get("id"))
        for part in entry.get("content") or []:  # the permalink a content block is based on
            links.append(part.get("base"))
        content = entry.get("summary", "")
        if not content and entry.get("content"):
            content = entry["content"][0].get("value", "")
        raw_date, when = None, None
        for key in ("published", "updated", "created"):
            if entry.get(key) or entry.get(f"{key}_parsed"):
                raw_date, when = entry.get(key), _stamp(entry.get(f"{key}_parsed"))
                break
        entries.append(_Entry(entry.get("title", ""), links, content, when,
                              raw_date if isinstance(raw_date, str) else None))
    return parsed.feed.get("title", ""), parsed.feed.get("link"), entries


def _json_entries(body: bytes, charset: str | None) -> tuple[str, str | None, list[_Entry]]:
    feed = parse_json_feed(body, charset=charset)
    entries = []
    for item in feed.items[:MAX_ENTRIES_PER_FEED]:
        raw_date = item.date_published or item.date_modified
        content = item.summary or item.content_html or html.escape(item.content_text)
        entries.append(_Entry(html.escape(item.title), [item.url, item.external_url, item.id], content,
                              None, raw_date))
    return html.escape(feed.title), feed.home_page_url, entries


def _entry_link(candidates: Sequence[Any], base: str, refused: set[str]) -> str | None:
    for candidate in candidates:
        if not isinstance(candidate, str) or not candidate.strip():
            continue
        url = urljoin(base, candidate.strip())
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname or len(url) > 2048:
            continue
        if item_key(url, keep_fragment=True) in refused:  # an empty href resolves to the feed or its site
            continue
        return url
    return None


def source_name(feed_title: str | None, feed_url: str, site_url: str | None = None) -> str:
    return site_label(feed_title, feed_url=feed_url, site_url=site_url)


def parse_feed(
    body: bytes,
    *,
    feed_url: str,
    final_url: str | None = None,
    content_type: str | None = None,
    charset: str | None = None,
    name: str | None = None,
    now: datetime,
    first_fetch: bool = False,
) -> tuple[str | None, list[FeedItem], int]:
    """Parse RSS 0.9x/1.0/2.0, Atom or JSON Feed 1.0/1.1 bytes. Returns (feed title, items, % of entries
    that look like AI news).

    Raises ValueError when the bytes are not a feed.
    """
    if looks_like_json(body) or (content_type or "").endswith("json"):
        raw_title, site_url, entries = _json_entries(body, charset)
    else:
        raw_title, site_url, entries = _feedparser_entries(body, content_type, charset)
    title = plain_text(raw_title, 200) or None
    base = final_url or feed_url
    site = urljoin(base, site_url) if isinstance(site_url, str) and site_url.strip() else None
    outlet = name or source_name(title, feed_url, site)
    refused = {canonicalize(feed_url), canonicalize(base)}
    if site:
        refused.add(canonicalize(site))

    rows: list[tuple[_Entry, str]] = []
    for entry in entries:
        link = _entry_link(entry.links, base, refused)
        if link:
            rows.append((entry, link))
    # links that differ only by #fragment are different items when the feed has several of them
    pages = Counter(item_key(link, keep_fragment=False) for _, link in rows)
    checked = [checked_date(entry.raw_date, entry.parsed) for entry, _ in rows]
    doubtful_feed = feed_dates_doubtful([ok for (entry, _), (_, ok) in zip(rows, checked, strict=True)
                                         if entry.raw_date or entry.parsed])
    items: list[FeedItem] = []
    seen: set[str] = set()
    relevant = 0
    for (entry, link), (published, trusted) in zip(rows, checked, strict=True):
        canonical = item_key(link, keep_fragment=pages[item_key(link, keep_fragment=False)] > 1)
        if canonical in seen:
            continue
        excerpt = plain_text(entry.content, MAX_EXCERPT_CHARS)
        headline = plain_text(entry.title, MAX_TITLE_CHARS) or untitled_headline(excerpt)
        if not headline:
            continue
        seen.add(canonical)
        if excerpt == headline:
            excerpt = ""
        if doubtful_feed:
            published, trusted = None, False
        if published is not None and published > now + FUTURE_DOUBT:  # days ahead: a guess or a bug
            published, trusted = None, False
        elif published is not None:  # hours ahead (a mislabelled zone): it must not stay "new" forever
            published = min(published, now)
        if ai_relevance(headline, excerpt) >= RELEVANT:
            relevant += 1
        items.append(
            FeedItem(
                feed_url=feed_url,
                source=outlet,
                url=item_key(link, keep_fragment=True),  # no tracking parameters, anchor kept
                canonical_url=canonical,
                title=headline,
                excerpt=excerpt,
                published_at=published,
                seen_at=now,
                # undated on the first fetch, or dated so oddly it cannot be believed: not today's news
                age_unknown=not trusted or (published is None and first_fetch),
            )
        )
    share = round(100 * relevant / len(items)) if items else 0
    return title, items, share


@dataclass(frozen=True)
class _Unusable:
    reason: str
    code: str = "error"


class FeedReader:
    """Reads many feeds concurrently (bounded), with conditional requests, each under a deadline."""

    def __init__(self, fetcher: Fetcher, *, concurrency: int = 8, timeout: float = 20.0) -> None:
        self.fetcher = fetcher
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self._parsing: asyncio.Semaphore | None = None

    async def read_all(
        self, sources: Sequence[FeedSource], states: Mapping[str, FeedState], *, now: datetime
    ) -> list[FeedOutcome]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(source: FeedSource) -> FeedOutcome:
            async with gate:
                return await self.read(source, states.get(source.url), now=now)

        return list(await asyncio.gather(*(one(source) for source in sources)))

    async def read(self, source: FeedSource, state: FeedState | None, *, now: datetime) -> FeedOutcome:
        headers: dict[str, str] = {}
        if state and state.etag:
            headers["If-None-Match"] = state.etag
        if state and state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self.timeout):
                result = await self.fetcher.fetch(source.url, headers=headers, accept="feed")
        except TimeoutError:
            return self._failed(source, f"no answer within {self.timeout:g} s")
        except RingkasError as exc:
            return self._failed(source, exc.detail or exc.user_message, code=exc.code)
        except Exception as exc:
            log.exception("feed fetch crashed", extra={"feed": source.url})
            return self._failed(source, type(exc).__name__)
        etag = result.headers.get("etag") or (state.etag if state else None)
        last_modified = result.headers.get("last-modified") or (state.last_modified if state else None)
        elapsed_ms = round(1000 * (asyncio.get_running_loop().time() - started))
        if result.status == 304:
            log.info("feed not modified", extra={"feed": source.url, "ms": elapsed_ms})
            return FeedOutcome(
                url=source.url, status="not_modified", etag=etag, last_modified=last_modified,
                title=state.title if state else None, ai_share=state.ai_share if state else None,
            )
        if result.status >= 400:
            return self._failed(source, f"HTTP {result.status}")
        first_fetch = not (state and state.fetched_before)
        try:
            title, items, share = await self._parse(source, result, now=now, first_fetch=first_fetch)
        except ValueError as exc:
            if not (result.content_type == "text/html" or looks_like_html(result.body)):
                return self._failed(source, str(exc), code="malformed")
            found = await self._linked_feed(source, result, now=now, first_fetch=first_fetch)
            if isinstance(found, FeedOutcome):
                return found
            title, items, share = found
        log.info("feed read", extra={"feed": source.url, "items": len(items), "ms": elapsed_ms})
        return FeedOutcome(
            url=source.url, status="ok", items=tuple(items), title=title, etag=etag,
            last_modified=last_modified, ai_share=share,
        )

    async def _parse(
        self, source: FeedSource, result: FetchResult, *, now: datetime, first_fetch: bool,
        feed_url: str | None = None,
    ) -> tuple[str | None, list[FeedItem], int]:
        # parsing a few MB of XML takes a while: keep the event loop (and Slack acks) responsive, and
        # parse on few threads: every extra CPU-bound thread makes the loop wait longer for the GIL
        if self._parsing is None:
            self._parsing = asyncio.Semaphore(PARSE_THREADS)
        async with self._parsing:
            return await self._parse_now(source, result, now=now, first_fetch=first_fetch, feed_url=feed_url)

    async def _parse_now(
        self, source: FeedSource, result: FetchResult, *, now: datetime, first_fetch: bool,
        feed_url: str | None = None,
    ) -> tuple[str | None, list[FeedItem], int]:
        return await asyncio.to_thread(
            parse_feed,
            result.body,
            feed_url=feed_url or source.url,
            final_url=result.final_url,
            content_type=result.content_type,
            charset=result.charset,
            name=source.name,
            now=now,
            first_fetch=first_fetch,
        )

    async def _linked_feed(
        self, source: FeedSource, page: FetchResult, *, now: datetime, first_fetch: bool
    ) -> tuple[str | None, list[FeedItem], int] | FeedOutcome:
        """An HTML page instead of a feed: read the feed it names in `<link rel="alternate">`."""
        links = await asyncio.to_thread(feed_links, page.body, base_url=page.final_url, charset=page.charset)
        if not links:
            return self._failed(source, "an HTML page, not a feed, and it names no feed", code="not_a_feed")
        failure = _Unusable("an HTML page whose feeds could not be read", "error")
        for target in links[:LINKED_FEEDS_TRIED]:  # the page's first feed, then its next one
            found = await self._read_linked(source, target, now=now, first_fetch=first_fetch)
            if not isinstance(found, _Unusable):
                log.info("feed found on an HTML page", extra={"feed": source.url, "found": target})
                return found
            failure = found
        return self._failed(source, failure.reason, code=failure.code)

    async def _read_linked(
        self, source: FeedSource, target: str, *, now: datetime, first_fetch: bool
    ) -> tuple[str | None, list[FeedItem], int] | _Unusable:
        """(title, items, share) of a feed an HTML page links to, or why it is unusable."""
        shown = without_credentials(target)
        try:
            async with asyncio.timeout(self.timeout):
                result = await self.fetcher.fetch(target, accept="feed")
        except TimeoutError:
            return _Unusable(f"an HTML page; its feed {shown} gave no answer within {self.timeout:g} s")
        except RingkasError as exc:
            return _Unusable(f"an HTML page; its feed {shown}: {exc.detail or exc.user_message}", exc.code)
        if result.status >= 400:
            return _Unusable(f"an HTML page; its feed {shown} answered HTTP {result.status}")
        try:
            return await self._parse(source, result, now=now, first_fetch=first_fetch)
        except ValueError as exc:
            return _Unusable(f"an HTML page; its feed {shown} is {exc}", "malformed")

    @staticmethod
    def _failed(source: FeedSource, reason: str, *, code: str = "error") -> FeedOutcome:
        log.warning("feed skipped", extra={"feed": source.url, "reason": reason, "code": code})
        return FeedOutcome(url=source.url, status="failed", error=f"{code}: {reason}"[:500])
