"""DigestService: builds digests (feeds + team-shared links -> selected, written stories) and runs them.

A scheduled run claims its (team, channel, local date) row in `digest_runs` BEFORE building or posting,
so restarts, retries and several bot processes on one database never post a channel's digest twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ringkas.config import Settings
from ringkas.digest.feeds import FeedReader, Fetcher, feed_sources
from ringkas.digest.models import (
    Digest,
    FeedFailure,
    FeedItem,
    FeedOutcome,
    FeedSource,
    Story,
    Subscription,
)
from ringkas.digest.outlets import site_label
from ringkas.digest.schedule import due_today, local_date
from ringkas.digest.select import in_window, per_source_cap, select_stories
from ringkas.digest.store import HEARTBEAT, MAX_ATTEMPTS, DigestStore
from ringkas.digest.write import DigestWriter
from ringkas.documents import UsageContext
from ringkas.errors import RingkasError
from ringkas.slack_state import SlackState
from ringkas.storage import Database

log = logging.getLogger("ringkas.digest.service")

WINDOW = timedelta(hours=24)
FEED_CACHE = timedelta(minutes=10)  # channels due at the same time share one round of feed fetches
# A run that takes over from an attempt that was posting waits this long before it looks in Slack for that
# attempt's message: a post in flight when its process died (or timed out) lands meanwhile, and is found.
POST_SETTLE = 10.0
KEEP_ITEMS = timedelta(days=7)
FEED_CONCURRENCY = 8
EXTRA_CANDIDATES = 5  # more than DIGEST_MAX_STORIES go to the model, which folds same-event stories

Poster = Callable[[str, str, Digest], Awaitable[str | None]]
# A poster may also have these (Slack glue tells people; the service decides when):
#   async paused(subscription, error_code)  -- Slack refused for good; the subscription is now paused
#   async gave_up(subscription, error)      -- no digest today after the last attempt (RingkasError)
CHANNEL_GONE = frozenset({"not_in_channel", "channel_not_found", "is_archived"})


class NoSources(RingkasError):
    code = "no_sources"
    default_message = "I couldn't reach any of the news sources for the digest. I'll try again later."


class PostFailed(RingkasError):
    """Slack definitely did not take the digest (e.g. channel_not_found): safe to try again later."""

    code = "post_failed"
    default_message = "Slack refused the digest message."


@dataclass(frozen=True)
class RunResult:
    team_id: str
    channel_id: str
    local_date: str
    status: str  # posted | skipped | failed | uncertain
    message_ts: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Snapshot:
    outcomes: tuple[FeedOutcome, ...]
    at: datetime
    recorded: bool


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_language(settings: Settings) -> str:
    """The team's language for digests: SUMMARY_LANGUAGE, with `auto` meaning English."""
    return "en" if settings.summary_language == "auto" else settings.summary_language


class DigestService:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        fetcher: Fetcher,
        llm: Any,
        ringkas: Any = None,  # the link pipeline; its stored summaries are read from the database directly
        sources: Sequence[FeedSource] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.db = db
        self.store = DigestStore(db)
        self.slack_state = SlackState(db)
        self.llm = llm
        self.writer = DigestWriter(llm)
        self.reader = FeedReader(fetcher, concurrency=FEED_CONCURRENCY, timeout=settings.fetch_timeout + 5)
        self.sources = list(sources) if sources is not None else feed_sources(settings)
        self.clock = clock
        self.post_settle = POST_SETTLE  # tests of the takeover logic set 0
        self._snapshot: _Snapshot | None = None
        self._refresh_lock: asyncio.Lock | None = None

    # --- building ------------------------------------------------------------------------------

    async def language_for(self, team_id: str, channel_id: str) -> str:
        """The channel's own language setting wins; otherwise SUMMARY_LANGUAGE (auto -> English)."""
        settings = await self.slack_state.channel_settings(team_id, channel_id)
        if settings.language and settings.language != "auto":
            return settings.language
        return default_language(self.settings)

    async def build_preview(self) -> Digest:
        """A digest of the last 24 h in the default language, for the terminal: writes nothing."""
        now = self.clock()
        return await self.build(
            window_start=now - WINDOW, window_end=now, language=default_language(self.settings),
            timezone=self.settings.digest_timezone, record=False,
        )

    async def build_now(self, team_id: str, channel_id: str, *, timezone: str | None = None) -> Digest:
        """The last 24 h for one channel, on request (`/digest now`); not a scheduled run."""
        now = self.clock()
        subscription = await self.store.subscription(team_id, channel_id)
        return await self.build(
            window_start=now - WINDOW, window_end=now, language=await self.language_for(team_id, channel_id),
            timezone=timezone or (subscription.timezone if subscription else self.settings.digest_timezone),
            team_id=team_id, channel_id=channel_id, record=True,
        )

    async def build(
        self,
        *,
        window_start: datetime,
        window_end: datetime,
        language: str,
        timezone: str,
        team_id: str | None = None,
        channel_id: str | None = None,
        record: bool = True,
    ) -> Digest:
        snapshot = await self._feeds(record=record)
        feed_urls = [source.url for source in self.sources]
        items = await self._items(snapshot, feed_urls, window_start)
        shared = []
        if team_id and channel_id:
            shared = await self.store.shared_links(
                team_id, channel_id, since=window_start, until=window_end, language=language
            )
        answered = [o for o in snapshot.outcomes if o.status != "failed"]
        if self.sources and not answered and not shared:
            raise NoSources(detail=f"all {len(self.sources)} feeds failed")
        ai_share = {o.url: o.ai_share for o in snapshot.outcomes}
        states = await self.store.feed_states(o.url for o in snapshot.outcomes if o.ai_share is None)
        ai_share.update({url: state.ai_share for url, state in states.items() if ai_share.get(url) is None})
        for source in self.sources:  # a declared topic beats the measured share
            if source.topic:
                ai_share[source.url] = 100 if source.topic == "ai" else 0
        max_stories = self.settings.digest_max_stories
        # Clustering is quadratic in the items read (over 100 ms for 1000): off the event loop.
        candidates = await asyncio.to_thread(
            select_stories, items, shared, window_start=window_start, window_end=window_end,
            max_stories=max_stories + EXTRA_CANDIDATES, source_cap=per_source_cap(max_stories),
            weights={source.url: source.weight for source in self.sources}, ai_share=ai_share,
        )
        await self._reuse_summaries(candidates, language)
        written = await self.writer.write(
            candidates, language=language, max_stories=max_stories,
            context=UsageContext(team_id=team_id, channel_id=channel_id),
        )
        stories = written.stories
        digest = Digest(
            local_date=local_date(window_end, timezone),
            timezone=timezone,
            language=language,
            window_start=window_start,
            window_end=window_end,
            opening=written.opening,
            stories=tuple(stories),
            items_read=len(in_window(items, window_start, window_end)),
            sources_read=len(answered),
            sources_total=len(self.sources),
            feeds_failed=self._failures(snapshot.outcomes),
            shared_count=len(shared),
            usage=written.usage,
            model=written.model,
        )
        log.info(
            "digest built",
            extra={"team": team_id, "channel": channel_id, "stories": len(stories),
                   "items": digest.items_read, "feeds_ok": len(answered),
                   "feeds_failed": len(digest.feeds_failed),
                   "model_calls": written.usage.calls, "prompt_tokens": written.usage.prompt_tokens},
        )
        return digest

    def _failures(self, outcomes: Sequence[FeedOutcome]) -> tuple[FeedFailure, ...]:
        names = {source.url: source.name for source in self.sources}
        failures = []
        for outcome in outcomes:
            if outcome.status == "failed":
                reason = (outcome.error or "unknown error").split(": ", 1)[-1]
                name = names.get(outcome.url) or site_label(None, feed_url=outcome.url)
                failures.append(FeedFailure(url=outcome.url, reason=reason, name=name))
        return tuple(failures)

    async def _reuse_summaries(self, stories: Sequence[Story], language: str) -> None:
        """Stories whose article the link flow already summarized take that TL;DR (no model text needed);
        one summarized in another language hands it to the model to translate."""
        wanted = {id(story): [story.url, *(source.url for source in story.sources)]
                  for story in stories if not story.summary}
        stored = await self.store.stored_tldrs((url for urls in wanted.values() for url in urls), language)
        for story in stories:
            for url in dict.fromkeys(wanted.get(id(story), ())):
                own, other = stored.get(url, (None, None))
                if own:
                    story.summary, story.reused_summary = own, True
                    break
                if other and not story.hint:
                    story.hint = other

    async def _feeds(self, *, record: bool) -> _Snapshot:
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            now = self.clock()
            cached = self._snapshot
            if cached and now - cached.at < FEED_CACHE and (cached.recorded or not record):
                return cached
            states = await self.store.feed_states(source.url for source in self.sources)
            outcomes = await self.reader.read_all(self.sources, states, now=now)
            if record:
                await self.store.save_feed_outcomes(outcomes, now=now)
                await self.store.prune_items(now - KEEP_ITEMS)
            self._snapshot = _Snapshot(outcomes=tuple(outcomes), at=now, recorded=record)
            return self._snapshot

    async def _items(self, snapshot: _Snapshot, feed_urls: list[str], since: datetime) -> list[FeedItem]:
        """Cached entries of the window plus (when nothing was recorded) the ones just fetched."""
        stored = await self.store.feed_items_since(feed_urls, since)
        if snapshot.recorded:
            return stored
        merged = {(item.feed_url, item.canonical_url): item for o in snapshot.outcomes for item in o.items}
        merged.update({(item.feed_url, item.canonical_url): item for item in stored})
        return list(merged.values())

    # --- scheduled runs ------------------------------------------------------------------------

    async def run_channel(
        self, subscription: Subscription, *, post: Poster, now: datetime | None = None
    ) -> RunResult:
        """Today's digest for one subscribed channel, at most once per local day across all processes.

        While it runs, a heartbeat renews the claim: a process that dies mid-run (while building or while
        posting) stops renewing, and any process (this one restarted included) takes the run over."""
        now = now or self.clock()
        day = local_date(now, subscription.timezone).isoformat()
        beat = asyncio.get_running_loop().create_task(self._heartbeat(subscription, day))
        try:
            return await self._run_channel(subscription, post=post, now=now)
        finally:
            beat.cancel()

    async def _heartbeat(self, subscription: Subscription, day: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT.total_seconds())
            try:
                await self.store.renew_claim(subscription.team_id, subscription.channel_id, day)
            except Exception as exc:  # a database blip: the next beat tries again
                log.warning("digest heartbeat failed", extra={"error": type(exc).__name__})

    async def _run_channel(
        self, subscription: Subscription, *, post: Poster, now: datetime | None = None
    ) -> RunResult:
        now = now or self.clock()
        team_id, channel_id = subscription.team_id, subscription.channel_id
        day = local_date(now, subscription.timezone).isoformat()
        before = await self.store.run(team_id, channel_id, day)
        run_id = await self.store.claim_run(team_id, channel_id, day)
        if run_id is None:
            log.info("digest already taken", extra={"team": team_id, "channel": channel_id, "date": day})
            return RunResult(team_id, channel_id, day, "skipped")
        took_over_posting = before is not None and before.state in ("posting", "uncertain")
        try:
            previous_end = await self.store.last_window_end(team_id, channel_id)
            start = max(now - WINDOW, previous_end) if previous_end else now - WINDOW
            digest = await self.build(
                window_start=start, window_end=now, language=await self.language_for(team_id, channel_id),
                timezone=subscription.timezone, team_id=team_id, channel_id=channel_id, record=True,
            )
            await self.store.mark_posting(
                run_id, window_start=start, window_end=now, stories=len(digest.stories),
                items_read=digest.items_read,
            )
        except Exception as exc:
            await self.store.mark_failed(run_id, _describe(exc))
            log.warning("digest build failed", exc_info=not isinstance(exc, RingkasError),
                        extra={"team": team_id, "channel": channel_id, "date": day, "error": _describe(exc)})
            run = await self.store.run(team_id, channel_id, day)
            if run is not None and run.attempts >= MAX_ATTEMPTS:  # no digest today: say so in the channel
                error = exc if isinstance(exc, RingkasError) else RingkasError(detail=type(exc).__name__)
                await _tell(post, "gave_up", subscription, error)
            return RunResult(team_id, channel_id, day, "failed", error=_describe(exc))
        if took_over_posting:
            log.info("an earlier attempt was posting; letting its post land before looking for it",
                     extra={"team": team_id, "channel": channel_id, "wait": POST_SETTLE})
            await asyncio.sleep(self.post_settle)
        try:
            ts = await post(team_id, channel_id, digest)
        except PostFailed as exc:
            await self.store.mark_failed(run_id, _describe(exc))
            log.warning("digest post refused", extra={"team": team_id, "channel": channel_id,
                                                      "error": _describe(exc)})
            if exc.detail in CHANNEL_GONE:  # fails every day from now on: pause, tell who subscribed
                await self.store.pause(team_id, channel_id, exc.detail)
                log.warning("digest subscription paused", extra={"team": team_id, "channel": channel_id,
                                                                 "reason": exc.detail})
                await _tell(post, "paused", subscription, exc.detail)
            return RunResult(team_id, channel_id, day, "failed", error=_describe(exc))
        except Exception as exc:
            # Slack may or may not have the message: never retry this one (a gap beats a duplicate)
            await self.store.mark_uncertain(run_id, _describe(exc))
            log.exception("digest post failed midway", extra={"team": team_id, "channel": channel_id})
            return RunResult(team_id, channel_id, day, "uncertain", error=_describe(exc))
        await self.store.mark_posted(run_id, message_ts=ts)
        log.info("digest posted", extra={"team": team_id, "channel": channel_id, "date": day, "ts": ts})
        return RunResult(team_id, channel_id, day, "posted", message_ts=ts)

    async def due(self, *, now: datetime | None = None, grace: timedelta | None = None) -> list[Subscription]:
        """Subscriptions whose local digest time has passed today and whose digest is not posted yet."""
        now = now or self.clock()
        due: list[Subscription] = []
        for subscription in await self.store.subscriptions():
            if subscription.paused or not due_today(subscription, now, grace=grace):
                continue
            day = local_date(now, subscription.timezone).isoformat()
            run = await self.store.run(subscription.team_id, subscription.channel_id, day)
            retry = run is not None and run.state in ("failed", "uncertain") and run.attempts < MAX_ATTEMPTS
            # claimed/posting: in progress, or its claimer died (claim_run decides, with one winner)
            if run is None or run.state in ("claimed", "posting") or retry:
                due.append(subscription)
        return due

    async def run_due(
        self, *, post: Poster, now: datetime | None = None, grace: timedelta | None = None
    ) -> int:
        """Run every due digest now (cron / `python bot.py digest`); returns how many were posted."""
        now = now or self.clock()
        results = await self.run_many(await self.due(now=now, grace=grace), post=post, now=now)
        return sum(1 for result in results if result.status == "posted")

    async def run_many(
        self, subscriptions: Sequence[Subscription], *, post: Poster, now: datetime | None = None
    ) -> list[RunResult]:
        gate = asyncio.Semaphore(4)

        async def one(subscription: Subscription) -> RunResult:
            async with gate:
                return await self.run_channel(subscription, post=post, now=now)

        return list(await asyncio.gather(*(one(s) for s in subscriptions)))

    async def posted_on(self, subscription: Subscription, day: date) -> bool:
        run = await self.store.run(subscription.team_id, subscription.channel_id, day.isoformat())
        return run is not None and run.state in {"posting", "posted", "uncertain"}


async def _tell(post: Any, hook: str, subscription: Subscription, problem: object) -> None:
    tell = getattr(post, hook, None)
    if tell is None:
        return
    try:
        await tell(subscription, problem)
    except Exception:  # telling people is best effort: the run's outcome is already recorded
        log.exception("digest notice failed", extra={"hook": hook, "channel": subscription.channel_id})


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RingkasError):
        return f"{exc.code}: {exc.detail or exc.user_message}"
    return f"{type(exc).__name__}: {exc}"[:500]
