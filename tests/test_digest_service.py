"""Building digests end to end (local feeds, model stand-in, SQLite and PostgreSQL) and once-a-day runs."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from ringkas.digest.models import Digest, FeedSource
from ringkas.digest.service import NoSources, PostFailed
from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.digest_tables import DigestRunRow, DigestSubscriptionRow, FeedItemRow, FeedStateRow
from ringkas.storage.tables import ArticleRow, ChannelSettingsRow, SummaryRow, ThreadArticleRow
from ringkas.tokens import TokenCounter
from tests.test_digest_support import (
    NOW,
    add_fixture_feeds,
    digest_responder,
    digest_service,
    feed_items,
    fixture_sources,
    rss,
    schema_name,
)

TEAM, CHANNEL = "T0001", "C0001"


class Poster:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.posted: list[tuple[str, str, Digest]] = []
        self.fail = fail

    async def __call__(self, team_id: str, channel_id: str, digest: Digest) -> str:
        if self.fail is not None:
            raise self.fail
        self.posted.append((team_id, channel_id, digest))
        return f"1700000000.{len(self.posted):06d}"


def assert_under_cap(requests: list[dict[str, Any]], cap: int) -> None:
    counter = TokenCounter("gpt-4.1-mini")
    for body in requests:
        assert counter.count_messages(body["messages"]) <= cap


async def share_article(
    db: Database, *, url: str, title: str, tldr: str | None, language: str = "en", hours_ago: float = 2
) -> int:
    async with db.session() as session:
        article = ArticleRow(
            canonical_url=url,
            url=url,
            title=title,
            text="Full article text. " * 50,
            content_hash="x" * 64,
            site_name="Team Source",
        )
        session.add(article)
        await session.flush()
        session.add(
            ThreadArticleRow(
                team_id=TEAM,
                channel_id=CHANNEL,
                thread_ts="1.1",
                article_id=article.id,
                created_at=NOW - timedelta(hours=hours_ago),
            )
        )
        if tldr:
            session.add(
                SummaryRow(
                    article_id=article.id,
                    language=language,
                    prompt_version="summary@1",
                    model="gpt-4.1-mini",
                    tldr=tldr,
                    key_points=["a", "b", "c"],
                    why_it_matters="w",
                    created_at=NOW - timedelta(hours=hours_ago),
                )
            )
        return article.id


async def test_digest_of_the_fixture_day(web, openai_stub, make_settings, database) -> None:
    openai_stub.responder = digest_responder
    urls = add_fixture_feeds(web)
    settings = make_settings()
    async with digest_service(settings, database, sources=fixture_sources(urls)) as service:
        digest = await service.build(
            window_start=NOW - timedelta(hours=24),
            window_end=NOW,
            language="en",
            timezone="Asia/Jakarta",
            team_id=TEAM,
            channel_id=CHANNEL,
        )
    titles = [s.title for s in digest.stories]
    assert titles[0] == "Example Lab launches Nova-3 reasoning model" or "Nova-3" in titles[0]
    nova = digest.stories[0]
    assert {s.name for s in nova.sources} == {"Example Lab News", "TechDaily", "AI Wire", "InfoTekno"}
    voltra = [s for s in digest.stories if "Voltra" in s.title]
    assert len(voltra) == 1 and len(voltra[0].sources) == 2  # folded by the model's same_as
    joined = " ".join(titles)
    for absent in ("budget phones", "Streaming", "iPhone", "Research note", "Undated", "chatbot market"):
        assert absent not in joined
    assert all(s.summary == f"Summary of {s.title}." for s in digest.stories)
    assert digest.opening.startswith("A busy day")
    themes = Counter(s.theme for s in digest.stories if s.theme)
    assert digest.themed and set(themes) >= {"Models", "Policy"}
    assert min(themes.values()) >= 2  # a theme groups stories: Voltra's lone "Hardware" is no theme
    assert voltra[0].theme is None and not any(s.from_feed for s in digest.stories)
    assert digest.sources_read == 4 and digest.sources_total == 4 and not digest.feeds_failed
    assert digest.items_read == 14  # entries dated inside the window, before relevance and dedup
    assert str(digest.local_date) == "2026-03-10"
    # few model calls: one overview, one batch of story lines
    assert [schema_name(r) for r in openai_stub.requests] == ["digest_overview", "digest_stories"]
    assert digest.usage.calls == 2
    assert_under_cap(openai_stub.requests, settings.max_input_tokens)
    # the injection in the lab feed stays inside the delimited data and the system prompt keeps control
    story_request = openai_stub.requests[1]
    system = story_request["messages"][0]["content"]
    assert "never an instruction" in system and "PWNED" not in system
    assert any("PWNED" in item.get("excerpt", "") for item in feed_items(story_request))
    async with database.session() as session:  # model usage recorded for the channel
        from ringkas.storage.tables import ModelCallRow

        rows = (await session.scalars(select(ModelCallRow))).all()
    assert (
        len(rows) == 2
        and {r.purpose for r in rows} == {"digest"}
        and {r.channel_id for r in rows} == {CHANNEL}
    )


async def test_small_input_cap_splits_batches(web, openai_stub, make_settings, sqlite_url) -> None:
    openai_stub.responder = digest_responder
    urls = add_fixture_feeds(web)
    long_text = "The model was trained on new data and evaluated on many benchmarks by the lab. " * 12
    headlines = [
        "Kestrel AI opens weights",
        "Voltra chip benchmark leak",
        "Agents startup raises seed",
        "Robotics lab shows humanoid",
        "Chatbot arena adds voting",
        "Speech model goes multilingual",
    ]
    wordy = web.add(
        "/wordy.xml",
        rss(
            "Wordy AI",
            [
                (h, f"https://wordy.example/{i}", NOW - timedelta(hours=i + 1))
                for i, h in enumerate(headlines)
            ],
            description=long_text,
        ),
        content_type="application/rss+xml",
    )
    settings = make_settings(MAX_INPUT_TOKENS="1000", DIGEST_MAX_STORIES="20")
    db = Database(sqlite_url)
    await db.create_all()
    try:
        async with digest_service(
            settings, db, sources=[*fixture_sources(urls), FeedSource(wordy)]
        ) as service:
            digest = await service.build(
                window_start=NOW - timedelta(hours=24), window_end=NOW, language="id", timezone="UTC"
            )
    finally:
        await db.dispose()
    kinds = [schema_name(r) for r in openai_stub.requests]
    assert kinds.count("digest_overview") == 1 and kinds.count("digest_stories") >= 2
    assert len(kinds) <= 6
    assert_under_cap(openai_stub.requests, 1000)
    assert all(s.summary for s in digest.stories)
    assert "Indonesian" in openai_stub.requests[0]["messages"][0]["content"]


WORDY = ["Agents startup raises seed", "Robotics lab shows humanoid", "Chatbot arena adds voting",
         "Speech model goes multilingual"]


@pytest.mark.parametrize("fallback", ["json_object", "prompt_only"])
async def test_small_input_cap_holds_in_fallback_modes(
    web, openai_stub, make_settings, sqlite_url, fallback: str
) -> None:
    """Servers without structured output get JSON instructions added to the prompt: still under the cap."""
    openai_stub.responder = digest_responder
    openai_stub.reject_json_schema = True
    openai_stub.reject_json_object = fallback == "prompt_only"
    urls = add_fixture_feeds(web)
    entries = [(h, f"https://wordy.example/{i}", NOW - timedelta(hours=i + 1)) for i, h in enumerate(WORDY)]
    long_text = "The model was trained on new data and evaluated on many benchmarks. " * 20
    wordy = web.add("/wordy.xml", rss("Wordy AI", entries, description=long_text),
                    content_type="application/rss+xml")
    settings = make_settings(MAX_INPUT_TOKENS="1000", DIGEST_MAX_STORIES="20")
    db = Database(sqlite_url)
    await db.create_all()
    try:
        sources = [*fixture_sources(urls), FeedSource(wordy)]
        async with digest_service(settings, db, sources=sources) as service:
            digest = await service.build(
                window_start=NOW - timedelta(hours=24), window_end=NOW, language="id", timezone="UTC"
            )
    finally:
        await db.dispose()
    assert len(digest.stories) >= 8 and all(s.summary for s in digest.stories)
    answered = [
        r for r in openai_stub.requests if (r.get("response_format") or {}).get("type") != "json_schema"
    ]
    assert len(answered) >= 3  # in the fallback mode: the overview and story batches split by tokens
    assert_under_cap(openai_stub.requests, 1000)


async def test_team_shared_links_reuse_stored_summaries(web, openai_stub, make_settings, database) -> None:
    openai_stub.responder = digest_responder
    urls = add_fixture_feeds(web)
    settings = make_settings()
    await share_article(
        database,
        url="https://news.example/asia-ai-rules",
        title="Asian regulators align on AI",
        tldr="Regulators from five countries agreed on shared AI audit rules.",
    )
    await share_article(
        database,
        url="https://news.example/other-lang",
        title="Robotics startup raises money",
        tldr="Startup robotik mengumpulkan dana.",
        language="id",
    )
    await share_article(
        database, url="https://news.example/too-old", title="Old AI news", tldr="Old.", hours_ago=30
    )
    async with digest_service(settings, database, sources=fixture_sources(urls)) as service:
        digest = await service.build(
            window_start=NOW - timedelta(hours=24),
            window_end=NOW,
            language="en",
            timezone="UTC",
            team_id=TEAM,
            channel_id=CHANNEL,
        )
    shared = [s for s in digest.stories if s.team_shared]
    assert {s.title for s in shared} == {"Asian regulators align on AI", "Robotics startup raises money"}
    reused = next(s for s in shared if s.title == "Asian regulators align on AI")
    assert reused.summary == "Regulators from five countries agreed on shared AI audit rules."
    written = [
        item["headline"]
        for r in openai_stub.requests
        if schema_name(r) == "digest_stories"
        for item in feed_items(r)
    ]
    assert "Asian regulators align on AI" not in written  # stored summary reused: no model text for it
    other = next(
        item
        for r in openai_stub.requests
        if schema_name(r) == "digest_stories"
        for item in feed_items(r)
        if item["headline"] == "Robotics startup raises money"
    )
    assert other["known_summary"] == "Startup robotik mengumpulkan dana."  # to be translated
    assert other["shared_by_team"] is True
    assert digest.shared_count == 2
    assert "Old AI news" not in [s.title for s in digest.stories]


async def summarized_before(db: Database, url: str, tldr: str, language: str) -> None:
    """An article the link flow summarized (in any channel, any day) and stored."""
    async with db.session() as session:
        article = ArticleRow(canonical_url=url, url=url, title="Stored title", text="Text. " * 50,
                             content_hash="y" * 64)
        session.add(article)
        await session.flush()
        session.add(SummaryRow(article_id=article.id, language=language, prompt_version="summary@1",
                               model="gpt-4.1-mini", tldr=tldr, key_points=["a"], why_it_matters="w"))


async def test_feed_stories_already_summarized_reuse_the_stored_summary(
    web, openai_stub, make_settings, database
) -> None:
    openai_stub.responder = digest_responder
    urls = add_fixture_feeds(web)
    await summarized_before(database, "https://aiwire.example/kestrel-open-weights",
                            "Kestrel AI released open weights that rival bigger models.", "en")
    await summarized_before(database, "https://infotekno.example/startup-ai-jakarta",
                            "Startup AI Jakarta mendapat pendanaan Rp 200 miliar.", "id")
    async with digest_service(make_settings(), database, sources=fixture_sources(urls)) as service:
        digest = await service.build(window_start=NOW - timedelta(hours=24), window_end=NOW, language="en",
                                     timezone="UTC", team_id=TEAM, channel_id=CHANNEL)
    kestrel = next(s for s in digest.stories if "Kestrel" in s.title)
    assert kestrel.summary == "Kestrel AI released open weights that rival bigger models."
    assert kestrel.reused_summary and not kestrel.team_shared
    written = {item["headline"]: item for r in openai_stub.requests if schema_name(r) == "digest_stories"
               for item in feed_items(r)}
    assert not any("Kestrel" in headline for headline in written)
    jakarta = next(item for headline, item in written.items() if "Jakarta" in headline)
    assert jakarta["known_summary"] == "Startup AI Jakarta mendapat pendanaan Rp 200 miliar."  # translate it


async def test_not_modified_feeds_reuse_cached_items(web, openai_stub, make_settings, database) -> None:
    openai_stub.responder = digest_responder
    urls = add_fixture_feeds(web, etag=True)
    settings = make_settings()
    window = dict(window_start=NOW - timedelta(hours=24), window_end=NOW, language="en", timezone="UTC")
    async with digest_service(settings, database, sources=fixture_sources(urls)) as service:
        first = await service.build(**window)
    for path in ("lab_rss2.xml", "outlet_atom.xml", "indo_rss1.xml", "wire_rss2.xml"):
        web.add(f"/feeds/{path}", b"", status=304)
    async with digest_service(
        settings, database, sources=fixture_sources(urls), clock=lambda: NOW + timedelta(minutes=30)
    ) as service:
        second = await service.build(**window)
    for path in ("lab_rss2.xml", "outlet_atom.xml", "indo_rss1.xml", "wire_rss2.xml"):
        assert web.request_headers[f"/feeds/{path}"]["If-None-Match"] == f'"{path}-v1"'
    assert [s.url for s in second.stories] == [s.url for s in first.stories]
    assert second.sources_read == 4
    async with database.session() as session:
        states = (await session.scalars(select(FeedStateRow))).all()
    assert {s.last_status for s in states} == {"not_modified"}
    assert all(s.etag for s in states)


async def test_feeds_down_still_give_a_digest(web, openai_stub, make_settings, database) -> None:
    openai_stub.responder = digest_responder
    urls = add_fixture_feeds(web)
    settings = make_settings(FETCH_TIMEOUT="1")
    slow = web.add("/slow.xml", b"<rss/>", content_type="text/xml", delay=4)
    broken = web.add("/broken.xml", "<html>nope</html>", content_type="text/html")
    sources = [*fixture_sources(urls), FeedSource(slow), FeedSource(broken), FeedSource(web.url("/404.xml"))]
    async with digest_service(settings, database, sources=sources) as service:
        digest = await service.build(
            window_start=NOW - timedelta(hours=24), window_end=NOW, language="en", timezone="UTC"
        )
    assert digest.stories and digest.sources_read == 4 and digest.sources_total == 7
    assert {f.url for f in digest.feeds_failed} == {slow, broken, web.url("/404.xml")}


async def test_all_feeds_down_is_an_error(web, openai_stub, make_settings, sqlite_url) -> None:
    db = Database(sqlite_url)
    await db.create_all()
    try:
        async with digest_service(make_settings(), db, sources=[FeedSource(web.url("/none.xml"))]) as service:
            with pytest.raises(NoSources):
                await service.build(
                    window_start=NOW - timedelta(hours=24), window_end=NOW, language="en", timezone="UTC"
                )
    finally:
        await db.dispose()
    assert openai_stub.requests == []


async def test_channel_language_setting_wins(web, openai_stub, make_settings, sqlite_url) -> None:
    openai_stub.responder = digest_responder
    urls = add_fixture_feeds(web)
    db = Database(sqlite_url)
    await db.create_all()
    try:
        async with db.session() as session:
            session.add(ChannelSettingsRow(team_id=TEAM, channel_id=CHANNEL, language="id"))
        async with digest_service(
            make_settings(SUMMARY_LANGUAGE="auto"), db, sources=fixture_sources(urls)
        ) as service:
            assert await service.language_for(TEAM, "C-other") == "en"  # auto -> English
            assert await service.language_for(TEAM, CHANNEL) == "id"
            digest = await service.build_now(TEAM, CHANNEL)
    finally:
        await db.dispose()
    assert digest.language == "id"
    assert "Write everything in Indonesian" in openai_stub.requests[0]["messages"][0]["content"]


async def test_preview_writes_nothing(web, openai_stub, make_settings, sqlite_url) -> None:
    openai_stub.responder = digest_responder
    urls = add_fixture_feeds(web, etag=True)
    db = Database(sqlite_url)
    await db.create_all()
    try:
        async with digest_service(make_settings(), db, sources=fixture_sources(urls)) as service:
            digest = await service.build_preview()
        async with db.session() as session:
            counts = [
                await session.scalar(select(func.count()).select_from(t))
                for t in (FeedStateRow, FeedItemRow, DigestRunRow)
            ]
    finally:
        await db.dispose()
    assert digest.stories and counts == [0, 0, 0]


# --- once a day --------------------------------------------------------------------------------


async def test_run_channel_posts_once_per_day(web, openai_stub, make_settings, database) -> None:
    openai_stub.responder = digest_responder
    urls = add_fixture_feeds(web)
    async with digest_service(make_settings(), database, sources=fixture_sources(urls)) as service:
        subscription = await service.store.subscribe(
            TEAM, CHANNEL, time="08:00", timezone="UTC", created_by=None
        )
        poster = Poster()
        first = await service.run_channel(subscription, post=poster)
        again = await service.run_channel(subscription, post=poster)
        assert (first.status, again.status) == ("posted", "skipped")
        assert len(poster.posted) == 1
        run = await service.store.run(TEAM, CHANNEL, "2026-03-10")
        assert run is not None and run.state == "posted" and run.message_ts == first.message_ts
        assert await service.due(now=NOW) == []
        # the next day reads from where this digest stopped
        service.clock = lambda: NOW + timedelta(days=1)
        await service.run_channel(subscription, post=poster)
    second_day = poster.posted[1][2]
    assert second_day.window_start == NOW and len(poster.posted) == 2


async def test_failed_runs_retry_but_uncertain_posts_never_repeat(
    web, openai_stub, make_settings, database
) -> None:
    openai_stub.responder = digest_responder
    urls = add_fixture_feeds(web)
    async with digest_service(
        make_settings(OPENAI_MAX_RETRIES="0"), database, sources=fixture_sources(urls)
    ) as service:
        subscription = await service.store.subscribe(
            TEAM, CHANNEL, time="08:00", timezone="UTC", created_by=None
        )
        for _ in range(2):  # Slack refusing for a passing reason: the day is tried again
            refused = await service.run_channel(subscription, post=Poster(PostFailed(detail="fatal_error")))
            assert refused.status == "failed" and "fatal_error" in refused.error
        unsure = await service.run_channel(subscription, post=Poster(TimeoutError("read timed out")))
        assert unsure.status == "uncertain"
        poster = Poster()
        assert (await service.run_channel(subscription, post=poster)).status == "skipped"
        assert poster.posted == []
        run = await service.store.run(TEAM, CHANNEL, "2026-03-10")
    assert run is not None and run.state == "uncertain"


async def test_attempts_are_limited(web, openai_stub, make_settings, sqlite_url) -> None:
    db = Database(sqlite_url)
    await db.create_all()
    try:
        async with digest_service(make_settings(), db, sources=[FeedSource(web.url("/down.xml"))]) as service:
            subscription = await service.store.subscribe(
                TEAM, CHANNEL, time="08:00", timezone="UTC", created_by=None
            )
            results = [await service.run_channel(subscription, post=Poster()) for _ in range(4)]
    finally:
        await db.dispose()
    assert [r.status for r in results] == ["failed", "failed", "failed", "skipped"]


async def test_a_day_that_used_up_its_attempts_is_no_longer_due(
    web, openai_stub, make_settings, sqlite_url
) -> None:
    db = Database(sqlite_url)
    await db.create_all()
    try:
        async with digest_service(make_settings(), db, sources=[FeedSource(web.url("/down.xml"))]) as service:
            subscription = await service.store.subscribe(
                TEAM, CHANNEL, time="08:00", timezone="UTC", created_by=None
            )
            async with db.session() as session:
                await session.execute(
                    update(DigestSubscriptionRow).values(updated_at=NOW - timedelta(days=2))
                )
            subscription = await service.store.subscription(TEAM, CHANNEL)
            assert await service.due(now=NOW) == [subscription]
            await service.run_channel(subscription, post=Poster())
            assert await service.due(now=NOW) == [subscription]  # failed once: worth another try
            for _ in range(2):
                await service.run_channel(subscription, post=Poster())
            assert await service.due(now=NOW) == []  # given up for today: the periodic check stays quiet
    finally:
        await db.dispose()


async def test_stale_claim_is_taken_over(database) -> None:
    from ringkas.digest.store import DigestStore

    store = DigestStore(database)
    first = await store.claim_run(TEAM, CHANNEL, "2026-03-10")
    assert first is not None
    assert await store.claim_run(TEAM, CHANNEL, "2026-03-10") is None  # someone is building it
    async with database.session() as session:
        row = await session.get(DigestRunRow, first)
        row.claimed_at = utcnow() - timedelta(hours=1)  # that process died
    assert await store.claim_run(TEAM, CHANNEL, "2026-03-10") == first
    assert await store.claim_run(TEAM, "C-other", "2026-03-10") not in (None, first)


async def test_servers_without_structured_output_still_get_a_digest(
    web, openai_stub, make_settings, sqlite_url
) -> None:
    openai_stub.responder = digest_responder
    openai_stub.reject_json_schema = True  # e.g. an older Ollama or vLLM server
    urls = add_fixture_feeds(web)
    db = Database(sqlite_url)
    await db.create_all()
    try:
        async with digest_service(make_settings(), db, sources=fixture_sources(urls)) as service:
            digest = await service.build(
                window_start=NOW - timedelta(hours=24), window_end=NOW, language="en", timezone="UTC"
            )
    finally:
        await db.dispose()
    assert digest.stories and all(s.summary for s in digest.stories) and digest.opening
    assert len([s for s in digest.stories if "Voltra" in s.title]) == 1
