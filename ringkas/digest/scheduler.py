"""DigestScheduler: APScheduler 3 (AsyncIOScheduler) jobs, one per subscribed channel, from the database.

Schedules live in `digest_subscriptions`; the in-memory jobs are only a cache of them, rebuilt at start, on
subscribe/unsubscribe and every few minutes (so a change made by another bot process is picked up too).
The same periodic check runs digests that are due today and not posted yet (missed while the bot was down,
or failed and worth another try) within a grace period. Whoever fires, `DigestService.run_channel` claims the
day in the database first, so a digest is never posted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ringkas.digest.models import Subscription
from ringkas.digest.schedule import local_date, next_run
from ringkas.digest.service import DigestService, Poster, RunResult
from ringkas.errors import ConfigError

log = logging.getLogger("ringkas.digest.scheduler")

GRACE = timedelta(hours=6)  # a digest missed by up to this much still goes out (once) when the bot is back
SYNC_EVERY = timedelta(minutes=5)
SHUTDOWN_WAIT = 10.0  # seconds a digest being posted gets to finish when the app stops
_JOB_PREFIX = "digest:"


@dataclass(frozen=True)
class ScheduleStatus:
    subscription: Subscription
    language: str
    next_run: datetime  # aware, in the subscription's zone
    posted_today: bool


class DigestScheduler:
    def __init__(
        self,
        digests: DigestService,
        *,
        post: Poster,
        grace: timedelta = GRACE,
        sync_every: timedelta = SYNC_EVERY,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.digests = digests
        self.post = post
        self.grace = grace
        self.sync_every = sync_every
        self.clock = clock or digests.clock
        self.scheduler: AsyncIOScheduler | None = None
        self._running: dict[tuple[str, str], asyncio.Task[RunResult | None]] = {}
        self._sync_lock = asyncio.Lock()
        self._catch_up: asyncio.Task[list[RunResult]] | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the scheduler in the running loop and build the jobs from the database. Digests missed
        while the bot was down are caught up in the background: start-up (and with it the first Slack
        acknowledgements) never waits for feeds and the model."""
        if self.scheduler is not None:
            return
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.scheduler.start()
        self.scheduler.add_job(
            self.sync, IntervalTrigger(seconds=self.sync_every.total_seconds(), timezone=UTC),
            id="digest-sync", coalesce=True, max_instances=1, misfire_grace_time=60,
        )
        async with self._sync_lock:
            await self._sync_jobs()
        self._catch_up = asyncio.get_running_loop().create_task(self._sync_logged(), name="digest-catch-up")
        log.info("digest scheduler started", extra={"jobs": len(self.jobs())})

    async def wait_idle(self) -> None:
        """Wait until the start-up catch-up and every digest being built or posted are done."""
        if self._catch_up is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._catch_up)
        while self._running:
            await asyncio.wait(list(self._running.values()))

    async def shutdown(self) -> None:
        if self.scheduler is None:
            return
        self.scheduler.shutdown(wait=False)
        self.scheduler = None
        if self._catch_up is not None and not self._catch_up.done():
            self._catch_up.cancel()  # the runs it started are in `_running` and get their time below
        tasks = list(self._running.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def jobs(self) -> dict[tuple[str, str], datetime | None]:
        """(team, channel) -> next fire time of its job."""
        if self.scheduler is None:
            return {}
        found = {}
        for job in self.scheduler.get_jobs():
            if job.id.startswith(_JOB_PREFIX):
                team_id, channel_id = job.args
                found[(team_id, channel_id)] = job.next_run_time
        return found

    # --- the periodic check --------------------------------------------------------------------

    async def sync(self, *, now: datetime | None = None) -> list[RunResult]:
        """Make the jobs match the database, then run what is due today and not yet posted."""
        async with self._sync_lock:
            await self._sync_jobs()
            due = await self.digests.due(now=now or self.clock(), grace=self.grace)
        started = [self._start_run(subscription, now=now) for subscription in due]
        results = await asyncio.gather(*(asyncio.shield(task) for task in started if task is not None))
        return [result for result in results if result is not None]

    async def _sync_logged(self) -> list[RunResult]:
        try:
            return await self.sync()
        except Exception:  # a database outage at start-up: the periodic check tries again
            log.exception("digest catch-up failed")
            return []

    async def _sync_jobs(self) -> None:
        subscriptions = await self.digests.store.subscriptions()
        if self.scheduler is not None:
            wanted = {(s.team_id, s.channel_id): s for s in subscriptions}
            for key in set(self.jobs()) - set(wanted):
                self.scheduler.remove_job(_job_id(*key))
            for subscription in subscriptions:
                if subscription.paused:
                    if self.scheduler.get_job(_job_id(subscription.team_id, subscription.channel_id)):
                        self.scheduler.remove_job(_job_id(subscription.team_id, subscription.channel_id))
                else:
                    self._schedule(subscription)

    def _schedule(self, subscription: Subscription) -> None:
        assert self.scheduler is not None
        hour, minute = (int(part) for part in subscription.time.split(":"))
        self.scheduler.add_job(
            self.fire,
            CronTrigger(hour=hour, minute=minute, timezone=subscription.timezone),
            args=(subscription.team_id, subscription.channel_id),
            id=_job_id(subscription.team_id, subscription.channel_id),
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=int(self.grace.total_seconds()),
        )

    # --- running digests -----------------------------------------------------------------------

    async def fire(self, team_id: str, channel_id: str, *, now: datetime | None = None) -> RunResult | None:
        """What a channel's job runs at its time: today's digest, unless it is taken or the channel left."""
        subscription = await self.digests.store.subscription(team_id, channel_id)
        if subscription is None or subscription.paused:
            return None
        task = self._start_run(subscription, now=now)
        if task is None:
            return None
        # shield: the scheduler cancels its job tasks on shutdown; the run itself is given time to finish
        return await asyncio.shield(task)

    def _start_run(
        self, subscription: Subscription, *, now: datetime | None = None
    ) -> asyncio.Task[RunResult | None] | None:
        key = (subscription.team_id, subscription.channel_id)
        if key in self._running:
            return None
        task = asyncio.get_running_loop().create_task(self._run(subscription, now))
        self._running[key] = task
        task.add_done_callback(lambda _t: self._running.pop(key, None))
        return task

    async def _run(self, subscription: Subscription, now: datetime | None) -> RunResult | None:
        try:
            return await self.digests.run_channel(subscription, post=self.post, now=now)
        except Exception:
            log.exception("digest run crashed", extra={"team": subscription.team_id,
                                                       "channel": subscription.channel_id})
            return None

    # --- what /digest needs --------------------------------------------------------------------

    async def subscribe(
        self, team_id: str, channel_id: str, *, time: str | None = None, timezone: str | None = None,
        user_id: str | None = None,
    ) -> ScheduleStatus:
        settings = self.digests.settings
        # under the sync lock: a sync that read the subscriptions before this write must not then drop
        # the job made here as "not in the database"
        async with self._sync_lock:
            subscription = await self.digests.store.subscribe(
                team_id, channel_id, time=time or settings.digest_time,
                timezone=timezone or settings.digest_timezone, created_by=user_id,
            )
            if self.scheduler is not None:
                self._schedule(subscription)
        log.info("digest subscribed", extra={"team": team_id, "channel": channel_id,
                                             "time": subscription.time, "tz": subscription.timezone})
        status = await self.status(team_id, channel_id)
        if status is None:
            raise ConfigError("the subscription vanished while it was being saved")
        return status

    async def unsubscribe(self, team_id: str, channel_id: str) -> bool:
        async with self._sync_lock:
            removed = await self.digests.store.unsubscribe(team_id, channel_id)
            if self.scheduler is not None and self.scheduler.get_job(_job_id(team_id, channel_id)):
                self.scheduler.remove_job(_job_id(team_id, channel_id))
        log.info("digest unsubscribed", extra={"team": team_id, "channel": channel_id, "removed": removed})
        return removed

    async def status(
        self, team_id: str, channel_id: str, *, now: datetime | None = None
    ) -> ScheduleStatus | None:
        subscription = await self.digests.store.subscription(team_id, channel_id)
        if subscription is None:
            return None
        now = now or self.clock()
        posted = await self.digests.posted_on(subscription, local_date(now, subscription.timezone))
        return ScheduleStatus(
            subscription=subscription,
            language=await self.digests.language_for(team_id, channel_id),
            next_run=next_run(subscription, now, posted_today=posted),
            posted_today=posted,
        )


def _job_id(team_id: str, channel_id: str) -> str:
    return f"{_JOB_PREFIX}{team_id}:{channel_id}"
