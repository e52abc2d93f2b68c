"""Feed lists, parsing (RSS 2.0, Atom, RSS 1.0) and reading feeds through the safe fetcher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ringkas.digest.feeds import (
    FeedReader,
    default_feed_sources,
    feed_sources,
    parse_feed,
    parse_feed_sources,
    plain_text,
)
from ringkas.digest.models import FeedSource, FeedState
from ringkas.errors import ConfigError
from ringkas.fetch import SafeFetcher
from tests.test_digest_support import FEEDS, NOW, add_fixture_feeds, rss

BUILTIN = [
    "https://openai.com/news/rss.xml",
    "https://deepmind.google/blog/rss.xml",
    "https://research.google/blog/rss/",
    "https://news.microsoft.com/source/topics/ai/feed/",
    "https://huggingface.co/blog/feed.xml",
    "https://techcrunch.com/category/artificial-intelligence/feed/",
    "https://www.theverge.com/rss/ai-artificial-intelligence/index.xml",
    "https://arstechnica.com/ai/feed/",
    "https://www.technologyreview.com/topic/artificial-intelligence/feed",
    "https://the-decoder.com/feed/",
    "https://simonwillison.net/atom/everything/",
    "https://hnrss.org/newest?q=AI+OR+LLM+OR+OpenAI&points=100",
    "https://inet.detik.com/rss",
    "https://www.cnnindonesia.com/teknologi/rss",
]


def test_builtin_feed_list_is_the_documented_one() -> None:
    sources = default_feed_sources()
    assert [s.url for s in sources] == BUILTIN
    assert all(s.name for s in sources)  # every line names its source
    by_url = {s.url: s for s in sources}
    assert by_url["https://inet.detik.com/rss"].topic == "general"
    assert by_url["https://openai.com/news/rss.xml"].topic == "ai"
    assert by_url["https://openai.com/news/rss.xml"].weight > 1


def test_feed_list_file_format() -> None:
    text = (
        "# my feeds\n\n"
        "https://a.example/feed  # Source A  weight=2 topic=general\n"
        "\thttps://b.example/rss.xml\t# B\n"
        "https://c.example/feed#frag\n"
        "https://a.example/feed  # duplicate\n"
    )
    sources = parse_feed_sources(text)
    assert sources == [
        FeedSource("https://a.example/feed", "Source A", 2.0, "general"),
        FeedSource("https://b.example/rss.xml", "B"),
        FeedSource("https://c.example/feed#frag"),
    ]


def test_digest_feeds_setting_file_and_csv(make_settings, tmp_path: Path) -> None:
    listing = tmp_path / "feeds.txt"
    listing.write_text("# comment\nhttps://x.example/rss\n\nhttps://inet.detik.com/rss  # detik\n")
    settings = make_settings(DIGEST_FEEDS=str(listing))
    sources = feed_sources(settings)
    assert [s.url for s in sources] == ["https://x.example/rss", "https://inet.detik.com/rss"]
    assert sources[1].name == "detikInet"  # a built-in feed keeps its name and topic
    csv = feed_sources(make_settings(DIGEST_FEEDS="https://x.example/rss, https://y.example/atom"))
    assert [s.url for s in csv] == ["https://x.example/rss", "https://y.example/atom"]
    assert [s.url for s in feed_sources(make_settings())] == BUILTIN


def test_own_feeds_file_keeps_names_weights_and_topics(make_settings, tmp_path: Path) -> None:
    listing = tmp_path / "my feeds.txt"
    listing.write_text(
        "# our list\n\n"
        "https://x.example/rss  # Outlet X, added by Budi  weight=2 topic=general\n"
        "  https://inet.detik.com/rss\n"  # built-in feed, no options: keeps the built-in ones
        "https://openai.com/news/rss.xml  # less of this one  weight=0.5\n",  # own options win, topic kept
        encoding="utf-8",
    )
    sources = feed_sources(make_settings(DIGEST_FEEDS=str(listing)))
    assert sources == [
        FeedSource("https://x.example/rss", None, 2.0, "general"),  # a comment is not a name
        FeedSource("https://inet.detik.com/rss", "detikInet", 1.0, "general"),
        FeedSource("https://openai.com/news/rss.xml", "OpenAI News", 0.5, "ai"),
    ]


@pytest.mark.parametrize("value", ["/no/such/feeds.txt", "feeds.txt", "https://ok.example/rss, ftp://x.example/f"])
def test_digest_feeds_that_are_neither_a_file_nor_urls_are_a_config_error(make_settings, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        feed_sources(make_settings(DIGEST_FEEDS=value))
    assert "DIGEST_FEEDS" in info.value.user_message and "http" in info.value.user_message


def test_parse_rss2_resolves_links_strips_markup_and_dates() -> None:
    title, items, share = parse_feed(
        (FEEDS / "lab_rss2.xml").read_bytes(),
        feed_url="https://lab.example/rss",
        final_url="https://lab.example/rss",
        now=NOW,
    )
    assert title == "Example Lab News"
    assert len(items) == 43
    nova = items[0]
    assert nova.title == "Introducing Nova-3, our most capable reasoning model"
    assert nova.canonical_url == "https://lab.example/news/nova-3"  # utm_ parameters removed
    assert nova.url == "https://lab.example/news/nova-3"  # story links carry no tracking either
    assert nova.published_at == datetime(2026, 3, 10, 6, 0, tzinfo=UTC)
    assert nova.excerpt == "Nova-3 solves olympiad-level math problems and is available today in the API."
    assert "alert" not in nova.excerpt and "<" not in nova.excerpt
    assert items[1].url == "https://lab.example/news/clinical-partnership"  # relative link resolved
    assert nova.source == "Example Lab News"
    assert share < 20  # old research notes without AI vocabulary


def test_parse_atom_and_rss1() -> None:
    title, items, _ = parse_feed(
        (FEEDS / "outlet_atom.xml").read_bytes(), feed_url="https://t.example/atom", now=NOW
    )
    assert title == "TechDaily" and len(items) == 6
    assert items[0].published_at == datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
    assert items[0].excerpt == "The new model from Example Lab tops several math benchmarks."
    title, items, share = parse_feed(
        (FEEDS / "indo_rss1.xml").read_bytes(), feed_url="https://i.example/rss", name="InfoTekno ID", now=NOW
    )
    assert title == "InfoTekno" and len(items) == 3
    assert items[0].canonical_url == "https://techdaily.example/2026/03/10/nova-3"
    assert items[0].published_at == datetime(2026, 3, 10, 0, 30, tzinfo=UTC)  # +07:00 converted
    assert items[0].source == "InfoTekno ID"  # the configured name wins over the feed's title
    assert share == 33


def test_undated_entries_on_first_fetch_have_unknown_age() -> None:
    body = (FEEDS / "wire_rss2.xml").read_bytes()
    _, first, _ = parse_feed(body, feed_url="https://w.example/rss", now=NOW, first_fetch=True)
    _, later, _ = parse_feed(body, feed_url="https://w.example/rss", now=NOW, first_fetch=False)
    assert [i.age_unknown for i in first] == [False, False, False, True]
    assert not any(i.age_unknown for i in later)


def test_future_dates_are_clamped_and_bad_links_dropped() -> None:
    body = rss(
        "Odd",
        [
            ("From the future", "https://o.example/future", NOW + timedelta(days=30)),
            ("A mislabelled zone", "https://o.example/zone", NOW + timedelta(hours=3)),
            ("Script link", "javascript:alert(1)", NOW),
            ("", "https://o.example/untitled", NOW),
        ],
    )
    _, items, _ = parse_feed(body.encode(), feed_url="https://o.example/rss", now=NOW)
    # a month ahead is no date to believe (never today's news); hours ahead is clamped to now
    assert [(i.title, i.published_at, i.age_unknown) for i in items] == [
        ("From the future", None, True), ("A mislabelled zone", NOW, False)]


def test_not_a_feed_raises() -> None:
    with pytest.raises(ValueError, match="not a readable feed"):
        parse_feed((FEEDS / "broken.xml").read_bytes(), feed_url="https://b.example/rss", now=NOW)
    with pytest.raises(ValueError):
        parse_feed(b"\x00\x01garbage", feed_url="https://b.example/rss", now=NOW)


def test_plain_text_caps_and_cleans() -> None:
    assert plain_text("<p>Hello&nbsp;<b>world</b></p><style>x{}</style>", 100) == "Hello world"
    assert plain_text("word " * 100, 20).endswith("…")
    assert len(plain_text("word " * 100, 20)) <= 21
    assert plain_text("a\x00b\u200bc", 10) == "abc"


@pytest.fixture
async def fetcher():
    client = SafeFetcher(allow_hosts=["127.0.0.1"], timeout=1.5, max_bytes=200_000)
    yield client
    await client.aclose()


async def test_reader_skips_broken_slow_huge_and_missing_feeds(web, fetcher) -> None:
    urls = add_fixture_feeds(web)
    broken = web.add("/broken.xml", (FEEDS / "broken.xml").read_bytes(), content_type="text/html")
    slow = web.add("/slow.xml", (FEEDS / "wire_rss2.xml").read_bytes(), content_type="text/xml", delay=5)
    huge_body = rss("Huge", [(f"AI story {i}", f"https://h.example/{i}", NOW) for i in range(4000)])
    huge = web.add("/huge.xml", huge_body, content_type="application/rss+xml")
    missing = web.url("/gone.xml")
    sources = [FeedSource(u) for u in [*urls.values(), broken, slow, huge, missing]]
    reader = FeedReader(fetcher, concurrency=4, timeout=10)
    outcomes = {o.url: o for o in await reader.read_all(sources, {}, now=NOW)}
    assert {u for u, o in outcomes.items() if o.status == "ok"} == set(urls.values())
    for url in (broken, slow, huge, missing):
        assert outcomes[url].status == "failed" and not outcomes[url].items
    assert outcomes[broken].error.startswith("not_a_feed")  # an HTML error page names no feed
    assert outcomes[slow].error.startswith("timed_out")
    assert outcomes[huge].error.startswith("too_large")
    assert outcomes[missing].error.startswith("site_refused")
    assert len(outcomes[urls["lab_rss2.xml"]].items) == 43


async def test_conditional_request_sends_validators_and_handles_304(web, fetcher) -> None:
    urls = add_fixture_feeds(web, etag=True)
    source = FeedSource(urls["outlet_atom.xml"])
    reader = FeedReader(fetcher)
    first = await reader.read(source, None, now=NOW)
    assert first.status == "ok" and first.etag == '"outlet_atom.xml-v1"'
    assert first.last_modified == "Tue, 10 Mar 2026 08:00:00 GMT"
    assert "If-None-Match" not in web.request_headers["/feeds/outlet_atom.xml"]
    web.add("/feeds/outlet_atom.xml", b"", status=304)
    state = FeedState(url=source.url, etag=first.etag, last_modified=first.last_modified, fetched_before=True)
    second = await reader.read(source, state, now=NOW)
    sent = web.request_headers["/feeds/outlet_atom.xml"]
    assert sent["If-None-Match"] == '"outlet_atom.xml-v1"'
    assert sent["If-Modified-Since"] == "Tue, 10 Mar 2026 08:00:00 GMT"
    assert "Ringkas" in sent["User-Agent"]
    assert second.status == "not_modified" and second.etag == first.etag and not second.items
