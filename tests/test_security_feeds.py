"""Hostile feeds: entity bombs, attribute floods, item links into the internal network."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from ringkas.digest.feeds import FeedReader
from ringkas.digest.models import FeedSource
from ringkas.fetch import SafeFetcher
from tests.support.web_stub import WebStub

NOW = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


def flooded_feed(attributes: int) -> bytes:
    flood = " ".join(f"a{i}='x'" for i in range(attributes))
    return (
        "<?xml version='1.0'?><rss version='2.0'><channel>"
        f"<title {flood}>Lab news</title>"
        "<item><title>Lab ships an open model</title><link>https://news.example/open-model</link></item>"
        "</channel></rss>"
    ).encode()


def laughs_feed(internal_link: str) -> bytes:
    entities = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "' + f"&l{i - 1};" * 10 + '">' for i in range(1, 10)
    )
    return (
        f'<?xml version="1.0"?><!DOCTYPE rss [{entities}]><rss version="2.0"><channel>'
        "<title>Bomb &l9;</title>"
        f"<item><title>Model news &l9;</title><link>{internal_link}</link></item>"
        "<item><title>Second story</title><link>https://news.example/second</link></item>"
        "</channel></rss>"
    ).encode()


def test_attribute_flood_in_a_feed_is_parsed_in_linear_time() -> None:
    # xml.sax looks every attribute up among all earlier ones: 200,000 of them took minutes.
    probe = (
        "from datetime import datetime, UTC\n"
        "from ringkas.digest.feeds import parse_feed\n"
        "from tests.test_security_feeds import flooded_feed\n"
        "title, items, _ = parse_feed(flooded_feed(200_000), feed_url='https://lab.example/feed',"
        " now=datetime.now(UTC))\n"
        "print(title, '|', items[0].title)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60, check=True)
    assert done.stdout.strip() == b"Lab news | Lab ships an open model"


async def test_entity_bomb_is_not_expanded_and_item_links_are_never_fetched(web: WebStub) -> None:
    web.add("/latest/meta-data/", "ami-id\ninstance-id")
    internal = web.url("/latest/meta-data/")
    feed_url = web.add("/feed.xml", laughs_feed(internal), content_type="application/rss+xml")
    fetcher = SafeFetcher(allow_hosts=["127.0.0.1"], timeout=5)
    try:
        [outcome] = await FeedReader(fetcher).read_all([FeedSource(url=feed_url)], {}, now=NOW)
    finally:
        await fetcher.aclose()
    assert outcome.status == "ok"
    titles = [item.title for item in outcome.items]
    assert all(len(title) < 200 for title in titles) and "Second story" in titles
    assert "lollollol" not in " ".join(titles) + (outcome.title or "")
    assert web.hits["/latest/meta-data/"] == 0  # a digest lists item links; it never opens them
