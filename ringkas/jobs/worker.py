"""Workers: take due jobs with a lease, run them, keep their leases alive, and settle the outcome.

- `RetryLater` from a handler (a model, database or Slack outage) puts the job back with a delay; once the
  job's deadline has passed, the kind's `give_up` tells the person plainly, once, and the job fails.
- A database error is an outage too; when even recording the outcome fails, the lease simply runs out
  and the job is taken again (here or by another process).
- A crash of the process loses nothing: the jobs it held are taken again when their leases expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError

from ringkas.jobs.queue import Job, JobQueue, RetryLater
from ringkas.storage import Write
from ringkas.storage.base import utcnow

log = logging.getLogger("ringkas.jobs")

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, DBAPIError, OSError, ConnectionError)
# How long a finished job's last commit may wait to share it with other jobs' (its answers are out by then;
# it keeps its slot meanwhile, unless other jobs wait for one). Under load, many jobs settle in one commit
# and one statement per kind, and the next ones are taken together.
SETTLE_LINGER = 1.0
BUSY_SETTLE_LINGER = 0.25
KEEP_FINISHED = timedelta(days=7)  # done jobs and sent outbox entries are kept this long (then pruned)
MAX_ATTEMPTS = 25  # a job that keeps killing its worker (or keeps being cut off) is given up on


@dataclass(frozen=True)
class JobKind:
    # Runs the job; may return writes about its work (e.g. answers recorded as sent) to commit with the
    # job's completion: one commit at the end instead of one per record.
    run: Callable[[Job], Awaitable[Sequence[Write] | None]]
    # Tell the person the job could not be done (called once, when it is given up on).
    give_up: Callable[[Job, str], Awaitable[None]] | None = None


def retry_delay(attempt: int, base: float = 2.0, cap: float = 60.0) -> float:
    return min(cap, base * 2 ** max(0, attempt - 1))


class Worker:
    def __init__(self, queue: JobQueue, kinds: Mapping[str, JobKind], *, concurrency: int = 32,
                 poll_interval: float = 1.0, retry_base: float = 2.0, retry_cap: float = 60.0,
                 report_every: float = 30.0, settle_linger: float = SETTLE_LINGER) -> None:
        self.queue = queue
        self.kinds = dict(kinds)
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.report_every = report_every
        self.settle_linger = settle_linger
        self.running: dict[int, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        # The last look for jobs filled every free slot (or none was free): more may be due, so a job that
        # finishes looks again at once. Otherwise new work here calls wake(), other processes' is polled.
        self._saturated = False
        self.observe: Callable[[str, Job, float], None] | None = None  # (outcome, job, seconds): metrics

    def wake(self) -> None:
        """Look for jobs now (a job was just added in this process)."""
        self._wake.set()

    async def start(self) -> None:
        self._loops = [asyncio.create_task(self._take_loop(), name="jobs:take"),
                       asyncio.create_task(self._lease_loop(), name="jobs:lease"),
                       asyncio.create_task(self._report_loop(), name="jobs:report")]

    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking jobs, let running ones finish for up to `grace` s, and give the rest back."""
        self._stopping = True
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self.queue.db.flush_writes()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def join(self) -> None:
        """Wait until nothing is running here (tests, benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- loops ---------------------------------------------------------------------------------

    async def _take_loop(self) -> None:
        failures = 0
        while not self._stopping:
            free = self.concurrency - len(self.running)
            jobs: list[Job] = []
            if free > 0:
                try:
                    jobs = await self.queue.take(free, tuple(self.kinds))
                    failures = 0
                except OUTAGE_ERRORS as exc:
                    failures += 1
                    log.warning("could not take jobs (database unreachable?)",
                                extra={"error": type(exc).__name__, "failures": failures})
            for job in jobs:
                self.running[job.id] = job
                task = asyncio.create_task(self._run(job), name=f"job:{job.kind}:{job.id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._saturated = free <= 0 or len(jobs) == free
            if jobs and len(jobs) == free:
                continue  # more may be due
            self._wake.clear()
            wait = self.poll_interval * min(8, 2 ** failures) if failures else self.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _lease_loop(self) -> None:
        every = max(0.2, self.queue.lease.total_seconds() / 3)
        while not self._stopping:
            await asyncio.sleep(every)
            jobs = list(self.running.values())
            try:
                kept = await self.queue.renew(jobs)
            except OUTAGE_ERRORS as exc:
                log.warning("could not renew job leases",
                            extra={"error": type(exc).__name__, "jobs": len(jobs)})
                continue
            if kept < len(jobs):
                log.warning("some job leases were lost", extra={"jobs": len(jobs), "kept": kept})

    async def _report_loop(self) -> None:
        """Queue depth in the logs while there is work (quiet when idle); finished jobs older than a week
        are forgotten once an hour."""
        next_prune = 0.0
        while not self._stopping:
            await asyncio.sleep(self.report_every)
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + 3600
                try:
                    pruned = await self.queue.prune(KEEP_FINISHED)
                    if pruned:
                        log.info("finished jobs forgotten", extra={"jobs": pruned})
                except OUTAGE_ERRORS:
                    next_prune = 0.0
            try:
                depth = await self.queue.depth()
            except OUTAGE_ERRORS:
                continue
            if depth or self.running:
                log.info("job queue", extra={"queue_depth": depth, "jobs_running": len(self.running),
                                             "job_concurrency": self.concurrency})

    # --- one job -------------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        kind = self.kinds[job.kind]
        started = time.perf_counter()
        outcome = "done"
        try:
            if utcnow() >= job.give_up_at or job.attempts > MAX_ATTEMPTS:
                outcome = "failed"
                await self._give_up(job, kind, "deadline passed" if job.attempts <= MAX_ATTEMPTS
                                    else f"{job.attempts} attempts")
                return
            try:
                settle = await kind.run(job)
            except RetryLater as exc:
                outcome = await self._later(job, kind, exc.reason, exc.delay, exc.settle)
                return
            except OUTAGE_ERRORS as exc:
                outcome = await self._later(job, kind, f"outage: {type(exc).__name__}", None)
                return
            except asyncio.CancelledError:
                outcome = "released"
                await self._settle(self.queue.release(job))
                raise
            except Exception as exc:
                log.exception("job failed", extra={"job": job.id, "kind": job.kind})
                outcome = "failed"
                await self._give_up(job, kind, f"error: {type(exc).__name__}")
                return
            # Jobs waiting for this slot wait less (a slot held by a finished job serves nobody).
            linger = min(self.settle_linger, BUSY_SETTLE_LINGER) if self._saturated else self.settle_linger
            await self._settle(self.queue.complete(job, settle=settle or (), linger=linger))
        finally:
            self.running.pop(job.id, None)
            if self._saturated:
                self._wake.set()  # a slot is free and jobs may be waiting for one: take the next now
            if self.observe is not None:
                self.observe(outcome, job, time.perf_counter() - started)

    async def _later(self, job: Job, kind: JobKind, reason: str, delay: float | None,
                     settle: Sequence[Write] = ()) -> str:
        if settle:  # what the job got done before the outage
            await self._settle(self.queue.db.write_together(list(settle)))
        delay = retry_delay(job.attempts, self.retry_base, self.retry_cap) if delay is None else delay
        remaining = (job.give_up_at - utcnow()).total_seconds()
        if remaining <= 0:
            await self._give_up(job, kind, f"deadline passed: {reason}")
            return "failed"
        delay = max(0.0, min(delay, remaining))
        log.warning("job waits for an outage", extra={"job": job.id, "kind": job.kind, "reason": reason,
                                                     "retry_in": round(delay, 1), "attempt": job.attempts})
        await self._settle(self.queue.retry_later(job, delay, reason))
        return "retry"

    async def _give_up(self, job: Job, kind: JobKind, reason: str) -> None:
        log.warning("job given up", extra={"job": job.id, "kind": job.kind, "reason": reason})
        if kind.give_up is not None:
            try:
                await kind.give_up(job, reason)
            except Exception:
                log.exception("could not tell about a job given up", extra={"job": job.id, "kind": job.kind})
        await self._settle(self.queue.fail(job, reason))

    @staticmethod
    async def _settle(write: Awaitable[Any]) -> None:
        try:
            await write
        except OUTAGE_ERRORS as exc:
            # The lease runs out and the job is taken again: its work is idempotent (outbox keys).
            log.warning("could not record a job's outcome", extra={"error": type(exc).__name__})
