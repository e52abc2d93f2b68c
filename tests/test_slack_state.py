"""SlackState on SQLite and PostgreSQL: idempotency, thread links, channel settings."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from ringkas.slack_state import ChannelSettings, SlackState
from ringkas.storage import Database
from ringkas.storage.tables import ArticleRow, SlackRequestRow


async def _article(db: Database, url: str) -> int:
    async with db.session() as session:
        row = ArticleRow(canonical_url=url, url=url, text="text", content_hash="h")
        session.add(row)
        await session.flush()
        return row.id


async def test_claim_is_idempotent_and_race_safe(database: Database) -> None:
    state = SlackState(database)
    args = {
        "team_id": "T1", "channel_id": "C1", "message_ts": "1.1", "link": "https://a.test/x", "user_id": "U1"
    }
    results = await asyncio.gather(*(state.claim(kind="message", **args) for _ in range(8)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await state.claim(kind="mention", **args) is None
    assert await state.is_claimed(team_id="T1", channel_id="C1", message_ts="1.1", link="https://a.test/x")
    # A different link in the same message, or the same link in another message, is its own request.
    assert await state.claim(kind="message", **{**args, "link": "https://a.test/y"}) is not None
    assert await state.claim(kind="message", **{**args, "message_ts": "1.2"}) is not None
    assert await state.request_state(winners[0]) == "pending"


async def test_finish_records_outcome(database: Database) -> None:
    state = SlackState(database)
    article_id = await _article(database, "https://a.test/1")
    request_id = await state.claim(
        kind="command", team_id="T1", channel_id="C1", message_ts="2.0", link="https://a.test/1", user_id=None
    )
    assert request_id is not None
    await state.finish(request_id, state="done", article_id=article_id, reply_ts="9.9")
    async with database.session() as session:
        row = await session.scalar(select(SlackRequestRow).where(SlackRequestRow.id == request_id))
    assert (row.state, row.article_id, row.reply_ts, row.error_code) == ("done", article_id, "9.9", None)
    await state.finish(request_id, state="failed", error_code="not_found")
    assert await state.request_state(request_id) == "failed"
    with pytest.raises(ValueError):
        await state.finish(request_id, state="weird")


async def test_thread_links_and_latest_article(database: Database) -> None:
    state = SlackState(database)
    first = await _article(database, "https://a.test/1")
    second = await _article(database, "https://a.test/2")
    assert await state.latest_article("T1", "C1") is None
    await state.link_thread(team_id="T1", channel_id="C1", thread_ts="10.0", article_id=first,
                            message_ts="10.0", shared_by="U1")
    await asyncio.sleep(0.01)
    await state.link_thread(team_id="T1", channel_id="C1", thread_ts="10.0", article_id=second,
                            message_ts="10.0", shared_by="U1")
    # Linking again is harmless.
    await state.link_thread(team_id="T1", channel_id="C1", thread_ts="10.0", article_id=second,
                            message_ts="10.0", shared_by="U1")
    assert await state.articles_in_thread("T1", "C1", "10.0") == [first, second]
    assert await state.articles_in_thread("T1", "C1", "11.0") == []
    assert await state.latest_article("T1", "C1") == (second, "10.0")
    await asyncio.sleep(0.01)
    await state.link_thread(team_id="T1", channel_id="C1", thread_ts="20.0", article_id=first,
                            message_ts="20.0", shared_by="U2")
    assert await state.latest_article("T1", "C1") == (first, "20.0")
    assert await state.latest_article("T1", "C2") is None


async def test_channel_settings_persist(database_url: str) -> None:
    db = Database(database_url)
    await db.create_all()
    state = SlackState(db)
    assert await state.channel_settings("T1", "C1") == ChannelSettings(passive_summaries=True, language=None)
    await state.set_passive("T1", "C1", False)
    await state.set_language("T1", "C1", "id")
    await state.set_language("T1", "C2", "en")
    await db.dispose()

    db = Database(database_url)
    state = SlackState(db)
    assert await state.channel_settings("T1", "C1") == ChannelSettings(passive_summaries=False, language="id")
    assert await state.channel_settings("T1", "C2") == ChannelSettings(passive_summaries=True, language="en")
    await state.set_passive("T1", "C1", True)
    await state.set_language("T1", "C1", None)
    assert await state.channel_settings("T1", "C1") == ChannelSettings()
    await db.dispose()


async def test_stale_pending_request_can_be_taken_over_once(database: Database) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from ringkas.storage.base import utcnow

    state = SlackState(database)
    args = {
        "team_id": "T1", "channel_id": "C1", "message_ts": "3.0", "link": "https://a.test/z", "user_id": None
    }
    first = await state.claim(kind="message", **args)
    assert first is not None
    # Fresh pending work is never taken over.
    assert await state.claim(kind="message", reclaim_after=60, **args) is None

    async def age(minutes: int) -> None:
        async with database.session() as session:
            await session.execute(
                update(SlackRequestRow).where(SlackRequestRow.id == first)
                .values(updated_at=utcnow() - timedelta(minutes=minutes))
            )

    await age(30)
    results = await asyncio.gather(*(state.claim(kind="message", reclaim_after=60, **args) for _ in range(5)))
    assert [r for r in results if r is not None] == [first]  # exactly one redelivery takes it over
    assert await state.claim(kind="message", reclaim_after=60, **args) is None
    # Without reclaim_after (the default) and once finished, a request is never taken over.
    await age(30)
    assert await state.claim(kind="message", **args) is None
    await state.finish(first, state="done")
    await age(30)
    assert await state.claim(kind="message", reclaim_after=60, **args) is None
