"""Digest persistence: subscriptions, run claims (one digest per channel per local day), feed cache.

Every write that two processes may race on relies on a unique constraint or a conditional UPDATE, so the
outcome is decided by the database (SQLite or PostgreSQL), never by process memory.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ringkas.digest.models import FeedItem, FeedOutcome, FeedState, RunRecord, SharedLink, Subscription
from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.digest_tables import (
    DigestPauseRow,
    DigestRunRow,
    DigestSubscriptionRow,
    FeedItemRow,
    FeedStateRow,
)
from ringkas.storage.tables import ArticleRow, SummaryRow, ThreadArticleRow

OWNER = f"{socket.gethostname()}:{os.getpid()}"[:128]
STALE_AFTER = timedelta(minutes=3)  # a run whose claimer stopped its heartbeat (every 30 s) this long
HEARTBEAT = timedelta(seconds=30)


def owner_is_dead(owner: str | None) -> bool:
    """True when `owner` (host:pid) is a process of this host that no longer runs (a crash, a restart)."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, owned by someone else
    return False
SHARED_EXCERPT_CHARS = 700
MAX_ATTEMPTS = 3  # tries per channel and day when building or posting fails
ITEM_CHUNK = 500  # feed items per database round trip


def _subscription(row: DigestSubscriptionRow, paused: str | None = None) -> Subscription:
    return Subscription(row.team_id, row.channel_id, row.time, row.timezone, row.created_by, row.updated_at,
                        paused)


def _run(row: DigestRunRow) -> RunRecord:
    return RunRecord(
        id=row.id, team_id=row.team_id, channel_id=row.channel_id, local_date=row.local_date, state=row.state,
        message_ts=row.message_ts, posted_at=row.posted_at, error=row.error, attempts=row.attempts,
    )


class DigestStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _insert(self, table: Any) -> Any:
        return (sqlite.insert if self.db.is_sqlite else postgresql.insert)(table)

    # --- subscriptions -------------------------------------------------------------------------

    async def subscribe(
        self, team_id: str, channel_id: str, *, time: str, timezone: str, created_by: str | None
    ) -> Subscription:
        now = utcnow()
        statement = self._insert(DigestSubscriptionRow).values(
            team_id=team_id, channel_id=channel_id, time=time, timezone=timezone, created_by=created_by,
            created_at=now, updated_at=now,
        )
        statement = statement.on_conflict_do_update(
            index_elements=["team_id", "channel_id"],
            set_={"time": time, "timezone": timezone, "created_by": created_by, "updated_at": now},
        )
        async with self.db.session() as session:
            await session.execute(statement)
            await session.execute(delete(DigestPauseRow).where(  # subscribing again resumes a paused one
                DigestPauseRow.team_id == team_id, DigestPauseRow.channel_id == channel_id))
        return Subscription(team_id, channel_id, time, timezone, created_by, now)

    async def pause(self, team_id: str, channel_id: str, reason: str) -> None:
        statement = self._insert(DigestPauseRow).values(
            team_id=team_id, channel_id=channel_id, reason=reason[:64], paused_at=utcnow()
        )
        statement = statement.on_conflict_do_update(
            index_elements=["team_id", "channel_id"], set_={"reason": reason[:64], "paused_at": utcnow()}
        )
        async with self.db.session() as session:
            await session.execute(statement)

    async def _pauses(self, session: Any, team_id: str | None = None,
                      channel_id: str | None = None) -> dict[tuple[str, str], str]:
        query = select(DigestPauseRow)
        if team_id is not None and channel_id is not None:
            query = query.where(DigestPauseRow.team_id == team_id, DigestPauseRow.channel_id == channel_id)
        rows = await session.scalars(query)
        return {(row.team_id, row.channel_id): row.reason for row in rows}

    async def unsubscribe(self, team_id: str, channel_id: str) -> bool:
        async with self.db.session() as session:
            result = await session.execute(
                delete(DigestSubscriptionRow).where(
                    DigestSubscriptionRow.team_id == team_id, DigestSubscriptionRow.channel_id == channel_id
                )
            )
            await session.execute(delete(DigestPauseRow).where(
                DigestPauseRow.team_id == team_id, DigestPauseRow.channel_id == channel_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def subscription(self, team_id: str, channel_id: str) -> Subscription | None:
        async with self.db.session() as session:
            row = await session.get(DigestSubscriptionRow, (team_id, channel_id))
            pauses = await self._pauses(session, team_id, channel_id) if row else {}
        return _subscription(row, pauses.get((team_id, channel_id))) if row else None

    async def subscriptions(self) -> list[Subscription]:
        async with self.db.session() as session:
            rows = (await session.scalars(
                select(DigestSubscriptionRow).order_by(
                    DigestSubscriptionRow.team_id, DigestSubscriptionRow.channel_id
                )
            )).all()
            pauses = await self._pauses(session)
            return [_subscription(row, pauses.get((row.team_id, row.channel_id))) for row in rows]

    # --- runs: the once-a-day guarantee ---------------------------------------------------------

    async def claim_run(
        self, team_id: str, channel_id: str, local_date: str, *,
        stale_after: timedelta = STALE_AFTER,
    ) -> int | None:
        """Claim today's digest for a channel; the id when this process won, None when someone else has it.

        A new day is claimed by INSERT (the UNIQUE constraint picks one winner). A run that failed before
        anything was posted, or whose claimer vanished while building (stale `claimed`), is taken over by a
        conditional UPDATE, which also has exactly one winner. A run whose claimer died (a process of this
        host that is gone, or one that stopped renewing `claimed_at` for `stale_after`) is taken over whatever
        it was doing, `posting` included, and so is an `uncertain` one: the digest poster looks in Slack for
        the message an earlier attempt may have posted (message metadata with the run's key) before posting,
        so taking over never doubles a digest.
        """
        now = utcnow()
        try:
            async with self.db.session() as session:
                row = DigestRunRow(
                    team_id=team_id, channel_id=channel_id, local_date=local_date, state="claimed",
                    owner=OWNER, attempts=1, claimed_at=now,
                )
                session.add(row)
                await session.flush()
                return row.id
        except IntegrityError:
            pass
        where = (
            DigestRunRow.team_id == team_id,
            DigestRunRow.channel_id == channel_id,
            DigestRunRow.local_date == local_date,
        )
        async with self.db.session() as session:
            owner = await session.scalar(select(DigestRunRow.owner).where(*where))
            in_flight = DigestRunRow.state.in_(("claimed", "posting"))
            takeovers = [
                and_(DigestRunRow.state.in_(("failed", "uncertain")), DigestRunRow.attempts < MAX_ATTEMPTS),
                and_(in_flight, DigestRunRow.claimed_at < now - stale_after),
            ]
            if owner_is_dead(owner):
                takeovers.append(and_(in_flight, DigestRunRow.owner == owner))
            result = await session.execute(
                update(DigestRunRow)
                .where(*where, or_(*takeovers))
                .values(
                    state="claimed", owner=OWNER, claimed_at=now, error=None,
                    attempts=DigestRunRow.attempts + 1,
                )
                .returning(DigestRunRow.id)
            )
            return result.scalar_one_or_none()

    async def renew_claim(self, team_id: str, channel_id: str, local_date: str) -> None:
        """The heartbeat of a run in progress here: keeps others from taking it over as stale."""
        async with self.db.session() as session:
            await session.execute(
                update(DigestRunRow)
                .where(
                    DigestRunRow.team_id == team_id,
                    DigestRunRow.channel_id == channel_id,
                    DigestRunRow.local_date == local_date,
                    DigestRunRow.owner == OWNER,
                    DigestRunRow.state.in_(("claimed", "posting")),
                )
                .values(claimed_at=utcnow())
            )

    async def mark_posting(self, run_id: int, *, window_start: datetime, window_end: datetime,
                           stories: int, items_read: int) -> None:
        await self._update_run(
            run_id, state="posting", window_start=window_start, window_end=window_end, stories=stories,
            items_read=items_read,
        )

    async def mark_posted(self, run_id: int, *, message_ts: str | None) -> None:
        await self._update_run(run_id, state="posted", message_ts=message_ts, posted_at=utcnow())

    async def mark_failed(self, run_id: int, error: str) -> None:
        """Nothing was posted: the run may be claimed again (up to MAX_ATTEMPTS in all)."""
        await self._update_run(run_id, state="failed", error=error[:1000])

    async def mark_uncertain(self, run_id: int, error: str) -> None:
        """Posting broke midway: Slack may have the message. Tried again (up to MAX_ATTEMPTS): the poster
        looks for it in Slack before posting."""
        await self._update_run(run_id, state="uncertain", error=error[:1000])

    async def _update_run(self, run_id: int, **values: object) -> None:
        async with self.db.session() as session:
            await session.execute(update(DigestRunRow).where(DigestRunRow.id == run_id).values(**values))

    async def run(self, team_id: str, channel_id: str, local_date: str) -> RunRecord | None:
        async with self.db.session() as session:
            row = await session.scalar(
                select(DigestRunRow).where(
                    DigestRunRow.team_id == team_id,
                    DigestRunRow.channel_id == channel_id,
                    DigestRunRow.local_date == local_date,
                )
            )
            return _run(row) if row else None

    async def runs(self, team_id: str, channel_id: str) -> list[RunRecord]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(DigestRunRow)
                .where(DigestRunRow.team_id == team_id, DigestRunRow.channel_id == channel_id)
                .order_by(DigestRunRow.local_date)
            )
            return [_run(row) for row in rows]

    async def last_window_end(self, team_id: str, channel_id: str) -> datetime | None:
        """Where the channel's previous posted digest stopped reading (the next one starts there)."""
        async with self.db.session() as session:
            return await session.scalar(
                select(func.max(DigestRunRow.window_end)).where(
                    DigestRunRow.team_id == team_id,
                    DigestRunRow.channel_id == channel_id,
                    DigestRunRow.state.in_(("posting", "posted")),
                )
            )

    # --- feed cache ----------------------------------------------------------------------------

    async def feed_states(self, urls: Iterable[str]) -> dict[str, FeedState]:
        wanted = list(dict.fromkeys(urls))
        if not wanted:
            return {}
        async with self.db.session() as session:
            rows = await session.scalars(select(FeedStateRow).where(FeedStateRow.url.in_(wanted)))
            return {
                row.url: FeedState(
                    url=row.url, etag=row.etag, last_modified=row.last_modified, title=row.title,
                    ai_share=row.ai_share, fetched_before=row.first_fetched_at is not None,
                )
                for row in rows
            }

    async def save_feed_outcomes(self, outcomes: Sequence[FeedOutcome], *, now: datetime) -> None:
        """Remember validators and new entries. Entries already stored keep their first `seen_at`."""
        async with self.db.session() as session:
            for outcome in outcomes:
                state: dict[str, object] = {"last_status": outcome.status, "last_fetched_at": now,
                                            "last_error": outcome.error}
                if outcome.status != "failed":
                    state.update(etag=outcome.etag, last_modified=outcome.last_modified)
                if outcome.status == "ok":
                    state.update(title=outcome.title, ai_share=outcome.ai_share)
                statement = self._insert(FeedStateRow).values(
                    url=outcome.url, first_fetched_at=now if outcome.status == "ok" else None, **state
                )
                if outcome.status == "ok":
                    state["first_fetched_at"] = func.coalesce(FeedStateRow.first_fetched_at, now)
                await session.execute(statement.on_conflict_do_update(index_elements=["url"], set_=state))
                rows = [
                    {
                        "feed_url": item.feed_url, "canonical_url": item.canonical_url, "url": item.url,
                        "title": item.title, "excerpt": item.excerpt, "source": item.source,
                        "published_at": item.published_at, "seen_at": item.seen_at,
                        "age_unknown": item.age_unknown,
                    }
                    for item in outcome.items
                ]
                # one statement executed for many rows (compiled once): 20,000 items stay cheap for the loop
                statement_items = self._insert(FeedItemRow).on_conflict_do_nothing(
                    index_elements=["feed_url", "canonical_url"]
                )
                for start in range(0, len(rows), ITEM_CHUNK):
                    await session.execute(statement_items, rows[start : start + ITEM_CHUNK])

    async def feed_items_since(self, feed_urls: Iterable[str], since: datetime) -> list[FeedItem]:
        urls = list(dict.fromkeys(feed_urls))
        if not urls:
            return []
        columns = (FeedItemRow.feed_url, FeedItemRow.source, FeedItemRow.url, FeedItemRow.canonical_url,
                   FeedItemRow.title, FeedItemRow.excerpt, FeedItemRow.published_at, FeedItemRow.seen_at,
                   FeedItemRow.age_unknown)
        items: list[FeedItem] = []
        async with self.db.session() as session:
            # plain rows, streamed in parts: thousands of ORM objects at once would hold the event loop
            result = await session.stream(
                select(*columns).where(
                    FeedItemRow.feed_url.in_(urls),
                    or_(
                        FeedItemRow.published_at >= since,
                        and_(
                            FeedItemRow.published_at.is_(None),
                            FeedItemRow.age_unknown.is_(False),
                            FeedItemRow.seen_at >= since,
                        ),
                    ),
                )
            )
            async for part in result.partitions(ITEM_CHUNK):
                items.extend(FeedItem(*row) for row in part)
        return items

    async def prune_items(self, older_than: datetime) -> int:
        async with self.db.session() as session:
            result = await session.execute(
                delete(FeedItemRow).where(
                    FeedItemRow.seen_at < older_than,
                    or_(FeedItemRow.published_at.is_(None), FeedItemRow.published_at < older_than),
                )
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # --- stored summaries -----------------------------------------------------------------------

    async def stored_tldrs(
        self, canonical_urls: Iterable[str], language: str
    ) -> dict[str, tuple[str | None, str | None]]:
        """Articles the link flow has summarized: canonical URL -> (TL;DR in `language`, newest TL;DR in
        another language), each None when there is none."""
        urls = list(dict.fromkeys(canonical_urls))
        if not urls:
            return {}
        found: dict[str, tuple[str | None, str | None]] = {}
        async with self.db.session() as session:
            for start in range(0, len(urls), 500):
                rows = (
                    await session.execute(
                        select(ArticleRow.canonical_url, SummaryRow.language, SummaryRow.tldr)
                        .join(SummaryRow, SummaryRow.article_id == ArticleRow.id)
                        .where(ArticleRow.canonical_url.in_(urls[start : start + 500]))
                        .order_by(SummaryRow.created_at, SummaryRow.id)
                    )
                ).all()
                for url, summary_language, tldr in rows:  # oldest first, so the newest wins
                    if not tldr or not tldr.strip():
                        continue
                    own, other = found.get(url, (None, None))
                    if summary_language == language:
                        own = tldr
                    else:
                        other = tldr
                    found[url] = (own, other)
        return found

    # --- links the team shared -----------------------------------------------------------------

    async def shared_links(
        self, team_id: str, channel_id: str, *, since: datetime, until: datetime, language: str
    ) -> list[SharedLink]:
        """Articles summarized in this channel during the window, with a stored TL;DR when there is one."""
        async with self.db.session() as session:
            shared = (
                select(ThreadArticleRow.article_id, func.min(ThreadArticleRow.created_at).label("shared_at"))
                .where(
                    ThreadArticleRow.team_id == team_id,
                    ThreadArticleRow.channel_id == channel_id,
                    ThreadArticleRow.created_at >= since,
                    ThreadArticleRow.created_at < until,
                )
                .group_by(ThreadArticleRow.article_id)
                .subquery()
            )
            rows = (
                await session.execute(
                    select(ArticleRow, shared.c.shared_at)
                    .join(shared, shared.c.article_id == ArticleRow.id)
                    .order_by(shared.c.shared_at)
                )
            ).all()
            if not rows:
                return []
            ids = [article.id for article, _ in rows]
            summaries = (
                await session.scalars(
                    select(SummaryRow).where(SummaryRow.article_id.in_(ids)).order_by(SummaryRow.created_at)
                )
            ).all()
        in_language: dict[int, SummaryRow] = {}
        any_language: dict[int, SummaryRow] = {}
        for summary in summaries:  # oldest first, so the newest wins
            any_language[summary.article_id] = summary
            if summary.language == language:
                in_language[summary.article_id] = summary
        links = []
        for article, shared_at in rows:
            own = in_language.get(article.id)
            other = any_language.get(article.id)
            title = article.title or (own.title if own else None) or (other.title if other else None)
            links.append(
                SharedLink(
                    article_id=article.id,
                    url=article.url,
                    canonical_url=article.canonical_url,
                    title=(title or article.canonical_url)[:300],
                    site_name=article.site_name,
                    excerpt=article.text[:SHARED_EXCERPT_CHARS],
                    shared_at=shared_at if shared_at.tzinfo else shared_at.replace(tzinfo=until.tzinfo),
                    tldr=own.tldr if own else None,
                    other_tldr=other.tldr if other and not own else None,
                )
            )
        return links
