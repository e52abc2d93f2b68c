"""Feeds as the real world writes them: JSON Feed, untitled items, #fragment links, odd dates, charsets only
in the HTTP header, empty hrefs, HTML pages that link their feed, raw feed titles, feed-click parameters."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from ringkas.digest.dates import checked_date, strict_date
from ringkas.digest.discover import feed_links
from ringkas.digest.feeds import FeedReader, parse_feed, untitled_headline
from ringkas.digest.jsonfeed import parse_json_feed
from ringkas.digest.models import FeedSource
from ringkas.digest.outlets import item_key, site_label
from ringkas.digest.select import in_window
from ringkas.fetch import SafeFetcher
from tests.test_digest_support import FEEDS, NOW


def parse(name: str, **options):  # type: ignore[no-untyped-def]
    body = (FEEDS / name).read_bytes()
    return parse_feed(body, feed_url=f"https://feeds.example/{name}", now=NOW, **options)


def today(items):  # type: ignore[no-untyped-def]
    return {item.title for item in in_window(items, NOW - timedelta(hours=24), NOW)}


# --- JSON Feed -----------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/feed+json", "application/json", None])
def test_json_feed_1_0(content_type: str | None) -> None:
    title, items, share = parse("jsonfeed_v1.json", content_type=content_type)
    assert title == "Tiny Lab Notes" and share == 100
    by_url = {item.url: item for item in items}
    assert len(items) == 3  # the item without an id breaks the spec and is skipped, not the feed
    first = by_url["https://notes.tinylab.example/2026/03/open-weights-reasoning-model"]
    assert first.title == "Tiny Lab open-sources a 7B reasoning model"
    assert first.excerpt.startswith("The 7B model matches larger LLMs on math benchmarks & ships")
    assert first.published_at == NOW - timedelta(hours=9, minutes=45)  # 06:15+07:00
    assert first.source == "Tiny Lab Notes"
    untitled = by_url["https://notes.tinylab.example/2026/03/microblog"]  # numeric and string ids alike
    assert untitled.title == "Shipped the new inference server for our language model today."
    assert today(items) == {first.title, untitled.title}  # last month's post is not today's news


def test_json_feed_1_1() -> None:
    title, items, _ = parse("jsonfeed_v11.json", content_type="application/feed+json")
    assert title == "Agent Weekly"
    urls = [item.url for item in items]
    assert urls == [
        "https://agentweekly.example/p/claude-agents",  # utm_* gone
        "https://research.example.org/papers/agent-eval",  # external_url when there is no url
        "https://agentweekly.example/p/untitled-note",
    ]
    assert items[0].excerpt == "Claude can now operate a browser for a whole team, with audit logs."
    assert items[1].published_at == NOW - timedelta(hours=5)  # date_modified when unpublished
    assert items[2].title == "Quick note: Mistral released a new open-weights coding model this morning."


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"version": "https://jsonfeed.org/version/2", "items": []}', "version"),
        (b'{"title": "no version", "items": []}', "version"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "title": "x"}', "without items"),
        (b"[1, 2, 3]", "feed object"),
        (b'{"version": ', "broken JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "broken JSON"),
        ('{"title": "é"}'.encode("utf-16"), "UTF-8"),
    ],
)
def test_json_that_is_not_a_json_feed_is_named_as_such(body: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_json_feed(body)
    with pytest.raises(ValueError, match="not a readable feed"):
        parse_feed(body, feed_url="https://x.example/feed.json", content_type="application/json", now=NOW)


def test_json_feed_in_a_declared_legacy_charset() -> None:
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "Berita AI Café",
                       "items": [{"id": "1", "url": "https://c.example/1", "title": "Modèle d'IA",
                                  "date_published": "2026-03-10T08:00:00Z"}]}, ensure_ascii=False)
    title, items, _ = parse_feed(body.encode("latin-1"), feed_url="https://c.example/feed.json",
                                 content_type="application/feed+json", charset="iso-8859-1", now=NOW)
    assert title == "Berita AI Café" and items[0].title == "Modèle d'IA"


# --- items -------------------------------------------------------------------------------------


def test_untitled_items_take_their_first_words() -> None:
    _, items, _ = parse("untitled_rss.xml")
    titles = [item.title for item in items]
    assert titles == [
        "Episode 212: we talk to the team behind an open-source speech recognition…",
        "Short one today. GPU prices for AI training fell again.",
    ]  # an item with neither title nor text is left out
    assert items[0].url == "https://modelminutes.example/episodes/212"  # the permalink guid
    assert items[0].excerpt.startswith("Episode 212: we talk")
    assert untitled_headline("") == ""
    assert untitled_headline("word " * 50).endswith("…") and len(untitled_headline("word " * 50)) <= 111


def test_fragment_links_are_distinct_items() -> None:
    _, items, _ = parse("fragments_atom.xml")
    assert [item.url for item in items] == [
        "https://exampleai.example/changelog#embeddings-v3",
        "https://exampleai.example/changelog#batch-discount",
        "https://exampleai.example/changelog#deprecation",
    ]
    assert len({item.canonical_url for item in items}) == 3
    assert items[0].source == "Example AI"  # "Changelog – Example AI": the site's name
    # a lone link with an anchor is the page itself
    assert item_key("https://a.example/post?utm_source=x#comments", keep_fragment=False) == "https://a.example/post"


def test_empty_href_uses_the_entry_id_or_content_permalink_never_the_feed() -> None:
    _, items, _ = parse_feed((FEEDS / "empty_href_atom.xml").read_bytes(),
                             feed_url="https://medium.com/feed/@ana", now=NOW)
    assert [item.url for item in items] == [
        "https://medium.com/@ana/fine-tuning-a-small-language-model-1a2b3c",  # the entry's id
        "https://medium.com/@ana/evaluating-ai-agents-4d5e6f",  # its content's xml:base permalink
        "https://medium.com/@ana/rag-pipelines-7g8h9i",  # source=rss-…, mwrsm and utm_* stripped
    ]  # the entry with nothing but an empty href is left out
    assert all("feed" not in item.url for item in items)
    assert {item.source for item in items} == {"Ana Rahma (Medium)"}


# --- dates -------------------------------------------------------------------------------------


def test_implausible_dates_are_not_todays_news() -> None:
    _, items, _ = parse("odd_dates_rss.xml")
    by_title = {item.title: item for item in items}
    old = by_title["AI chip startup raises funds (ten days old)"]
    assert old.published_at is not None and old.published_at.date().isoformat() == "2026-02-28"
    assert today(items) == {"OpenAI model news from this morning", "An AI story with a proper RFC 822 date"}
    for title in ("An AI story with a year-only date", "An AI story with an unparseable date",
                  "An AI story dated next year"):
        assert by_title[title].age_unknown and by_title[title].published_at is None


def test_date_checks() -> None:
    assert strict_date("2020/1/10 14:33:00").isoformat() == "2020-01-10T14:33:00+00:00"
    assert strict_date("2026-03-10T08:00:00+07:00").isoformat() == "2026-03-10T01:00:00+00:00"
    assert strict_date("2026") is None and strict_date("last week") is None
    guessed = NOW.replace(month=12, day=1)  # feedparser's reading of "2020/1/10"-style dates
    assert checked_date("2026/3/1 10:00:00", guessed)[0].day == 1
    assert checked_date("2026/3/1 10:00:00", guessed)[0].month == 3
    assert checked_date("10 March 2026", NOW) == (NOW, True)  # the raw text shows year, month and day
    assert checked_date("Maret 2026", NOW.replace(day=1)) == (None, False)
    assert checked_date(None, None) == (None, True)  # undated


DATES = ["2026", "Q1 2026", "Tue, 10 Mar 2026 08:00:00 GMT"]


def test_a_feed_whose_dates_are_mostly_guesses_is_not_dated_at_all() -> None:
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Guess</title>'
        + "".join(f"<item><title>AI story {i}</title><link>https://g.example/{i}</link>"
                  f"<pubDate>{d}</pubDate></item>" for i, d in enumerate(DATES))
        + "</channel></rss>"
    ).encode()
    _, items, _ = parse_feed(body, feed_url="https://g.example/rss", now=NOW)
    assert all(item.age_unknown for item in items)


# --- charsets ----------------------------------------------------------------------------------


def test_http_charset_counts_when_the_xml_declares_none() -> None:
    body = (FEEDS / "cp1251_no_declaration.xml").read_bytes()
    title, items, _ = parse_feed(body, feed_url="https://ai-novosti.example/rss", charset="windows-1251",
                                 content_type="application/rss+xml", now=NOW)
    assert title == "Новости ИИ"
    assert [item.title for item in items][:2] == ["Нейросеть 1: новая языковая модель ИИ",
                                                   "Нейросеть 2: новая языковая модель ИИ"]
    assert all("Ð" not in item.title and "Í" not in item.title for item in items)


def test_xml_declaration_still_wins_over_a_wrong_header() -> None:
    body = ('<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel><title>Café IA</title>'
            "<item><title>Modèle</title><link>https://c.example/1</link></item></channel></rss>").encode("latin-1")
    title, items, _ = parse_feed(body, feed_url="https://c.example/rss", charset="utf-8", now=NOW)
    assert title == "Café IA" and items[0].title == "Modèle"


# --- labels ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "url", "label"),
    [
        ("newest submissions : homelab", "https://www.reddit.com/r/homelab/new/.rss", "r/homelab"),
        ("Stories by Jane Doe on Medium", "https://medium.com/feed/@jane", "Jane Doe (Medium)"),
        ("AI News – The Verge", "https://www.theverge.com/rss/ai.xml", "The Verge"),
        ("TechCrunch » Artificial Intelligence", "https://techcrunch.com/feed/", "TechCrunch"),
        ("Blog – Anthropic", "https://www.anthropic.com/feed", "Anthropic"),
        ("Hacker News: Newest", "https://hnrss.org/newest", "Hacker News"),
        ("RSS Feed", "https://www.example.org/rss", "example.org"),
        (None, "https://www.example.org/rss", "example.org"),
        ("Simon Willison's Weblog", "https://simonwillison.net/atom/everything/", "Simon Willison's Weblog"),
    ],
)
def test_source_labels_name_the_site(title: str | None, url: str, label: str) -> None:
    assert site_label(title, feed_url=url) == label


# --- reading through the fetcher ------------------------------------------------------------------


@pytest.fixture
async def fetcher():
    client = SafeFetcher(allow_hosts=["127.0.0.1"], timeout=3, max_bytes=500_000)
    yield client
    await client.aclose()


async def test_reader_reads_json_feed_header_charsets_and_html_pages(web, fetcher) -> None:
    lab = web.add("/feeds/lab_rss2.xml", (FEEDS / "lab_rss2.xml").read_bytes(),
                  content_type="application/rss+xml")
    json_feed = web.add("/feed.json", (FEEDS / "jsonfeed_v11.json").read_bytes(),
                        content_type="application/feed+json")
    cp1251 = web.add("/ru.xml", (FEEDS / "cp1251_no_declaration.xml").read_bytes(),
                     content_type="text/xml; charset=windows-1251")
    page = web.add("/blog/", (FEEDS / "page_with_feed.html").read_bytes(),
                   content_type="text/html; charset=utf-8")
    bare = web.add("/bare.html", b"<!doctype html><html><head><title>x</title></head><body>hi</body></html>",
                   content_type="text/html")
    dead_link = web.add("/dead.html", b'<html><head><link rel="alternate" type="application/rss+xml" '
                        b'href="/gone.xml"></head></html>', content_type="text/html")
    second = web.add("/second.html", b'<html><head><link rel="alternate" type="application/rss+xml" '
                     b'href="/gone.xml"><link rel="alternate" type="application/feed+json" href="/feed.json">'
                     b"</head></html>", content_type="text/html")
    reader = FeedReader(fetcher, timeout=10)
    sources = [FeedSource(u) for u in (json_feed, cp1251, page, bare, dead_link, second)]
    outcomes = {o.url: o for o in await reader.read_all(sources, {}, now=NOW)}
    assert outcomes[json_feed].status == "ok" and len(outcomes[json_feed].items) == 3
    assert outcomes[cp1251].items[0].title == "Нейросеть 1: новая языковая модель ИИ"
    from_page = outcomes[page]
    assert from_page.status == "ok" and len(from_page.items) == 43  # the RSS feed named in <head>
    direct = await reader.read(FeedSource(lab), None, now=NOW)
    assert [i.url for i in from_page.items] == [i.url for i in direct.items]
    assert outcomes[bare].status == "failed" and "names no feed" in outcomes[bare].error
    assert outcomes[dead_link].status == "failed" and "gone.xml" in outcomes[dead_link].error
    assert outcomes[second].status == "ok" and len(outcomes[second].items) == 3  # its next feed


def test_feed_links_prefer_rss_and_ignore_the_body() -> None:
    body = (FEEDS / "page_with_feed.html").read_bytes()
    assert feed_links(body, base_url="https://lab.example/blog/") == [
        "https://lab.example/feeds/lab_rss2.xml",
        "https://lab.example/comments.atom",
    ]
    assert feed_links(b"<html><head><link rel=alternate type=application/rss+xml href='javascript:x'>",
                      base_url="https://lab.example/") == []
