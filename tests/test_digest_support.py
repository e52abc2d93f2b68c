"""Shared helpers for the digest tests: fixture feeds, an answering model stand-in, service builders."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from ringkas.config import Settings
from ringkas.digest.models import FeedSource
from ringkas.digest.service import DigestService
from ringkas.fetch import SafeFetcher
from ringkas.llm import LLM
from ringkas.storage import Database
from tests.support.web_stub import WebStub

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # the fixture feeds' "today"
_ITEMS = re.compile(r"<(items-[0-9a-f]+)>\n(.*?)\n</\1>", re.S)


def feed_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON items inside the data block of a digest request."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    match = _ITEMS.search(user)
    assert match, "digest request without a delimited data block"
    return [json.loads(line) for line in match.group(2).splitlines() if line.strip()]


def schema_name(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("name", "")


def _theme(headline: str) -> str:
    text = headline.lower()
    if any(word in text for word in ("eu ", "polic", "regulat", "rules", "liability")):
        return "Policy"
    if any(word in text for word in ("chip", "accelerator", "voltra", "gpu")):
        return "Hardware"
    if any(word in text for word in ("funding", "pendanaan", "partner", "hospital")):
        return "Business"
    return "Models"


def digest_responder(body: dict[str, Any]) -> str:
    """Answers digest requests the way a good model would: headlines kept, one-line summaries, stories
    about the same event (Voltra's chip) flagged, themes by topic."""
    items = feed_items(body)
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    if schema_name(body) == "digest_overview" or "`same_as`" in user:
        first_seen: dict[str, int] = {}
        stories = []
        for item in items:
            key = "voltra" if "voltra" in item["headline"].lower() else f"id{item['id']}"
            same_as = first_seen.get(key, 0)
            first_seen.setdefault(key, item["id"])
            entry: dict[str, Any] = {"id": item["id"], "same_as": same_as}
            if "`theme`" in user:
                entry["theme"] = _theme(item["headline"])
            stories.append(entry)
        return json.dumps({"opening": f"A busy day: {items[0]['headline']} leads.", "stories": stories})
    return json.dumps(
        {
            "stories": [
                {"id": item["id"], "headline": item["headline"], "summary": f"Summary of {item['headline']}."}
                for item in items
            ]
        }
    )


def add_fixture_feeds(web: WebStub, *, etag: bool = False) -> dict[str, str]:
    """Serve the sample feeds; returns name -> URL."""
    urls = {}
    for name, ctype in (
        ("lab_rss2.xml", "application/rss+xml"),
        ("outlet_atom.xml", "application/atom+xml; charset=utf-8"),
        ("indo_rss1.xml", "application/rdf+xml"),
        ("wire_rss2.xml", "text/xml"),
    ):
        headers = {"ETag": f'"{name}-v1"', "Last-Modified": "Tue, 10 Mar 2026 08:00:00 GMT"} if etag else {}
        urls[name] = web.add(
            f"/feeds/{name}", (FEEDS / name).read_bytes(), content_type=ctype, headers=headers
        )
    return urls


def fixture_sources(urls: dict[str, str]) -> list[FeedSource]:
    return [
        FeedSource(urls["lab_rss2.xml"], topic="ai", weight=1.3),
        FeedSource(urls["outlet_atom.xml"], topic="general"),
        FeedSource(urls["indo_rss1.xml"]),  # measured: mostly not AI
        FeedSource(urls["wire_rss2.xml"]),  # measured: mostly AI
    ]


def rss(title: str, entries: list[tuple[str, str, datetime]], *, description: str = "") -> str:
    """An RSS 2.0 document with (title, link, published) entries."""
    items = "\n".join(
        f"<item><title>{xml_escape(t)}</title><link>{xml_escape(link)}</link>"
        f"<pubDate>{format_datetime(when)}</pubDate><description>{xml_escape(description)}</description></item>"
        for t, link, when in entries
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{xml_escape(title)}'
        f"</title><link>https://example.org/</link>{items}</channel></rss>"
    )


def recent_feed(
    web: WebStub,
    path: str,
    title: str,
    headlines: list[str],
    *,
    now: datetime | None = None,
    description: str = "",
) -> str:
    now = now or datetime.now(UTC)
    entries = [
        (headline, f"https://{path.strip('/').replace('/', '-')}.example/{i}", now - timedelta(hours=1 + i))
        for i, headline in enumerate(headlines)
    ]
    return web.add(path, rss(title, entries, description=description), content_type="application/rss+xml")


@asynccontextmanager
async def digest_service(
    settings: Settings,
    db: Database,
    *,
    sources: list[FeedSource] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[DigestService]:
    fetcher = SafeFetcher(
        allow_hosts=settings.fetch_allow_hosts,
        timeout=settings.fetch_timeout,
        max_bytes=settings.fetch_max_bytes,
    )
    llm = LLM(settings, db=db, backoff_base=0.01, backoff_max=0.05)
    service = DigestService(
        settings=settings, db=db, fetcher=fetcher, llm=llm, sources=sources, clock=clock or (lambda: NOW)
    )
    try:
        yield service
    finally:
        await fetcher.aclose()
        await llm.aclose()
