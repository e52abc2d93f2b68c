"""Choosing stories: window, AI relevance, duplicates by URL and by headline, ranking, per-source cap."""

from __future__ import annotations

from datetime import datetime, timedelta

from ringkas.digest.feeds import parse_feed
from ringkas.digest.models import FeedItem, SharedLink
from ringkas.digest.relevance import RELEVANT, ai_relevance
from ringkas.digest.select import name_tokens, same_story, select_stories, title_tokens
from ringkas.urls import canonicalize
from tests.test_digest_support import FEEDS, NOW

WINDOW = dict(window_start=NOW - timedelta(hours=24), window_end=NOW)


def item(
    title: str,
    url: str,
    *,
    source: str = "Outlet",
    feed: str = "https://feed.example/rss",
    hours_ago: float = 1,
    excerpt: str = "",
) -> FeedItem:
    when = NOW - timedelta(hours=hours_ago)
    return FeedItem(
        feed_url=feed,
        source=source,
        url=url,
        canonical_url=canonicalize(url),
        title=title,
        excerpt=excerpt,
        published_at=when,
        seen_at=when,
    )


def similar(a: str, b: str) -> bool:
    ta, tb = title_tokens(a), title_tokens(b)
    return same_story(ta, tb, " ".join(sorted(ta)), " ".join(sorted(tb)), name_tokens(a) | name_tokens(b))


def test_relevance_english_and_indonesian() -> None:
    assert ai_relevance("OpenAI releases GPT-5.1") == 1.0
    assert ai_relevance("Startup kecerdasan buatan raih pendanaan") == 1.0
    assert (
        ai_relevance("Nvidia earnings beat expectations", "Data center GPUs drove record revenue") >= RELEVANT
    )
    assert ai_relevance("The best budget phones of 2026", "Our picks for every price range.") < RELEVANT
    assert ai_relevance("Harga iPhone turun jelang Lebaran") < RELEVANT
    assert ai_relevance("Said the painter", "He went to Dubai") < RELEVANT  # no 'ai' inside words


def test_same_story_headlines() -> None:
    assert similar(
        "Example Lab launches Nova-3 reasoning model", "Example Lab's Nova-3 reasoning model launches"
    )
    assert similar(
        "Introducing Nova-3, our most capable reasoning model", "Example Lab launches Nova-3 reasoning model"
    )
    assert similar("Google releases Gemini 3 Pro", "Google Gemini 3 Pro is out")
    assert not similar("OpenAI launches Sora app", "OpenAI sued by authors over training data")
    assert not similar("Nvidia earnings beat estimates", "Nvidia unveils Rubin GPUs")
    assert not similar("EU lawmakers agree on AI liability rules", "US lawmakers question AI chip exports")


def test_fixture_day_selection() -> None:
    items, share = [], {}
    for name in ("lab_rss2.xml", "outlet_atom.xml", "indo_rss1.xml", "wire_rss2.xml"):
        url = f"https://feeds.example/{name}"
        _, parsed, measured = parse_feed(
            (FEEDS / name).read_bytes(), feed_url=url, final_url=url, now=NOW, first_fetch=True
        )
        items += parsed
        share[url] = measured
    share["https://feeds.example/lab_rss2.xml"] = 100  # declared topic=ai
    share["https://feeds.example/outlet_atom.xml"] = 0  # declared topic=general
    stories = select_stories(items, [], max_stories=20, ai_share=share, **WINDOW)
    titles = [s.title for s in stories]
    joined = " | ".join(titles)
    for absent in ("budget phones", "Streaming", "iPhone", "Research note", "Undated", "Last year"):
        assert absent not in joined  # non-AI, old, and undated-on-first-fetch entries are out
    nova = [s for s in stories if "Nova-3" in s.title]
    assert len(nova) == 1, titles  # lab post + 3 outlets (one by URL with utm_, others by headline)
    assert {src.name for src in nova[0].sources} == {"Example Lab News", "TechDaily", "AI Wire", "InfoTekno"}
    assert stories[0] is nova[0]  # carried by four sources: the top story
    assert "Startup kecerdasan buatan asal Jakarta raih pendanaan Rp 200 miliar" in titles
    assert "Partnering with hospitals on clinical note summaries" in titles  # AI lab: no buzzword needed
    assert len(titles) == len(set(titles))


def test_window_excludes_old_and_uses_since_last_digest() -> None:
    fresh = item("OpenAI ships a new GPT model", "https://a.example/1", hours_ago=2)
    older = item("Anthropic updates Claude", "https://a.example/2", hours_ago=10)
    stale = item("DeepMind paper on agents", "https://a.example/3", hours_ago=30)
    stories = select_stories(
        [fresh, older, stale], [], max_stories=10, window_start=NOW - timedelta(hours=5), window_end=NOW
    )
    assert [s.title for s in stories] == ["OpenAI ships a new GPT model"]


BUSY_HEADLINES = [
    "OpenAI ships GPT-5.5 to everyone",
    "Anthropic raises new funding round",
    "Mistral opens Paris datacenter",
    "DeepSeek publishes reasoning paper",
    "Meta trains Llama on synthetic data",
    "Nvidia Rubin GPUs delayed",
    "Perplexity launches shopping agent",
    "Cohere signs bank contract",
    "Qwen tops open leaderboard",
    "Hugging Face acquires robotics startup",
]


def test_per_source_cap_and_trim() -> None:
    busy = [
        item(
            h,
            f"https://busy.example/{i}",
            source="Busy",
            feed="https://busy.example/rss",
            hours_ago=1 + i / 10,
        )
        for i, h in enumerate(BUSY_HEADLINES)
    ]
    other = [
        item(h, f"https://other.example/{i}", source="Other", feed="https://other.example/rss", hours_ago=20)
        for i, h in enumerate(["Google Gemini gets memory", "xAI Grok API price cut"])
    ]
    stories = select_stories([*busy, *other], [], max_stories=6, **WINDOW)
    lead_sources = [s.sources[0].name for s in stories]
    assert len(stories) == 4  # 2 from the busy feed (cap = max(2, ceil(6/3))), both from the other
    assert lead_sources.count("Busy") == 2 and lead_sources.count("Other") == 2
    assert [s.title for s in stories][:2] == BUSY_HEADLINES[:2]  # fresher first
    assert len(select_stories([*busy, *other], [], max_stories=3, source_cap=5, **WINDOW)) == 3


def test_team_shared_links_rank_first_and_merge_with_feed_items() -> None:
    feed_item = item(
        "Example Lab launches Nova-3 reasoning model",
        "https://techdaily.example/nova-3?utm_source=x",
        source="TechDaily",
        hours_ago=3,
    )
    unrelated = item("Anthropic updates Claude", "https://a.example/claude", source="A", hours_ago=1)
    shared = SharedLink(
        article_id=7,
        url="https://techdaily.example/nova-3",
        canonical_url="https://techdaily.example/nova-3",
        title="Example Lab launches Nova-3",
        site_name="TechDaily",
        excerpt="Body",
        shared_at=NOW - timedelta(hours=2),
        tldr="Stored TL;DR.",
    )
    stories = select_stories([feed_item, unrelated], [shared], max_stories=5, **WINDOW)
    assert stories[0].team_shared and stories[0].article_id == 7
    assert stories[0].summary == "Stored TL;DR." and stories[0].reused_summary
    assert [s.name for s in stories[0].sources] == ["TechDaily"]
    assert len(stories) == 2


def test_large_day_is_fast_enough_to_cluster() -> None:
    base = datetime(2026, 3, 10, 8, 0, tzinfo=NOW.tzinfo)
    items = [
        FeedItem(
            feed_url=f"https://f{i % 20}.example/rss",
            source=f"Feed {i % 20}",
            url=f"https://f.example/{i}",
            canonical_url=f"https://f.example/{i}",
            title=f"AI model story {i} about topic {i * 7 % 97}",
            excerpt="",
            published_at=base - timedelta(minutes=i),
            seen_at=base,
        )
        for i in range(1000)
    ]
    stories = select_stories(items, [], max_stories=15, **WINDOW)
    assert 0 < len(stories) <= 15


def test_stock_phrases_do_not_make_a_story() -> None:
    assert not similar("iOS 26: Everything you need to know", "Gemini 3: Everything You Need To Know")
    assert not similar("Here's why Nvidia stock fell", "Here's why Anthropic hired bankers")
    assert similar("OpenAI GPT-6: Everything You Need To Know", "OpenAI's GPT-6: what we know so far")


def test_clustering_at_scale_weighs_distinctive_words() -> None:
    """200 feeds' worth of headlines: words every other headline has (OpenAI, model) weigh little, so
    unrelated OpenAI stories stay apart while the same news from several outlets still merges."""
    companies = ["OpenAI", "Anthropic", "Google", "Meta", "Nvidia"]
    things = ["pricing", "lawsuit", "hiring", "datacenter", "partnership", "outage", "benchmark", "safety"]
    items = []
    for i in range(400):
        title = f"{companies[i % 5]} {things[i % 8]} update {i} for {['Jakarta', 'Berlin', 'Austin'][i % 3]}"
        items.append(item(title, f"https://bulk{i % 200}.example/{i}", source=f"Bulk {i % 200}",
                          feed=f"https://bulk{i % 200}.example/rss", hours_ago=2 + i / 100))
    special = [
        ("OpenAI GPT-6 preview: Everything you need to know", "https://a.example/gpt6", "A"),
        ("OpenAI releases GPT-6 preview to developers", "https://b.example/gpt6", "B"),
        ("Pixel 11 AI camera: Everything You Need To Know", "https://c.example/pixel", "C"),
        ("OpenAI hires former Tesla AI chief", "https://d.example/hire", "D"),
    ]
    items += [item(t, u, source=s, feed=f"https://{s.lower()}.example/rss", hours_ago=0.5)
              for t, u, s in special]
    stories = select_stories(items, [], max_stories=200, source_cap=200, **WINDOW)
    groups = {s.title: {src.name for src in s.sources} for s in stories}
    gpt = next(names for title, names in groups.items() if "GPT-6" in title)
    assert gpt == {"A", "B"}  # the same news from two outlets
    pixel = next(names for title, names in groups.items() if "Pixel 11" in title)
    hire = next(names for title, names in groups.items() if "Tesla" in title)
    assert pixel == {"C"} and hire == {"D"}  # a stock phrase or a busy company name is no story
