"""Slack-side state the domain keeps: idempotency records, which article lives in which thread, and
per-channel settings. Plain strings and ids only; no Slack SDK here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Integer, String, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from ringkas.jobs.queue import JobQueue
from ringkas.storage import Database, Write
from ringkas.storage.base import utcnow
from ringkas.storage.tables import ChannelSettingsRow, SlackRequestRow, ThreadArticleRow

log = logging.getLogger("ringkas.slack_state")

REQUEST_STATES = frozenset({"pending", "done", "failed"})
SETTINGS_TTL = 2.0  # s a channel's settings are kept in memory


@dataclass(frozen=True)
class AcceptSpec:
    """One Slack message's links to claim, and the job that will summarize them."""

    kind: str
    team_id: str
    channel_id: str
    message_ts: str
    links: tuple[str, ...]
    user_id: str | None
    job_kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class ThreadLink:
    """An article summarized in a thread (`SlackState.link_thread`)."""

    team_id: str
    channel_id: str
    thread_ts: str
    article_id: int
    message_ts: str | None
    shared_by: str | None


@dataclass(frozen=True)
class ChannelSettings:
    passive_summaries: bool = True
    language: str | None = None  # None = use SUMMARY_LANGUAGE


# Request outcomes and thread links go through the database's group commit (ringkas.storage.group_commit):
# statements built once, values bound per row. A value left None keeps what the row has.
_FINISH = (
    update(SlackRequestRow).where(SlackRequestRow.id == bindparam("request_id"))
    .values(state=bindparam("state"), error_code=bindparam("error_code"),
            article_id=func.coalesce(bindparam("article_id", type_=Integer), SlackRequestRow.article_id),
            reply_ts=func.coalesce(bindparam("reply_ts", type_=String), SlackRequestRow.reply_ts),
            updated_at=bindparam("now"))
)


@cache
def _thread_upsert(is_sqlite: bool) -> Any:
    statement = (sqlite_insert if is_sqlite else postgresql_insert)(ThreadArticleRow)
    return statement.on_conflict_do_update(
        index_elements=["team_id", "channel_id", "thread_ts", "article_id"],
        set_={"created_at": statement.excluded.created_at},
    )


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def request_key(team_id: str, channel_id: str, message_ts: str, link: str) -> str:
    """The idempotency key of one link in one Slack message."""
    raw = "\x1f".join((team_id, channel_id, message_ts, link))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class SlackState:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- idempotency ---------------------------------------------------------------------------

    async def claim(
        self, *, kind: str, team_id: str, channel_id: str, message_ts: str, link: str, user_id: str | None,
        reclaim_after: float | None = None,
    ) -> int | None:
        """Record a pending request: its id, or None if this (team, channel, ts, link) was claimed before.

        The unique constraint on `key` decides races, so two processes (or an app_mention and a message
        event for the same post) can never both win. With `reclaim_after` (seconds), a request still
        pending after that long (its process died mid-way) may be taken over once by a redelivery.
        """
        key = request_key(team_id, channel_id, message_ts, link)
        row = self._request_row(key, kind=kind, team_id=team_id, channel_id=channel_id, message_ts=message_ts,
                                link=link, user_id=user_id)
        try:
            async with self.db.session() as session:
                session.add(row)
                await session.flush()
                return row.id
        except IntegrityError:
            if reclaim_after is None:
                return None
        return await self._reclaim(key, reclaim_after)

    async def accept(
        self, *, kind: str, team_id: str, channel_id: str, message_ts: str, links: list[str],
        user_id: str | None, queue: JobQueue, job_kind: str, payload: dict[str, Any],
    ) -> list[tuple[str, int]]:
        """Claim the links of one Slack message and add ONE job for those not claimed before, in one
        transaction: the (link, request id) pairs claimed now (empty: all were claimed before).

        Called before Slack is acknowledged: once Slack has its ack, the work is in the database and any
        process (this one after a crash included) will do it. The job's payload gets `links`: the claimed
        links with their request ids; its key is the first claimed link's request key.
        """
        spec = AcceptSpec(kind=kind, team_id=team_id, channel_id=channel_id, message_ts=message_ts,
                          links=tuple(links), user_id=user_id, job_kind=job_kind, payload=payload)
        for attempt in range(4):
            try:
                async with self.db.write_session(urgent=True) as session:
                    # The first try assumes a new message (the usual case): one round trip less.
                    return await self._claim(session, spec, queue, look_first=attempt > 0)
            except IntegrityError:
                continue  # another delivery of the same message claimed some links meanwhile: look again
        return []

    async def accept_many(self, specs: list[AcceptSpec], queue: JobQueue) -> list[list[tuple[str, int]]]:
        """`accept` for several messages in ONE transaction of two statements (acks arriving together share
        one commit): every claim in one INSERT … RETURNING, every job in one INSERT.
        Raises IntegrityError when any of them was claimed before: then accept them one by one."""
        claims = [
            [(link, request_key(spec.team_id, spec.channel_id, spec.message_ts, link))
             for link in dict.fromkeys(spec.links)]
            for spec in specs
        ]
        rows = [
            self._request_values(key, kind=spec.kind, team_id=spec.team_id, channel_id=spec.channel_id,
                                 message_ts=spec.message_ts, link=link, user_id=spec.user_id)
            for spec, links in zip(specs, claims, strict=True) for link, key in links
        ]
        if not rows:
            return [[] for _spec in specs]
        async with self.db.write(urgent=True) as conn:
            ids = {key: request_id for key, request_id in (await conn.execute(
                insert(SlackRequestRow).values(rows).returning(SlackRequestRow.key, SlackRequestRow.id)
            )).all()}
            results: list[list[tuple[str, int]]] = []
            jobs: list[tuple[str, str, dict[str, Any]]] = []
            for spec, links in zip(specs, claims, strict=True):
                claimed = [(link, ids[key]) for link, key in links]
                results.append(claimed)
                if claimed:
                    links_payload = [{"link": link, "request_id": request_id} for link, request_id in claimed]
                    jobs.append((spec.job_kind, links[0][1],
                                 {**spec.payload, "links": links_payload, "first_claimed": claimed[0][0]}))
            if jobs:
                await conn.execute(queue.insert_many_statement(jobs))
        return results

    async def _claim(self, session: Any, spec: AcceptSpec, queue: JobQueue, *,
                     look_first: bool) -> list[tuple[str, int]]:
        keys = {link: request_key(spec.team_id, spec.channel_id, spec.message_ts, link)
                for link in spec.links}
        taken: set[str] = set()
        if look_first:
            taken = set(await session.scalars(
                select(SlackRequestRow.key).where(SlackRequestRow.key.in_(list(keys.values())))
            ))
        rows = [
            (link, self._request_row(key, kind=spec.kind, team_id=spec.team_id, channel_id=spec.channel_id,
                                     message_ts=spec.message_ts, link=link, user_id=spec.user_id))
            for link, key in keys.items() if key not in taken
        ]
        if not rows:
            return []
        session.add_all([row for _link, row in rows])
        await session.flush()
        claimed = [(link, row.id) for link, row in rows]
        links_payload = [{"link": link, "request_id": request_id} for link, request_id in claimed]
        job_payload = {**spec.payload, "links": links_payload, "first_claimed": claimed[0][0]}
        await queue.add(session, kind=spec.job_kind, key=keys[claimed[0][0]], payload=job_payload)
        return claimed

    @classmethod
    def _request_row(cls, key: str, *, kind: str, team_id: str, channel_id: str, message_ts: str, link: str,
                     user_id: str | None) -> SlackRequestRow:
        return SlackRequestRow(**cls._request_values(key, kind=kind, team_id=team_id, channel_id=channel_id,
                                                     message_ts=message_ts, link=link, user_id=user_id))

    @staticmethod
    def _request_values(key: str, *, kind: str, team_id: str, channel_id: str, message_ts: str, link: str,
                        user_id: str | None) -> dict[str, Any]:
        # The key holds the full values; the columns keep what fits (PostgreSQL refuses longer strings, and a
        # slash command's trigger id, used as its message ts, is longer than any message ts).
        now = utcnow()
        return {
            "key": key, "kind": kind[:16], "team_id": team_id[:32], "channel_id": channel_id[:32],
            "message_ts": message_ts[:32], "link": link[:2048],
            "user_id": user_id[:32] if user_id else user_id, "state": "pending", "created_at": now,
            "updated_at": now,
        }

    async def _reclaim(self, key: str, after: float) -> int | None:
        cutoff = utcnow() - timedelta(seconds=after)
        async with self.db.session() as session:
            request_id = await session.scalar(select(SlackRequestRow.id).where(SlackRequestRow.key == key))
            if request_id is None:
                return None
            # Compare-and-set: only one redelivery can move the stale row forward.
            result = await session.execute(
                update(SlackRequestRow)
                .where(
                    SlackRequestRow.id == request_id,
                    SlackRequestRow.state == "pending",
                    SlackRequestRow.updated_at < cutoff,
                )
                .values(updated_at=utcnow())
            )
            taken = result.rowcount == 1  # type: ignore[attr-defined]
        if taken:
            log.warning("took over a stale pending request", extra={"request_id": request_id})
        return request_id if taken else None

    async def is_claimed(self, *, team_id: str, channel_id: str, message_ts: str, link: str) -> bool:
        key = request_key(team_id, channel_id, message_ts, link)
        async with self.db.session() as session:
            found = await session.scalar(select(SlackRequestRow.id).where(SlackRequestRow.key == key))
        return found is not None

    async def finish(
        self,
        request_id: int,
        *,
        state: str,
        error_code: str | None = None,
        article_id: int | None = None,
        reply_ts: str | None = None,
        thread: ThreadLink | None = None,
    ) -> None:
        """Settle a request; with `thread`, also remember its article in that thread (one transaction)."""
        await self.db.write_together(self.finish_writes(
            request_id, state=state, error_code=error_code, article_id=article_id, reply_ts=reply_ts,
            thread=thread))

    def finish_writes(
        self, request_id: int, *, state: str, error_code: str | None = None, article_id: int | None = None,
        reply_ts: str | None = None, thread: ThreadLink | None = None,
    ) -> list[Write]:
        """The writes of `finish`, for a caller that commits them with its own (e.g. the outbox recording
        the answer as sent)."""
        if state not in REQUEST_STATES:
            raise ValueError(f"unknown request state {state!r}")
        now = utcnow()
        writes = [self._thread_write(thread, now)] if thread is not None else []
        writes.append(Write(_FINISH, {"request_id": request_id, "state": state, "error_code": error_code,
                                      "article_id": article_id, "reply_ts": reply_ts, "now": now}))
        return writes

    def _thread_write(self, link: ThreadLink, now: datetime) -> Write:
        """Insert the thread's article, or (linked before) refresh its time so "latest article" follows the
        newest share."""
        return Write(_thread_upsert(self.db.is_sqlite), {
            "team_id": link.team_id, "channel_id": link.channel_id, "thread_ts": link.thread_ts,
            "article_id": link.article_id,
            # a slash command's trigger id (its "message ts") is longer than a ts
            "message_ts": link.message_ts[:32] if link.message_ts else link.message_ts,
            "shared_by": link.shared_by, "created_at": now,
        })

    async def link_threads(self, links: list[ThreadLink]) -> None:
        """Remember each article in its thread (idempotent; one commit, shared with other writers')."""
        now = utcnow()
        await self.db.write_together([self._thread_write(link, now) for link in links])

    async def request_state(self, request_id: int) -> str | None:
        async with self.db.session() as session:
            return await session.scalar(select(SlackRequestRow.state).where(SlackRequestRow.id == request_id))

    # --- threads -------------------------------------------------------------------------------

    async def link_thread(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        article_id: int,
        message_ts: str | None,
        shared_by: str | None,
    ) -> None:
        """Remember that `article_id` was summarized in this thread (idempotent)."""
        await self.link_threads([ThreadLink(
            team_id=team_id, channel_id=channel_id, thread_ts=thread_ts, article_id=article_id,
            message_ts=message_ts, shared_by=shared_by)])

    async def articles_in_thread(self, team_id: str, channel_id: str, thread_ts: str) -> list[int]:
        """Article ids summarized in a thread, oldest first."""
        async with self.db.session() as session:
            rows = await session.scalars(
                select(ThreadArticleRow.article_id)
                .where(
                    ThreadArticleRow.team_id == team_id,
                    ThreadArticleRow.channel_id == channel_id,
                    ThreadArticleRow.thread_ts == thread_ts,
                )
                .order_by(ThreadArticleRow.created_at, ThreadArticleRow.id)
            )
            return list(rows)

    async def latest_article(self, team_id: str, channel_id: str) -> tuple[int, str] | None:
        """(article_id, thread_ts) of the most recent summary posted in a channel."""
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(ThreadArticleRow.article_id, ThreadArticleRow.thread_ts)
                    .where(ThreadArticleRow.team_id == team_id, ThreadArticleRow.channel_id == channel_id)
                    .order_by(ThreadArticleRow.created_at.desc(), ThreadArticleRow.id.desc())
                    .limit(1)
                )
            ).first()
        return (row[0], row[1]) if row else None

    # --- channel settings ----------------------------------------------------------------------

    async def channel_settings(self, team_id: str, channel_id: str) -> ChannelSettings:
        """A channel's settings. Read on every shared link (before the ack, and again by its job), so they
        are kept for SETTINGS_TTL s, and callers arriving while they are read wait for that one read; a
        change made through this process is seen at once (the cache lives on the Database, shared by every
        SlackState of the process), one made by another process within SETTINGS_TTL s."""
        cache: dict[tuple[str, str], tuple[float, asyncio.Future[ChannelSettings]]] = self.db.memo.setdefault(
            "channel_settings", {})
        now = time.monotonic()
        known = cache.get((team_id, channel_id))
        if known is not None and known[0] > now and not _failed(known[1]):
            return await asyncio.shield(known[1])
        if len(cache) > 10_000:
            cache.clear()
        reading = asyncio.ensure_future(self._read_settings(team_id, channel_id))
        cache[(team_id, channel_id)] = (now + SETTINGS_TTL, reading)
        try:
            return await asyncio.shield(reading)
        except BaseException:
            if cache.get((team_id, channel_id), (0, None))[1] is reading:
                cache.pop((team_id, channel_id), None)  # an error is not kept
            raise

    async def _read_settings(self, team_id: str, channel_id: str) -> ChannelSettings:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(
                select(ChannelSettingsRow.passive_summaries, ChannelSettingsRow.language).where(
                    ChannelSettingsRow.team_id == team_id, ChannelSettingsRow.channel_id == channel_id)
            )).first()
        if row is None:
            return ChannelSettings()
        return ChannelSettings(passive_summaries=bool(row.passive_summaries), language=row.language)

    async def set_passive(self, team_id: str, channel_id: str, enabled: bool) -> None:
        await self._upsert_settings(team_id, channel_id, passive_summaries=enabled)

    async def set_language(self, team_id: str, channel_id: str, language: str | None) -> None:
        """`None` (or "auto" passed by callers as None) clears the channel's own language."""
        await self._upsert_settings(team_id, channel_id, language=language)

    async def _upsert_settings(self, team_id: str, channel_id: str, **values: object) -> None:
        self.db.memo.get("channel_settings", {}).pop((team_id, channel_id), None)
        try:
            await self._write_settings(team_id, channel_id, **values)
        finally:
            self.db.memo.get("channel_settings", {}).pop((team_id, channel_id), None)

    async def _write_settings(self, team_id: str, channel_id: str, **values: object) -> None:
        for _attempt in range(3):
            try:
                async with self.db.session() as session:
                    row = await session.get(ChannelSettingsRow, (team_id, channel_id))
                    if row is None:
                        row = ChannelSettingsRow(
                            team_id=team_id, channel_id=channel_id, passive_summaries=True
                        )
                        session.add(row)
                    for name, value in values.items():
                        setattr(row, name, value)
                    row.updated_at = utcnow()
                return
            except IntegrityError:
                continue  # another writer inserted the row first: read it and update
        raise RuntimeError("could not store channel settings after 3 attempts")
