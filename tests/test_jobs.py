"""The job queue and the outbox on real databases (a SQLite file and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from ringkas.jobs import (
    DeliveryFailed,
    Job,
    JobKind,
    JobQueue,
    Outbox,
    OutboxEntry,
    RetryLater,
    SendLater,
    SendRefused,
    Worker,
)
from ringkas.slack_state import SlackState, request_key
from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.job_tables import JobRow
from ringkas.storage.tables import SlackRequestRow


async def _states(db: Database) -> dict[str, str]:
    async with db.session() as session:
        rows = (await session.execute(select(JobRow.key, JobRow.state))).all()
    return {key: state for key, state in rows}


async def _run_job_until(database: Database, queue: JobQueue, kind: JobKind, state: str, *, polls: int,
                         linger: float = 0.0) -> None:
    """Queue job "a" of kind "k", run a worker until the job reaches `state` (or `polls` run out), then
    `linger` seconds more (to see that nothing else happens) before stopping it."""
    worker = Worker(queue, {"k": kind}, poll_interval=0.05)
    await queue.enqueue(kind="k", key="a", payload={})
    await worker.start()
    try:
        for _ in range(polls):
            if (await _states(database)).get("a") == state:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(linger)
    finally:
        await worker.stop()


async def test_a_key_is_queued_once_and_taken_once(database: Database) -> None:
    queue = JobQueue(database)
    assert await queue.enqueue(kind="k", key="a", payload={"n": 1})
    assert not await queue.enqueue(kind="k", key="a", payload={"n": 2})
    taken = await queue.take(10)
    assert [(job.key, job.payload, job.attempts) for job in taken] == [("a", {"n": 1}, 1)]
    assert await queue.take(10) == []
    assert await queue.depth() == 1
    assert await queue.complete(taken[0])
    assert await _states(database) == {"a": "done"}
    assert await queue.depth() == 0


async def test_an_expired_lease_is_taken_by_another_process_and_fences_the_first(database: Database) -> None:
    dead = JobQueue(database, lease_seconds=0.3)
    alive = JobQueue(database, lease_seconds=30)
    await dead.enqueue(kind="k", key="a", payload={})
    [first] = await dead.take(5)
    assert await alive.take(5) == []  # the lease still holds
    await asyncio.sleep(0.5)
    [again] = await alive.take(5)
    assert again.id == first.id and again.attempts == 2
    assert not await dead.complete(first)  # its lease is gone: it may not settle the job
    assert await alive.complete(again)
    assert await _states(database) == {"a": "done"}


async def test_concurrent_takers_never_share_a_job(database: Database) -> None:
    for n in range(60):
        await JobQueue(database).enqueue(kind="k", key=f"j{n}", payload={})
    queues = [JobQueue(database) for _ in range(3)]
    seen: list[int] = []

    async def drain(queue: JobQueue) -> None:
        while jobs := await queue.take(4):
            seen.extend(job.id for job in jobs)
            for job in jobs:
                assert await queue.complete(job)

    await asyncio.gather(*(drain(queue) for queue in queues))
    assert len(seen) == 60 and len(set(seen)) == 60


async def test_accept_claims_the_links_and_adds_one_job_together(database: Database) -> None:
    state = SlackState(database)
    queue = JobQueue(database)
    where = {"kind": "mention", "team_id": "T1", "channel_id": "C1", "message_ts": "1.1", "user_id": "U1",
             "queue": queue, "job_kind": "links", "payload": {"x": 1}}
    first = await state.accept(**where, links=["https://a.test/", "https://b.test/"])
    again = await state.accept(**where, links=["https://a.test/", "https://b.test/"])
    assert [link for link, _id in first] == ["https://a.test/", "https://b.test/"] and again == []
    [job] = await queue.take(5)
    assert job.key == request_key("T1", "C1", "1.1", "https://a.test/")
    assert job.payload["x"] == 1
    assert job.payload["links"] == [{"link": link, "request_id": rid} for link, rid in first]
    # A job that cannot be added takes its claims with it (one transaction).
    await queue.enqueue(kind="links", key=request_key("T1", "C1", "2.2", "https://c.test/"), payload={})
    assert await state.accept(**{**where, "message_ts": "2.2"}, links=["https://c.test/"]) == []
    async with database.session() as session:
        ts = list(await session.scalars(select(SlackRequestRow.message_ts)))
    assert ts == ["1.1", "1.1"]


async def test_worker_waits_out_an_outage_then_finishes(database: Database) -> None:
    queue = JobQueue(database, lease_seconds=5)
    calls: list[int] = []
    told: list[str] = []

    async def run(job: Job) -> None:
        calls.append(job.attempts)
        if len(calls) < 3:
            raise RetryLater("model unavailable", delay=0.05)

    async def give_up(job: Job, reason: str) -> None:
        told.append(reason)

    await _run_job_until(database, queue, JobKind(run, give_up), "done", polls=200)
    assert calls == [1, 2, 3] and told == []
    assert await _states(database) == {"a": "done"}


async def test_worker_gives_up_once_after_the_deadline(database: Database) -> None:
    queue = JobQueue(database, lease_seconds=5, deadline_seconds=0.4)
    told: list[str] = []

    async def run(job: Job) -> None:
        raise RetryLater("model unavailable", delay=0.1)

    async def give_up(job: Job, reason: str) -> None:
        told.append(reason)

    await _run_job_until(database, queue, JobKind(run, give_up), "failed", polls=100, linger=0.3)
    assert await _states(database) == {"a": "failed"}
    assert len(told) == 1 and "deadline" in told[0]
    [failed] = await queue.list_jobs(("failed",))
    assert await queue.retry(failed["id"])
    assert await _states(database) == {"a": "queued"}


async def test_a_job_cut_off_by_shutdown_is_given_back(database: Database) -> None:
    queue = JobQueue(database, lease_seconds=30)
    started = asyncio.Event()

    async def run(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    worker = Worker(queue, {"k": JobKind(run)}, poll_interval=0.05)
    await queue.enqueue(kind="k", key="a", payload={})
    await worker.start()
    await asyncio.wait_for(started.wait(), 10)
    await worker.stop(grace=0.1)
    [job] = await JobQueue(database).take(5)  # the next process takes it at once, not after the lease
    assert job.attempts == 2  # counted: it may have written to Slack, so the next run looks first


class FlakySlack:
    def __init__(self, outages: int) -> None:
        self.outages = outages
        self.sent: list[OutboxEntry] = []

    async def send(self, entry: OutboxEntry) -> str | None:
        if self.outages:
            self.outages -= 1
            raise SendLater("ratelimited", delay=0.05)
        self.sent.append(entry)
        return f"100.{len(self.sent)}"


async def test_outbox_delivers_after_429s_and_stores_the_ts(database: Database) -> None:
    outbox = Outbox(database)
    entry = await outbox.put("job:result", action="post", channel_id="C1", thread_ts="1.1",
                             payload={"text": "hi"})
    again = await outbox.put("job:result", action="post", channel_id="C1", payload={"text": "other"})
    assert again.id == entry.id and again.payload == {"text": "hi"}
    slack = FlakySlack(outages=2)
    ts = await outbox.deliver(entry, slack, give_up_at=utcnow() + timedelta(seconds=30))
    assert ts == "100.1" and len(slack.sent) == 1 and slack.sent[0].attempts == 3
    stored = await outbox.get("job:result")
    assert stored is not None and stored.state == "sent" and stored.message_ts == "100.1"
    # Delivering a sent entry again sends nothing.
    assert await outbox.deliver(stored, slack, give_up_at=utcnow()) == "100.1" and len(slack.sent) == 1


async def test_outbox_gives_up_at_the_deadline_and_on_refusal(database: Database) -> None:
    outbox = Outbox(database)
    entry = await outbox.put("a", action="post", channel_id="C1", payload={"text": "hi"})
    try:
        await outbox.deliver(entry, FlakySlack(outages=1000), give_up_at=utcnow() + timedelta(seconds=0.2))
        raise AssertionError("delivered through an endless outage")
    except DeliveryFailed:
        pass
    assert (await outbox.get("a")).state == "failed"  # type: ignore[union-attr]

    class Refusing:
        async def send(self, entry: OutboxEntry) -> str | None:
            raise SendRefused("channel_not_found")

    other = await outbox.put("b", action="post", channel_id="C1", payload={"text": "hi"})
    try:
        await outbox.deliver(other, Refusing(), give_up_at=utcnow() + timedelta(seconds=30))
        raise AssertionError("a refused post counted as delivered")
    except DeliveryFailed:
        pass
    assert (await outbox.get("b")).state == "failed"  # type: ignore[union-attr]


async def test_acks_arriving_together_share_a_commit_and_redeliveries_are_still_refused(
    database: Database,
) -> None:
    from sqlalchemy import event

    from ringkas.jobs.intake import Intake
    from ringkas.slack_state import AcceptSpec

    state, queue = SlackState(database), JobQueue(database)
    intake = Intake(state, queue)

    def spec(ts: str) -> AcceptSpec:
        return AcceptSpec(kind="message", team_id="T1", channel_id="C1", message_ts=ts,
                          links=(f"https://a.test/{ts}",), user_id="U1", job_kind="links", payload={})

    commits: list[int] = []
    event.listen(database.engine.sync_engine, "commit", lambda conn: commits.append(1))
    first = await asyncio.gather(*(intake.accept(spec(f"{n}.0")) for n in range(20)))
    assert all(len(claimed) == 1 for claimed in first)
    assert len(commits) < 20  # grouped
    # A batch holding a redelivery falls back to one by one: the new ones are claimed, the old one is not.
    again = await asyncio.gather(intake.accept(spec("3.0")),
                                 *(intake.accept(spec(f"{n}.0")) for n in range(20, 25)))
    assert again[0] == [] and all(len(claimed) == 1 for claimed in again[1:])
    assert await queue.depth() == 25


async def test_finished_jobs_and_sent_posts_are_forgotten_after_a_week(database: Database) -> None:
    from datetime import timedelta as td

    from sqlalchemy import update as sql_update

    from ringkas.storage.job_tables import OutboxRow

    queue, outbox = JobQueue(database), Outbox(database)
    for key in ("old", "new", "failed"):
        await queue.enqueue(kind="k", key=key, payload={})
    jobs = {job.key: job for job in await queue.take(5)}
    await queue.complete(jobs["old"])
    await queue.complete(jobs["new"])
    await queue.fail(jobs["failed"], "boom")
    entry = await outbox.put("old:0:result", action="post", channel_id="C1", payload={"text": "hi"})
    await outbox.mark_sent(entry, "1.1")
    week_ago = utcnow() - td(days=8)
    async with database.session() as session:
        await session.execute(sql_update(JobRow).where(JobRow.key.in_(["old", "failed"]))
                              .values(finished_at=week_ago))
        await session.execute(sql_update(OutboxRow).values(created_at=week_ago))
    assert await queue.prune(td(days=7)) == 1
    assert await _states(database) == {"new": "done", "failed": "failed"}
    assert await outbox.get("old:0:result") is None
