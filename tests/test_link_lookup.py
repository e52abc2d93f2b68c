"""One read per shared link: the link's lookup (ringkas/articles.py `ArticleStore.lookup`) brings the
article, its summaries, the sharer's links in the last hour, today's tokens and whether a stored article
shares the path, and the limits and the twin check act on it as they did on queries of their own — on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ringkas.articles import ArticleStore
from ringkas.documents import Article, Summary, TokensToday, UsageContext
from ringkas.errors import LimitReached
from ringkas.limits import LimitGuard, Limits
from ringkas.service import Ringkas
from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.tables import ModelCallRow, SlackRequestRow
from tests import test_service as service_fixtures
from tests.support.openai_stub import OpenAIStub
from tests.support.web_stub import WebStub
from tests.test_limits import page

make_service = service_fixtures.make_service
CONTEXT = UsageContext(team_id="T", channel_id="C", user_id="U")


def limited(service: Ringkas, database: Database, limits: Limits) -> Ringkas:
    """The service with the limits the Slack app wires (bot.py build_core)."""
    service.limits = LimitGuard(database, limits)
    service.llm.admit = service.limits.admit_model_call
    return service


@contextmanager
def counting() -> Iterator[list[str]]:
    """Every statement run meanwhile, whole."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", seen)


def reads(statements: list[str], table: str = "") -> list[str]:
    return [s for s in statements if s.startswith("SELECT") and f"FROM {table}" in s]


async def add_links(database: Database, minutes_ago: list[int]) -> None:
    """Link requests of the sharer (as the Slack app claims them before the work starts)."""
    now = utcnow()
    async with database.session() as session:
        for i, minutes in enumerate(minutes_ago):
            session.add(SlackRequestRow(key=f"k{i}", kind="message", team_id="T", channel_id="C",
                                        message_ts=f"{i}", link="https://x.test", user_id="U",
                                        created_at=now - timedelta(minutes=minutes)))


async def spend(database: Database, tokens: int, channel: str = "C") -> None:
    async with database.session() as session:
        session.add(ModelCallRow(purpose="summary", model="m", prompt_tokens=tokens, completion_tokens=0,
                                 team_id="T", channel_id=channel, created_at=utcnow()))


# --- statements --------------------------------------------------------------------------------------


async def test_a_link_is_read_once_and_a_cached_link_costs_only_that_read(
    database: Database, make_service: Callable[..., Ringkas], web: WebStub, openai_stub: OpenAIStub
) -> None:
    service = limited(make_service(database), database, Limits())  # every limit on
    url = web.add("/story", page("Story"))
    with counting() as uncached:
        first = await service.summarize(url, context=CONTEXT)
    assert not first.cached and len(openai_stub.requests) == 1
    # the lookup, and no other read: no link count, no token sums, no content-hash twin query
    assert len(reads(uncached)) == 1, uncached
    with counting() as cached:
        again = await service.summarize(url + "?utm_source=x", context=CONTEXT)
    assert again.cached and again.summary == first.summary
    assert len(cached) == 1 and cached[0].startswith("SELECT"), cached
    assert len(openai_stub.requests) == 1 and web.hits["/story"] == 1


async def test_concurrent_requests_for_a_link_share_one_fetch_and_one_model_call_under_the_limits(
    database: Database, make_service: Callable[..., Ringkas], web: WebStub, openai_stub: OpenAIStub
) -> None:
    service = limited(make_service(database), database, Limits())
    openai_stub.delay = 0.2
    url = web.add("/hot", page("Hot"), delay=0.1)
    contexts = [UsageContext(team_id="T", channel_id="C", user_id=f"U{i % 5}") for i in range(20)]
    results = await asyncio.gather(*(service.summarize(url, context=c) for c in contexts))
    assert web.hits["/hot"] == 1 and len(openai_stub.requests) == 1
    assert sum(not r.cached for r in results) == 1 and len({r.summary.tldr for r in results}) == 1


async def test_a_request_whose_flight_ended_before_it_joined_reads_the_link_itself(
    database: Database, make_service: Callable[..., Ringkas], web: WebStub, openai_stub: OpenAIStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = limited(make_service(database), database, Limits())
    url = web.add("/late", page("Late"))
    made = await service.summarize(url, context=CONTEXT)
    # it saw a request for the link under way, which was gone when it came to join it
    monkeypatch.setattr(service._request_flights, "running", lambda _key: True)
    with counting() as count:
        again = await service.summarize(url, context=CONTEXT)
    assert again.cached and again.summary == made.summary and len(openai_stub.requests) == 1
    limit, link = reads(count)  # its sharer's limit, then the link (without the limits' counts)
    assert limit.startswith("SELECT slack_requests.created_at") and link.startswith("SELECT link_facts.")
    assert "FROM slack_requests" not in link, count


async def test_the_lookup_ranks_matches_and_keeps_the_summaries_of_the_prompt_version(
    database: Database,
) -> None:
    store = ArticleStore(database)
    own = await store.save(Article(url="https://a.test/x", canonical_url="https://a.test/x", text="own"))
    other = await store.save(Article(url="https://a.test/y", canonical_url="https://a.test/y", text="y"),
                             aliases=["https://a.test/x?from=mail"])
    assert own.id is not None and other.id is not None
    for language, version in (("en", "v2"), ("id", "v2"), ("de", "v1")):
        await store.save_summary(own.id, Summary(tldr=f"{language} {version}", key_points=("p",),
                                                 why_it_matters="w", language=language, model="m",
                                                 prompt_version=version))
    # the link as shared (an alias of another article) wins over its canonical form
    found = await store.lookup("https://a.test/x?from=mail", "https://a.test/x", prompt_version="v2")
    assert found.article == other and dict(found.summaries) == {} and found.path_shared
    found = await store.lookup("https://a.test/x", "https://a.test/x", prompt_version="v2")
    assert found.article == own and found.values == {}
    assert {code: s.tldr for code, s in found.summaries.items()} == {"en": "en v2", "id": "id v2"}
    missing = await store.lookup("https://a.test/z?q=1", "https://a.test/z?q=1", prompt_version="v2")
    assert missing.article is None and not missing.path_shared and dict(missing.summaries) == {}


@pytest.mark.parametrize(("stored", "looked_up", "shared"), [
    ("https://a.test/p", "https://a.test/p?ref=1", True),
    ("https://a.test/p?b=2", "https://a.test/p?a=1", True),
    ("https://a.test/p?b=2", "https://a.test/p", True),
    ("https://a.test/p/q", "https://a.test/p?a=1", False),  # another path below it
    ("https://a.test/p-2", "https://a.test/p", False),
    ("https://a.test/pq?x=1", "https://a.test/p", False),
    ("http://a.test/p", "https://a.test/p", False),  # scheme and host as written: another prefix
])
async def test_the_lookup_tells_whether_a_stored_article_shares_the_path(
    database: Database, stored: str, looked_up: str, shared: bool
) -> None:
    store = ArticleStore(database)
    await store.save(Article(url=stored, canonical_url=stored, text="t"))
    found = await store.lookup(looked_up, looked_up, prompt_version="v")
    assert found.article is None and found.path_shared is shared


# --- links per user per hour ---------------------------------------------------------------------------


async def test_the_link_limit_refuses_the_link_after_the_limit_with_the_same_message(
    database: Database, make_service: Callable[..., Ringkas], web: WebStub, openai_stub: OpenAIStub
) -> None:
    await add_links(database, [70, 50, 40, 30])  # 3 in the last hour, the one being checked included
    url = web.add("/third", page("Third"))
    service = limited(make_service(database), database, Limits(links_per_user_per_hour=3))
    assert (await service.summarize(url, context=CONTEXT)).summary.tldr  # the 3rd of 3: admitted
    await add_links(database, [])
    service = limited(make_service(database), database, Limits(links_per_user_per_hour=2))
    with pytest.raises(LimitReached) as caught:
        await service.summarize(url, context=CONTEXT)  # cached, but over the limit all the same
    with pytest.raises(LimitReached) as direct:
        await LimitGuard(database, Limits(links_per_user_per_hour=2)).admit_link(CONTEXT)
    message = caught.value.user_message
    assert message == direct.value.user_message
    assert message.startswith("You've shared 2 links in the last hour") and "about 10 minutes" in message
    assert caught.value.detail == "links_per_user_per_hour=2"
    # another person, and the terminal (no context), are not limited
    assert (await service.summarize(url, context=UsageContext(team_id="T", user_id="U2"))).cached
    assert (await service.summarize(url)).cached
    assert web.hits["/third"] == 1 and len(openai_stub.requests) == 1


async def test_a_refused_link_is_not_fetched(
    database: Database, make_service: Callable[..., Ringkas], web: WebStub, openai_stub: OpenAIStub
) -> None:
    await add_links(database, [5, 4, 3])
    service = limited(make_service(database), database, Limits(links_per_user_per_hour=2))
    url = web.add("/refused", page("Refused"))
    with pytest.raises(LimitReached, match="2 links in the last hour"):
        await service.summarize(url, context=CONTEXT)
    assert web.hits["/refused"] == 0 and not openai_stub.requests


# --- tokens per day ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("limits", "who"), [
    (Limits(channel_tokens_per_day=800, workspace_tokens_per_day=0), "This channel"),
    (Limits(channel_tokens_per_day=0, workspace_tokens_per_day=800), "This workspace"),
])
async def test_a_spent_budget_still_refuses_from_the_numbers_the_lookup_read(
    database: Database, make_service: Callable[..., Ringkas], web: WebStub, openai_stub: OpenAIStub,
    limits: Limits, who: str,
) -> None:
    await spend(database, 800)
    service = limited(make_service(database), database, limits)
    url = web.add("/spent", page("Spent"))
    with counting() as count, pytest.raises(LimitReached) as caught:
        await service.summarize(url, context=CONTEXT)
    assert not openai_stub.requests
    assert len(reads(count)) == 1, count  # the budget came with the lookup
    with pytest.raises(LimitReached) as direct:
        await LimitGuard(database, limits).admit_model_call(CONTEXT, "summary")
    assert caught.value.user_message == direct.value.user_message
    assert caught.value.user_message.startswith(f"{who} has used its model budget for today (800 of 800")


async def test_a_budget_of_another_channel_does_not_refuse(
    database: Database, make_service: Callable[..., Ringkas], web: WebStub, openai_stub: OpenAIStub
) -> None:
    await spend(database, 800, channel="C2")
    service = limited(make_service(database), database,
                      Limits(channel_tokens_per_day=800, workspace_tokens_per_day=0))
    assert (await service.summarize(web.add("/fine", page("Fine")), context=CONTEXT)).summary.tldr
    assert len(openai_stub.requests) == 1


async def test_later_model_calls_of_one_summary_count_their_tokens_afresh(
    database: Database, make_service: Callable[..., Ringkas], web: WebStub, openai_stub: OpenAIStub
) -> None:
    service = limited(make_service(database, MAX_INPUT_TOKENS="2000", MAX_MODEL_CALLS_PER_ARTICLE="4"),
                      database, Limits())
    url = web.add("/huge", page("Huge report", words=12_000))
    with counting() as count:
        await service.summarize(url, context=CONTEXT)
    calls = len(openai_stub.requests)
    assert calls >= 3  # map-reduced
    # the first call took the numbers the lookup read; every later one asked the database
    later = [s for s in reads(count) if not s.startswith("SELECT link_facts.")]  # all but the lookup
    assert len(later) == calls - 1 and all("FROM model_calls" in s for s in later), count


def test_tokens_read_ahead_are_handed_out_once_and_on_their_day_only() -> None:
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    tokens = TokensToday(day, 10, 3)
    assert tokens.take(day + timedelta(days=1)) is None  # read yesterday: no use today
    assert tokens.take(day) == (10, 3)
    assert tokens.take(day) is None
    context = UsageContext(team_id="T", tokens_today=TokensToday(day, 1, 1))
    assert context == UsageContext(team_id="T") and hash(context) == hash(UsageContext(team_id="T"))


# --- the twin check ------------------------------------------------------------------------------------


async def test_a_ref_twin_is_still_merged_and_a_new_path_skips_the_twin_query(
    database: Database, make_service: Callable[..., Ringkas], web: WebStub, openai_stub: OpenAIStub
) -> None:
    service = limited(make_service(database), database, Limits())
    html = page("Same page")  # no canonical link: recognised by its text
    for query in ("", "?ref=slack"):
        web.add("/same" + query, html)
    with counting() as first:
        made = await service.summarize(web.url("/same"), context=CONTEXT)
    assert not [s for s in first if "content_hash =" in s]  # no article at that path yet
    with counting() as twin:
        again = await service.summarize(web.url("/same?ref=slack"), context=CONTEXT)
    assert [s for s in twin if "content_hash =" in s], twin
    assert again.cached and again.article.id == made.article.id and len(openai_stub.requests) == 1
    # the twin is now an alias: shared again, it is one read
    with counting() as alias:
        assert (await service.summarize(web.url("/same?ref=slack"), context=CONTEXT)).cached
    assert len(alias) == 1


async def test_a_link_redirected_to_a_twin_is_still_checked_for_it(
    database: Database, make_service: Callable[..., Ringkas], web: WebStub, openai_stub: OpenAIStub
) -> None:
    service = make_service(database)
    html = page("Moved page")
    for query in ("", "?ref=short"):
        web.add("/moved" + query, html)
    made = await service.summarize(web.url("/moved"))
    # a short link: nothing is stored at its path, but it leads to a stored article's path
    short = web.redirect("/s/abc", web.url("/moved?ref=short"))
    with counting() as count:
        again = await service.summarize(short)
    assert [s for s in count if "content_hash =" in s], count
    assert again.article.id == made.article.id and len(openai_stub.requests) == 1
