"""Cost and fairness limits: links per user per hour, model tokens per channel and workspace per day,
model calls per article, fair work slots, cache keys that ignore meaningless parameters — through Slack,
the pipeline and `bot.py usage`, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from ringkas.config import Settings
from ringkas.documents import UsageContext
from ringkas.errors import ConfigError, LimitReached
from ringkas.fetch import SafeFetcher
from ringkas.limits import FairSlots, LimitGuard, Limits
from ringkas.llm import LLM
from ringkas.service import Ringkas
from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.tables import ModelCallRow, SlackRequestRow
from tests import slack_app as slack_fixtures
from tests.slack_app import mention
from tests.support.openai_stub import OpenAIStub
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_slack_events import all_text, article_page

make_slack_app = slack_fixtures.make_slack_app
ROOT = Path(__file__).resolve().parents[1]


def page(title: str, words: int = 400, *, canonical: str | None = None) -> str:
    # Varied sentences: a page of one sentence repeated gets a summary whose points repeat (refused).
    sentences = (
        "{} sentence number {} about models, chips and open weights.",
        "{} reports that {} new accelerators reached data centers.",
        "{} says benchmark scores rose by {} points on coding tasks.",
        "Analysts expect {} to spend {} million dollars on training.",
    )
    body = " ".join(sentences[i % 4].format(title, i) for i in range(words // 9))
    link = f'<link rel="canonical" href="{canonical}">' if canonical else ""
    return (f"<html><head><title>{title}</title>{link}</head><body><article><h1>{title}</h1>"
            f"<p>{body}</p></article></body></html>")


def summaries_posted(stub: SlackStub) -> list[str]:
    return [all_text(c.args) for c in stub.calls_to("chat.update") + stub.calls_to("chat.postMessage")]


# --- links per user per hour ---------------------------------------------------------------------


async def test_links_per_user_per_hour_is_told_plainly_and_per_user(
    make_slack_app, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub  # type: ignore[no-untyped-def]
) -> None:
    app = await make_slack_app(LINKS_PER_USER_PER_HOUR="2")
    urls = [web.add(f"/a{i}", page(f"Story {i}")) for i in range(4)]
    for url in urls[:3]:
        assert await app.event(mention(f"<@UBOT> <{url}>", user="U1")) == 200
        await app.settle()
    texts = summaries_posted(slack_stub)
    refused = [t for t in texts if "links in the last hour" in t]
    assert len(refused) == 1 and "2 links" in refused[0] and "minute" in refused[0]
    assert web.hits["/a2"] == 0  # refused before any fetch
    assert len(openai_stub.requests) == 2
    # another person in the same channel is not affected
    assert await app.event(mention(f"<@UBOT> <{urls[3]}>", user="U2")) == 200
    await app.settle()
    assert len(openai_stub.requests) == 3


async def test_link_limit_counts_in_the_database(database: Database) -> None:
    now = utcnow()
    async with database.session() as session:
        def row(key: str, kind: str = "message", **extra: object) -> SlackRequestRow:
            return SlackRequestRow(key=key, kind=kind, team_id="T", channel_id="C", message_ts=key,
                                   link="https://x.test", user_id="U", **extra)

        for i, minutes in enumerate([70, 50, 40, 30]):
            session.add(row(f"k{i}", created_at=now - timedelta(minutes=minutes)))
        session.add(row("refused", error_code="limit", created_at=now))
        session.add(row("ask", kind="ask", created_at=now))
    context = UsageContext(team_id="T", channel_id="C", user_id="U")
    await LimitGuard(database, Limits(links_per_user_per_hour=3)).admit_link(context)  # 3 in the hour
    with pytest.raises(LimitReached) as caught:
        await LimitGuard(database, Limits(links_per_user_per_hour=2)).admit_link(context)
    assert "about 10 minutes" in caught.value.user_message  # the one from 50 min ago leaves first
    await LimitGuard(database, Limits(links_per_user_per_hour=0)).admit_link(context)  # 0 = no limit
    await LimitGuard(database, Limits(links_per_user_per_hour=2)).admit_link(UsageContext(team_id="T"))


# --- tokens per channel and per workspace per day ------------------------------------------------


async def test_token_budgets_count_today_only_and_spare_digests(database: Database) -> None:
    now = utcnow()
    async with database.session() as session:
        session.add(ModelCallRow(purpose="summary", model="m", prompt_tokens=700, completion_tokens=100,
                                 team_id="T", channel_id="C1", created_at=now))
        session.add(ModelCallRow(purpose="qa", model="m", prompt_tokens=300, completion_tokens=0,
                                 team_id="T", channel_id="C2", created_at=now))
        session.add(ModelCallRow(purpose="summary", model="m", prompt_tokens=10**6, completion_tokens=0,
                                 team_id="T", channel_id="C1", created_at=now - timedelta(days=1, hours=1)))
    c1 = UsageContext(team_id="T", channel_id="C1", user_id="U")
    c2 = UsageContext(team_id="T", channel_id="C2", user_id="U")
    guard = LimitGuard(database, Limits(channel_tokens_per_day=800, workspace_tokens_per_day=0))
    with pytest.raises(LimitReached) as caught:
        await guard.admit_model_call(c1, "summary")
    assert "This channel" in caught.value.user_message and "800 of 800" in caught.value.user_message
    await guard.admit_model_call(c2, "qa")  # another channel has its own budget
    await guard.admit_model_call(c1, "digest")  # a subscribed digest is never refused
    await guard.admit_model_call(None, "summary")  # the terminal has no budget
    workspace = LimitGuard(database, Limits(channel_tokens_per_day=0, workspace_tokens_per_day=1100))
    with pytest.raises(LimitReached) as caught:
        await workspace.admit_model_call(c2, "qa")
    assert "This workspace" in caught.value.user_message
    status = {(s.scope, s.key): s for s in await workspace.status()}
    assert status[("workspace", "T")].used == 1100 and status[("workspace", "T")].reached
    assert status[("channel", "T/C1")].used == 800


async def test_channel_budget_in_slack_cached_summaries_still_shared(
    make_slack_app, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub  # type: ignore[no-untyped-def]
) -> None:
    app = await make_slack_app(CHANNEL_TOKENS_PER_DAY="50")
    first, second = article_page(web, "/one"), web.add("/two", page("Second story"))
    assert await app.event(mention(f"<@UBOT> <{first}>")) == 200
    await app.settle()
    calls = len(openai_stub.requests)
    assert calls >= 1
    assert await app.event(mention(f"<@UBOT> <{second}>")) == 200
    await app.settle()
    assert len(openai_stub.requests) == calls  # refused before the model
    assert any("model budget for today" in t and "00:00 UTC" in t for t in summaries_posted(slack_stub))
    # the first article again (another message): from the cache, no model call, still shared
    slack_stub.calls.clear()
    assert await app.event(mention(f"<@UBOT> <{first}>")) == 200
    await app.settle()
    assert len(openai_stub.requests) == calls
    assert not any("budget" in t for t in summaries_posted(slack_stub))


# --- model calls per article ---------------------------------------------------------------------


@pytest.mark.parametrize("cap", [2, 3, 5])
async def test_model_calls_per_article_bound_a_huge_page(
    cap: int, make_settings, openai_stub: OpenAIStub, web: WebStub, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    settings = make_settings(MAX_INPUT_TOKENS="2000", MAX_MODEL_CALLS_PER_ARTICLE=str(cap))
    db = Database(settings.database_url)
    await db.create_all()
    fetcher = SafeFetcher(allow_hosts=["127.0.0.1"], timeout=10)
    llm = LLM(settings, db=db)
    try:
        service = Ringkas(settings=settings, db=db, fetcher=fetcher, llm=llm)
        url = web.add("/huge", page("Huge report", words=30_000))
        result = await service.summarize(url)
        assert result.summary.tldr
        assert 2 <= len(openai_stub.requests) <= cap
    finally:
        await fetcher.aclose()
        await llm.aclose()
        await db.dispose()


def test_calls_per_article_setting() -> None:
    assert Settings.from_env({}).max_model_calls_per_article == 8
    assert Settings.from_env({"MAX_MODEL_CALLS_PER_ARTICLE": "0"}).max_model_calls_per_article == 0
    with pytest.raises(ConfigError):
        Settings.from_env({"MAX_MODEL_CALLS_PER_ARTICLE": "1"})
    with pytest.raises(ConfigError):
        Settings.from_env({"LINKS_PER_USER_PER_HOUR": "-1"})


# --- cache keys ----------------------------------------------------------------------------------


async def test_meaningless_parameters_do_not_defeat_the_cache(
    make_settings, openai_stub: OpenAIStub, web: WebStub  # type: ignore[no-untyped-def]
) -> None:
    settings = make_settings()
    db = Database(settings.database_url)
    await db.create_all()
    fetcher = SafeFetcher(allow_hosts=["127.0.0.1"], timeout=10)
    llm = LLM(settings, db=db)
    try:
        service = Ringkas(settings=settings, db=db, fetcher=fetcher, llm=llm)
        html = page("Same page")  # no canonical link: recognised by its text
        for query in ("", "?ref=slack", "?session=abc123&x=1"):
            web.add("/same" + query, html)
        canonical_html = page("Canonical page", canonical=web.url("/canon"))
        for query in ("", "?variant=2"):
            web.add("/canon" + query, canonical_html)
        first = await service.summarize(web.url("/same"))
        assert not first.cached
        for url in (web.url("/same?ref=slack"), web.url("/same?session=abc123&x=1")):
            again = await service.summarize(url)
            assert again.cached and again.article.id == first.article.id
        made = await service.summarize(web.url("/canon"))
        assert (await service.summarize(web.url("/canon?variant=2"))).article.id == made.article.id
        assert len(openai_stub.requests) == 2
        # a different page of the same site is still a different article, even with the same body text
        web.add("/other", page("Other page"))
        assert (await service.summarize(web.url("/other"))).article.id != first.article.id
        retitled = html.replace("<title>Same page</title>", "<title>Part two</title>").replace(
            "<h1>Same page</h1>", "<h1>Part two</h1>")
        web.add("/part-two", retitled)
        assert (await service.summarize(web.url("/part-two"))).article.id != first.article.id
        # a copy at another path (on a shared host: maybe another author) never answers for the original
        web.add("/copy", html)
        copy = await service.summarize(web.url("/copy"))
        assert copy.article.id != first.article.id and copy.article.canonical_url.endswith("/copy")
    finally:
        await fetcher.aclose()
        await llm.aclose()
        await db.dispose()


# --- fair slots ----------------------------------------------------------------------------------


async def test_fair_slots_serve_other_users_before_a_flooding_one() -> None:
    slots = FairSlots(4, per_user=2, per_channel=3)
    order: list[str] = []
    release = asyncio.Event()

    async def work(user: str, channel: str, name: str) -> None:
        async with slots.slot(user=user, channel=channel):
            order.append(name)
            await release.wait()

    flood = [asyncio.create_task(work("A", "C1", f"A{i}")) for i in range(20)]
    await asyncio.sleep(0)
    assert slots.running == 2  # one user holds at most 2 of the 4 slots
    others = [asyncio.create_task(work("B", "C1", "B0")), asyncio.create_task(work("C", "C2", "C0")),
              asyncio.create_task(work("D", "C1", "D0"))]
    await asyncio.sleep(0)
    assert set(order) == {"A0", "A1", "B0", "C0"}  # B and C started at once; D: channel C1 is at its cap
    release.set()
    await asyncio.gather(*flood, *others)
    assert order.index("D0") < order.index("A4")  # D went ahead of A's backlog
    assert slots.running == 0 and slots.waiting == 0


async def test_fair_slots_cancelled_waiter_leaves_no_trace() -> None:
    slots = FairSlots(1, per_user=1, per_channel=1)
    async with slots.slot(user="A", channel="C"):
        waiter = asyncio.create_task(slots.__aenter__())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert slots.running == 0 and slots.waiting == 0
    async with slots:
        assert slots.running == 1


# --- bot.py usage ----------------------------------------------------------------------------------


async def test_usage_shows_the_limits_and_what_reached_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    db = Database(url)
    await db.create_all()
    async with db.session() as session:
        session.add(ModelCallRow(purpose="summary", model="m", prompt_tokens=900, completion_tokens=200,
                                 team_id="T9", channel_id="C9", created_at=utcnow()))
    await db.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "DATABASE_"))}
    env.update({"DATABASE_URL": url, "CHANNEL_TOKENS_PER_DAY": "1000", "LINKS_PER_USER_PER_HOUR": "0"})
    done = subprocess.run([sys.executable, "bot.py", "usage"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Limits: no limit on links per user per hour · 1,000 tokens per channel per day" in out
    assert "8 model calls per article" in out
    line = next(line for line in out.splitlines() if line.startswith("channel T9/C9"))
    assert "1,100" in line and "1,000" in line and "REACHED" in line
