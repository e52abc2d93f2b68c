"""A digest survives an imperfect model: skipped stories, a model that is down, lines pinned to the wrong
story, one headline over several stories, a nonsense opening. Through the service, `bot.py digest
--dry-run` and `/digest now` in Slack."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from ringkas.digest.checks import belongs, plausible_opening
from ringkas.digest.write import call_budget
from tests.support.openai_stub import skipping
from tests.test_digest_cli import bot_env, run_bot
from tests.test_digest_support import NOW, digest_responder, digest_service, feed_items, schema_name

# (headline, description): distinct stories, each with its own words
STORIES = [
    ("Nimbus Labs releases Cirrus-4 reasoning model", "Cirrus-4 solves olympiad geometry and costs less."),
    ("Helio Chips unveils Photon AI accelerator", "The Photon accelerator targets inference in data halls."),
    ("EU regulators open AI liability consultation", "Brussels asks firms how chatbot harms are handled."),
    ("Kestrel Robotics demos warehouse humanoid", "The humanoid robot sorts parcels using a vision model."),
    ("Orchid Health deploys clinical LLM scribe", "Hospitals in Jakarta use the scribe for patient notes."),
    ("Marlin Search adds agentic shopping assistant", "The assistant compares prices and books deliveries."),
    ("Quokka Studio open-sources text-to-video model", "The video generator runs on one consumer GPU."),
    ("Tern Bank trains fraud detection transformer", "A transformer flags payment fraud in milliseconds."),
]


def feed(title: str, stories: list[tuple[str, str]], *, host: str, now: datetime) -> str:
    items = "".join(
        f"<item><title>{xml_escape(headline)}</title><link>https://{host}/{i}</link>"
        f"<pubDate>{format_datetime(now - timedelta(hours=1 + i))}</pubDate>"
        f"<description>{xml_escape(text)}</description></item>"
        for i, (headline, text) in enumerate(stories)
    )
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{title}</title>'
            f"<link>https://{host}/</link>{items}</channel></rss>")


def serve(web, now: datetime = NOW) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        web.add("/a.xml", feed("Alpha AI Wire", STORIES[:4], host="alpha.example", now=now),
                content_type="application/rss+xml"),
        web.add("/b.xml", feed("Beta Machine News", STORIES[4:], host="beta.example", now=now),
                content_type="application/rss+xml"),
    ]


async def build(settings, database, urls):  # type: ignore[no-untyped-def]
    from ringkas.digest.models import FeedSource

    sources = [FeedSource(u, topic="ai") for u in urls]
    async with digest_service(settings, database, sources=sources) as service:
        return await service.build(window_start=NOW - timedelta(hours=24), window_end=NOW, language="en",
                                   timezone="UTC")


def _by_headline(digest):  # type: ignore[no-untyped-def]
    return {story.feed_title: story for story in digest.stories}


async def test_a_model_that_skips_stories_costs_only_their_lines(
    web, openai_stub, make_settings, database
) -> None:
    openai_stub.responder = skipping(digest_responder)  # every answer leaves out every second story
    digest = await build(make_settings(), database, serve(web))
    assert len(digest.stories) == len(STORIES)  # nothing lost
    written = [s for s in digest.stories if not s.from_feed]
    from_feed = [s for s in digest.stories if s.from_feed]
    assert written and from_feed
    assert all(s.summary == f"Summary of {s.title}." for s in written)
    descriptions = dict(STORIES)
    for story in from_feed:  # the feed's own title and description, marked
        assert story.title == story.feed_title and story.summary == descriptions[story.title]
    # one more try for the skipped ones, and never more calls than the budget
    kinds = [schema_name(r) for r in openai_stub.requests]
    assert kinds.count("digest_stories") == 2
    assert digest.usage.calls <= call_budget(len(digest.stories))


async def test_a_model_that_is_down_still_gives_a_digest(web, openai_stub, make_settings, database) -> None:
    openai_stub.fail_next(50, status=503)
    digest = await build(make_settings(OPENAI_MAX_RETRIES="0"), database, serve(web))
    assert len(digest.stories) == len(STORIES) and all(s.from_feed for s in digest.stories)
    assert digest.opening == "" and not digest.themed
    assert len(openai_stub.requests) <= call_budget(len(STORIES))


def weak_model(body: dict[str, Any]) -> str:
    """SmolLM-like answers: the opening is a version number, every summary is shifted one story down
    (pinned to the wrong headline), and one headline is repeated over several stories."""
    items = feed_items(body)
    if schema_name(body) == "digest_overview":
        return json.dumps({"opening": "10.1.2.1", "stories": [{"id": i["id"], "same_as": 0} for i in items]})
    texts = [f"{item['headline']}. {item.get('excerpt', '')}" for item in items]
    stories = []
    for position, item in enumerate(items):
        if position < 3:
            summary = texts[(position + 1) % len(items)]  # another story's text under this headline
            headline = item["headline"]
        else:
            summary = f"In short: {texts[position]}"
            headline = "Big AI news today" if position in (3, 4, 5) else item["headline"]
        stories.append({"id": item["id"], "headline": headline, "summary": summary})
    return json.dumps({"stories": stories})


async def test_lines_that_belong_to_another_story_are_not_used(
    web, openai_stub, make_settings, database
) -> None:
    openai_stub.responder = weak_model
    digest = await build(make_settings(), database, serve(web))
    assert digest.opening == ""  # "10.1.2.1" is no opening line
    assert len(digest.stories) == len(STORIES)
    for story in digest.stories:
        own = story.feed_title.split()[0]  # each story's company name
        assert own in story.title
        if story.summary:
            # never another story's company in this story's line
            others = {h.split()[0] for h, _ in STORIES} - {own}
            assert not any(name in story.summary for name in others), (story.title, story.summary)
    titles = [s.title for s in digest.stories]
    assert "Big AI news today" not in titles and len(set(titles)) == len(titles)
    assert any(s.from_feed for s in digest.stories) and any(not s.from_feed for s in digest.stories)


def test_line_checks() -> None:
    own = "Helio Chips unveils Photon AI accelerator. The Photon accelerator targets inference."
    others = ["Nimbus Labs releases Cirrus-4 reasoning model. Cirrus-4 solves olympiad geometry."]
    assert belongs("Photon speeds up inference for Helio's customers.", own, others)
    assert not belongs("Cirrus-4 solves olympiad geometry problems.", own, others)
    assert not belongs("Stock markets were calm on Tuesday afternoon.", own, others, written_language="en")
    # a translation shares only names, or nothing: not rejected for that alone
    assert belongs("Akselerator Photon dari Helio untuk inferensi.", own, others, written_language="id")
    assert not belongs("", own, others)
    assert not plausible_opening("10.1.2.1") and not plausible_opening('{"opening": "x"}')
    assert plausible_opening("A busy day for chips and reasoning models.")
    assert plausible_opening("Hari yang sibuk untuk model AI dan cip baru.")


async def test_dry_run_with_a_skipping_model(web, openai_stub, slack_stub, sqlite_url) -> None:
    openai_stub.responder = skipping(digest_responder, keep=lambda position: position == 0)
    urls = serve(web, now=datetime.now(UTC))
    code, out, err = await run_bot(bot_env(openai_stub, slack_stub, sqlite_url, urls), "digest", "--dry-run")
    assert code == 0, err
    assert "couldn't use" not in out + err
    assert out.count("[feed text, not summarized]") >= 4
    for headline, _ in STORIES:
        assert headline in out or headline.split()[0] in out


async def test_digest_now_in_slack_with_a_skipping_model(
    make_slack_app, slack_stub, openai_stub, web
) -> None:
    openai_stub.responder = skipping(digest_responder)
    urls = serve(web, now=datetime.now(UTC))
    app = await make_slack_app(DIGEST_FEEDS=",".join(urls))
    await app.command("now", command="/digest")
    await app.settle()
    assert slack_stub.responses == []  # nothing to apologise for
    post = slack_stub.posted()[0]
    rendered = json.dumps(post["blocks"], ensure_ascii=False)
    assert rendered.count("_feed text, not summarized_") >= 2
    assert rendered.count("Summary of") >= 2
    for headline, _ in STORIES:
        assert headline.split()[0] in rendered


async def test_digest_now_names_failed_feeds_in_the_footer(
    make_slack_app, slack_stub, openai_stub, web
) -> None:
    openai_stub.responder = digest_responder
    urls = serve(web, now=datetime.now(UTC))
    html = b"<!doctype html><html><head><title>Blog</title></head><body>x</body></html>"
    page = web.add("/blog.html", html, content_type="text/html")
    app = await make_slack_app(DIGEST_FEEDS=",".join([*urls, web.url("/gone.xml"), page]))
    await app.command("now", command="/digest")
    await app.settle()
    footer = slack_stub.posted()[0]["blocks"][-1]["elements"][0]["text"]
    assert "from 2 of 4 sources" in footer and "2 sources unavailable: " in footer
    assert "127.0.0.1 (HTTP 404" in footer and "names no feed" in footer
