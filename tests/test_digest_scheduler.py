"""The scheduler: jobs from the database, firing a job, missed runs, restarts, concurrent schedulers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from ringkas.digest.models import Digest, Subscription
from ringkas.digest.schedule import due_today, next_run, parse_time, parse_timezone
from ringkas.digest.scheduler import DigestScheduler
from ringkas.storage import Database
from ringkas.storage.digest_tables import DigestSubscriptionRow
from tests.test_digest_support import (
    NOW,
    add_fixture_feeds,
    digest_responder,
    digest_service,
    fixture_sources,
)

TEAM = "T0001"


class Poster:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str, Digest]] = []

    async def __call__(self, team_id: str, channel_id: str, digest: Digest) -> str:
        self.posted.append((team_id, channel_id, digest))
        await asyncio.sleep(0.05)  # a real post takes a moment: concurrent runs overlap
        return f"1700000000.{len(self.posted):06d}"


async def backdate(db: Database, days: int = 2) -> None:
    """Subscriptions made before the fixture day (the real clock is later than NOW)."""
    async with db.session() as session:
        await session.execute(update(DigestSubscriptionRow).values(updated_at=NOW - timedelta(days=days)))


def test_time_and_zone_parsing() -> None:
    assert parse_time("7:30") == "07:30" and parse_time("08.15") == "08:15" and parse_time("23:59") == "23:59"
    assert parse_time("24:00") is None and parse_time("7") is None and parse_time("7:3") is None
    assert parse_timezone("asia/jakarta") == "Asia/Jakarta"
    assert parse_timezone("WIB") == "Asia/Jakarta" and parse_timezone("wita") == "Asia/Makassar"
    assert parse_timezone("Mars/Olympus") is None and parse_timezone("../../etc/passwd") is None


def test_due_and_next_run_in_local_time() -> None:
    sub = Subscription(TEAM, "C1", "10:00", "Asia/Jakarta", since=NOW - timedelta(days=3))
    # NOW is 16:00 in Jakarta: today's 10:00 passed six hours ago
    assert due_today(sub, NOW)
    assert due_today(sub, NOW, grace=timedelta(hours=6))
    assert not due_today(sub, NOW, grace=timedelta(hours=5))
    assert next_run(sub, NOW) == datetime(2026, 3, 11, 3, 0, tzinfo=UTC)
    late = Subscription(TEAM, "C1", "20:00", "Asia/Jakarta", since=NOW - timedelta(days=3))
    assert not due_today(late, NOW) and next_run(late, NOW) == datetime(2026, 3, 10, 13, 0, tzinfo=UTC)
    assert next_run(late, NOW, posted_today=True) == datetime(2026, 3, 11, 13, 0, tzinfo=UTC)
    fresh = Subscription(TEAM, "C1", "10:00", "Asia/Jakarta", since=NOW - timedelta(hours=1))
    assert not due_today(fresh, NOW)  # subscribed after today's time: first digest tomorrow
    dst = Subscription(TEAM, "C1", "02:30", "Europe/Berlin")  # 02:30 does not exist on 29 Mar 2026
    assert next_run(dst, datetime(2026, 3, 28, 12, 0, tzinfo=UTC)).astimezone(UTC) == datetime(
        2026, 3, 29, 1, 30, tzinfo=UTC
    )


async def test_missed_digest_runs_once_at_start_and_not_again_after_restart(
    web, openai_stub, make_settings, database
) -> None:
    openai_stub.responder = digest_responder
    sources = fixture_sources(add_fixture_feeds(web))
    settings = make_settings()
    poster = Poster()
    async with digest_service(settings, database, sources=sources) as service:
        scheduler = DigestScheduler(service, post=poster)
        await scheduler.subscribe(TEAM, "C-missed", time="08:00", timezone="UTC")  # 1 h before NOW
        await scheduler.subscribe(TEAM, "C-later", time="10:00", timezone="UTC")  # still to come
        await scheduler.subscribe(TEAM, "C-long-ago", time="01:00", timezone="UTC")  # 8 h: beyond grace
        await backdate(database)
        await scheduler.start()
        try:
            await scheduler.wait_idle()  # the catch-up runs in the background
            jobs = scheduler.jobs()
            assert set(jobs) == {(TEAM, "C-missed"), (TEAM, "C-later"), (TEAM, "C-long-ago")}
            job = scheduler.scheduler.get_job(f"digest:{TEAM}:C-missed")
            assert str(job.trigger.timezone) == "UTC" and job.misfire_grace_time == 6 * 3600
            assert [c for _, c, _ in poster.posted] == ["C-missed"]
        finally:
            await scheduler.shutdown()
    # a restart (new service, new scheduler, same database) does not post the day's digest again
    async with digest_service(settings, database, sources=sources) as service:
        scheduler = DigestScheduler(service, post=poster)
        await scheduler.start()
        try:
            await scheduler.wait_idle()
            assert await scheduler.sync() == []
        finally:
            await scheduler.shutdown()
    assert [c for _, c, _ in poster.posted] == ["C-missed"]


async def test_start_does_not_wait_for_the_catch_up(web, openai_stub, make_settings, database) -> None:
    """A missed digest is caught up after start() returns: the app serves Slack while it is built."""
    openai_stub.responder = digest_responder
    openai_stub.delay = 0.5
    sources = fixture_sources(add_fixture_feeds(web))
    poster = Poster()
    async with digest_service(make_settings(), database, sources=sources) as service:
        scheduler = DigestScheduler(service, post=poster)
        await scheduler.subscribe(TEAM, "C-missed", time="08:00", timezone="UTC")
        await backdate(database)
        await scheduler.start()
        try:
            assert set(scheduler.jobs()) == {(TEAM, "C-missed")} and poster.posted == []
            await scheduler.wait_idle()
            assert [c for _, c, _ in poster.posted] == ["C-missed"]
        finally:
            await scheduler.shutdown()


async def test_shutdown_during_the_catch_up_leaves_no_task_behind(
    web, openai_stub, make_settings, database
) -> None:
    openai_stub.responder = digest_responder
    openai_stub.delay = 0.3
    sources = fixture_sources(add_fixture_feeds(web))
    poster = Poster()
    async with digest_service(make_settings(), database, sources=sources) as service:
        scheduler = DigestScheduler(service, post=poster)
        await scheduler.subscribe(TEAM, "C-missed", time="08:00", timezone="UTC")
        await backdate(database)
        await scheduler.start()
        for _ in range(500):  # until the catch-up has started building the digest
            if scheduler._running:
                break
            await asyncio.sleep(0.01)
        await scheduler.shutdown()  # the digest being built gets its time to finish
        assert scheduler._running == {} and scheduler._catch_up.done()
        assert [c for _, c, _ in poster.posted] == ["C-missed"]


async def test_job_function_posts_the_due_digest(web, openai_stub, make_settings, database) -> None:
    openai_stub.responder = digest_responder
    sources = fixture_sources(add_fixture_feeds(web))
    poster = Poster()
    async with digest_service(make_settings(), database, sources=sources) as service:
        scheduler = DigestScheduler(service, post=poster)
        await scheduler.start()
        try:
            status = await scheduler.subscribe(
                TEAM, "C1", time="16:00", timezone="Asia/Jakarta", user_id="U1"
            )
            assert status.next_run == datetime(2026, 3, 11, 9, 0, tzinfo=UTC)  # today's 16:00 WIB is NOW
            job = scheduler.scheduler.get_job(f"digest:{TEAM}:C1")
            assert (job.trigger.fields[5].expressions[0].first, str(job.trigger.timezone)) == (
                16,
                "Asia/Jakarta",
            )
            result = await job.func(*job.args)  # what APScheduler runs at 16:00 Jakarta time
            assert result.status == "posted" and len(poster.posted) == 1
            assert (await job.func(*job.args)).status == "skipped"
            status = await scheduler.status(TEAM, "C1")
            assert status.posted_today and status.language == "en"
            assert await scheduler.unsubscribe(TEAM, "C1")
            assert scheduler.jobs() == {} and not await scheduler.unsubscribe(TEAM, "C1")
            assert await scheduler.fire(TEAM, "C1") is None  # a job left over for a removed channel
        finally:
            await scheduler.shutdown()
    assert len(poster.posted) == 1


async def test_sync_picks_up_subscriptions_made_by_another_process(
    web, openai_stub, make_settings, database
) -> None:
    openai_stub.responder = digest_responder
    sources = fixture_sources(add_fixture_feeds(web))
    async with digest_service(make_settings(), database, sources=sources) as service:
        scheduler = DigestScheduler(service, post=Poster())
        await scheduler.start()
        try:
            await service.store.subscribe(
                TEAM, "C-elsewhere", time="22:00", timezone="Europe/Berlin", created_by=None
            )
            assert scheduler.jobs() == {}
            await scheduler.sync()
            assert set(scheduler.jobs()) == {(TEAM, "C-elsewhere")}
            await service.store.unsubscribe(TEAM, "C-elsewhere")
            await scheduler.sync()
            assert scheduler.jobs() == {}
        finally:
            await scheduler.shutdown()


async def test_subscribing_while_a_sync_runs_keeps_the_new_job(make_settings, database) -> None:
    async with digest_service(make_settings(), database, sources=[]) as service:
        scheduler = DigestScheduler(service, post=Poster())
        await scheduler.start()
        try:
            for n in range(15):  # the sync reads the subscriptions just before or after the new one
                await asyncio.gather(
                    scheduler.sync(), scheduler.subscribe(TEAM, f"C{n}", time="23:00", timezone="UTC")
                )
            assert set(scheduler.jobs()) == {(TEAM, f"C{n}") for n in range(15)}
        finally:
            await scheduler.shutdown()


async def test_two_schedulers_on_one_database_post_once(
    web, openai_stub, make_settings, database_url
) -> None:
    """Two bot instances (separate engines and services) fire the same job at the same moment."""
    openai_stub.responder = digest_responder
    sources = fixture_sources(add_fixture_feeds(web))
    settings = make_settings()
    poster = Poster()
    databases = [Database(database_url), Database(database_url)]
    await databases[0].create_all()
    try:
        async with (
            digest_service(settings, databases[0], sources=sources) as one,
            digest_service(settings, databases[1], sources=sources) as two,
        ):
            await one.store.subscribe(TEAM, "C1", time="09:00", timezone="UTC", created_by=None)
            schedulers = [DigestScheduler(one, post=poster), DigestScheduler(two, post=poster)]
            results = await asyncio.gather(*(s.fire(TEAM, "C1") for s in schedulers for _ in range(3)))
    finally:
        for db in databases:
            await db.dispose()
    statuses = sorted(r.status for r in results if r is not None)
    assert statuses.count("posted") == 1
    assert len(poster.posted) == 1


@pytest.mark.parametrize("text", ["8:00", "08.00"])
def test_indonesian_time_style(text: str) -> None:
    assert parse_time(text) == "08:00"


@pytest.mark.parametrize("text", ["localtime", "Factory", "factory", "posixrules", "posix/Asia/Jakarta"])
def test_host_specific_and_placeholder_zones_are_refused(text: str) -> None:
    assert parse_timezone(text) is None


def test_subscribe_arguments_name_the_real_problem() -> None:
    from handlers.digest import parse_subscribe

    defaults = {"default_time": "08:00", "default_timezone": "UTC"}
    assert parse_subscribe(["wib", "7.30"], **defaults) == ("07:30", "Asia/Jakarta")
    with pytest.raises(ValueError, match="one time"):
        parse_subscribe(["07:30", "08:00"], **defaults)
    with pytest.raises(ValueError, match="one time zone"):
        parse_subscribe(["Asia/Jakarta", "Europe/Berlin"], **defaults)
