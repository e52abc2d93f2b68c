"""The job table as a queue: enqueue once per key, take with a lease, finish at the attempt taken.

One `UPDATE … WHERE id IN (SELECT … due …) RETURNING` takes jobs atomically on both databases: on
PostgreSQL the inner SELECT uses `FOR UPDATE SKIP LOCKED` so concurrent takers never wait on each other;
SQLite serialises writers, so the statement is atomic there as it is.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ringkas.storage import Database, Write
from ringkas.storage.base import utcnow
from ringkas.storage.job_tables import JobRow, OutboxRow

log = logging.getLogger("ringkas.jobs")

JOB_STATES = ("queued", "running", "done", "failed")


class RetryLater(Exception):
    """Raised by a job handler: a dependency is out (model, database, Slack); run the job again later.
    `settle`: writes about what the job did get done, committed with the job's return to the queue."""

    def __init__(self, reason: str, delay: float | None = None, settle: Sequence[Write] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.settle = tuple(settle)


@dataclass(frozen=True)
class Job:
    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    attempts: int  # including this one; also the fencing token of this lease
    give_up_at: datetime
    created_at: datetime


def process_owner() -> str:
    """host:pid:random, unique per process start (a restarted process never takes old leases for its own)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(3)}"


_COLUMNS = (JobRow.id, JobRow.key, JobRow.kind, JobRow.payload, JobRow.attempts, JobRow.give_up_at,
            JobRow.created_at)


# Completions go through the database's group commit (many jobs finish at once under load): one statement,
# built once, for all of them.
_COMPLETE = (
    update(JobRow)
    .where(JobRow.id == bindparam("job_id"), JobRow.state == "running",
           JobRow.lease_owner == bindparam("owner"), JobRow.attempts == bindparam("attempt"))
    .values(state="done", lease_owner=None, lease_until=None, finished_at=bindparam("now"),
            updated_at=bindparam("now"))
)


def _job(row: Any) -> Job:
    return Job(id=row.id, key=row.key, kind=row.kind, payload=dict(row.payload or {}), attempts=row.attempts,
               give_up_at=row.give_up_at, created_at=row.created_at)


class JobQueue:
    def __init__(self, db: Database, *, lease_seconds: float = 60.0, deadline_seconds: float = 1800.0,
                 owner: str | None = None) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)
        self.deadline = timedelta(seconds=deadline_seconds)
        self.owner = owner or process_owner()

    # --- adding ------------------------------------------------------------------------------

    def insert_statement(self, *, kind: str, key: str, payload: dict[str, Any]) -> Any:
        return self.insert_many_statement([(kind, key, payload)])

    def insert_many_statement(self, jobs: list[tuple[str, str, dict[str, Any]]]) -> Any:
        """One INSERT for several (kind, key, payload) jobs."""
        now = utcnow()
        return insert(JobRow).values([
            {"key": key, "kind": kind, "payload": payload, "state": "queued", "attempts": 0, "run_after": now,
             "give_up_at": now + self.deadline, "created_at": now, "updated_at": now}
            for kind, key, payload in jobs
        ])

    async def add(self, session: AsyncSession, *, kind: str, key: str, payload: dict[str, Any]) -> None:
        """Add a job inside the caller's transaction (so it commits, or not, with the caller's other rows).
        A key added before raises IntegrityError from the flush."""
        await session.execute(self.insert_statement(kind=kind, key=key, payload=payload))

    async def enqueue(self, *, kind: str, key: str, payload: dict[str, Any]) -> bool:
        """Add a job in its own transaction: False when a job with this key exists already."""
        try:
            async with self.db.write_session() as session:
                await self.add(session, kind=kind, key=key, payload=payload)
        except IntegrityError:
            return False
        return True

    # --- taking and finishing ------------------------------------------------------------------

    async def take(self, limit: int, kinds: tuple[str, ...] | None = None) -> list[Job]:
        """Lease up to `limit` due jobs: queued ones whose time has come, and running ones whose lease ran
        out (their worker died)."""
        if limit <= 0:
            return []
        now = utcnow()
        due = or_(
            and_(JobRow.state == "queued", JobRow.run_after <= now),
            and_(JobRow.state == "running", JobRow.lease_until < now),
        )
        chosen = select(JobRow.id).where(due)
        if kinds is not None:
            chosen = chosen.where(JobRow.kind.in_(kinds))
        chosen = chosen.order_by(JobRow.run_after, JobRow.id).limit(limit)
        if not self.db.is_sqlite:
            chosen = chosen.with_for_update(skip_locked=True)
        statement = (
            update(JobRow)
            .where(JobRow.id.in_(chosen.scalar_subquery()))
            .values(state="running", lease_owner=self.owner, lease_until=now + self.lease,
                    attempts=JobRow.attempts + 1, updated_at=now)
            .returning(*_COLUMNS)
        )
        async with self.db.write() as conn:
            rows = (await conn.execute(statement)).all()
        jobs = sorted((_job(row) for row in rows), key=lambda job: job.id)
        for job in jobs:
            if job.attempts > 1:
                log.warning("job taken again",
                            extra={"job": job.id, "kind": job.kind, "attempt": job.attempts})
        return jobs

    def _mine(self, job: Job) -> Any:
        return and_(JobRow.id == job.id, JobRow.state == "running", JobRow.lease_owner == self.owner,
                    JobRow.attempts == job.attempts)

    async def renew(self, jobs: list[Job]) -> int:
        """Extend the leases of jobs still running here; how many were still ours."""
        if not jobs:
            return 0
        now = utcnow()
        ours = or_(*(self._mine(job) for job in jobs))
        async with self.db.write() as conn:
            result = await conn.execute(
                update(JobRow).where(ours).values(lease_until=now + self.lease, updated_at=now)
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def _finish(self, job: Job, **values: Any) -> bool:
        now = utcnow()
        async with self.db.write() as conn:
            statement = update(JobRow).where(self._mine(job)).values(updated_at=now, **values)
            result = await conn.execute(statement)
        if result.rowcount != 1:  # type: ignore[attr-defined]
            log.warning("job lease was lost before it finished", extra={"job": job.id, "kind": job.kind})
            return False
        return True

    async def complete(self, job: Job, *, settle: Sequence[Write] = (), linger: float = 0.0) -> bool:
        """Mark the job done (at the attempt it was taken), in one commit with `settle` (what the job
        recorded about its work); False when its lease was lost meanwhile. `linger`: see GroupCommit."""
        params = {"job_id": job.id, "owner": self.owner, "attempt": job.attempts, "now": utcnow()}
        matched = (await self.db.write_together([*settle, Write(_COMPLETE, params)], linger=linger))[-1]
        if matched == 0:
            log.warning("job lease was lost before it finished", extra={"job": job.id, "kind": job.kind})
            return False
        return True

    async def fail(self, job: Job, error: str) -> bool:
        return await self._finish(job, state="failed", lease_owner=None, lease_until=None,
                                  finished_at=utcnow(), last_error=error[:2000])

    async def retry_later(self, job: Job, delay: float, error: str) -> bool:
        return await self._finish(job, state="queued", lease_owner=None, lease_until=None,
                                  run_after=utcnow() + timedelta(seconds=delay), last_error=error[:2000])

    async def release(self, job: Job) -> bool:
        """Give a job back now (this process is stopping): another process, or the next start, takes it at
        once. The attempt still counts: the job may have written to Slack, so its next run looks first."""
        return await self._finish(job, state="queued", lease_owner=None, lease_until=None, run_after=utcnow())

    # --- operations ------------------------------------------------------------------------------

    async def retry(self, job_id: int) -> bool:
        """Queue a failed (or stuck) job again now, with a fresh deadline. False if no such unfinished job."""
        now = utcnow()
        async with self.db.write() as conn:
            result = await conn.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.state.in_(("failed", "queued", "running")))
                .values(state="queued", run_after=now, lease_owner=None, lease_until=None, attempts=0,
                        give_up_at=now + self.deadline, finished_at=None, updated_at=now)
            )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def prune(self, older_than: timedelta) -> int:
        """Forget finished (done) jobs and sent outbox entries older than `older_than`; failed jobs stay for
        `bot.py jobs`. Returns how many jobs were removed."""
        cutoff = utcnow() - older_than
        async with self.db.write() as conn:
            result = await conn.execute(
                delete(JobRow).where(JobRow.state == "done", JobRow.finished_at < cutoff)
            )
            await conn.execute(
                delete(OutboxRow).where(OutboxRow.state == "sent", OutboxRow.created_at < cutoff)
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def list_jobs(self, states: tuple[str, ...] = ("queued", "running", "failed"),
                        limit: int = 100) -> list[dict[str, Any]]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(
                select(JobRow.id, JobRow.kind, JobRow.state, JobRow.attempts, JobRow.created_at,
                       JobRow.run_after, JobRow.lease_owner, JobRow.last_error)
                .where(JobRow.state.in_(states)).order_by(JobRow.id).limit(limit)
            )).all()
        return [dict(row._mapping) for row in rows]

    async def counts(self) -> dict[tuple[str, str], int]:
        """Jobs by (kind, state)."""
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(
                select(JobRow.kind, JobRow.state, func.count()).group_by(JobRow.kind, JobRow.state)
            )).all()
        return {(kind, state): int(n) for kind, state, n in rows}

    async def depth(self) -> int:
        """Jobs waiting or running (not finished)."""
        async with self.db.engine.connect() as conn:
            found = await conn.scalar(
                select(func.count()).select_from(JobRow).where(JobRow.state.in_(("queued", "running")))
            )
        return int(found or 0)
