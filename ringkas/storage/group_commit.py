"""Small writes that arrive together share one commit, and one statement per kind (group commit).

Under load many jobs settle at once (an answer marked sent, its request finished, the job completed, a
model call's usage recorded), each with a transaction of its own. Here a write that arrives while a commit
is under way waits for the next one, and the writes of one statement in that commit go to the database
as a single executemany. Nothing waits when idle: with no commit under way, a write goes at once.

Writes nobody is waiting on (a job's bookkeeping after its answer is out) may `linger`: they wait up to
that long for others of their kind, and all go together when the first one's time is up.

Statements are built once, with bind parameters (`Write.statement`), so that writes of the same kind can
be grouped; each caller's writes commit together or not at all. A batch that fails is written again
caller by caller, so each caller gets its own outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ringkas.storage.db import Database

log = logging.getLogger("ringkas.storage")

MAX_BATCH = 200  # callers per commit


@dataclass(frozen=True)
class Write:
    """One row's write: a statement built once (values as bind parameters) and this row's values."""

    statement: Any
    params: Mapping[str, Any]


# writes, their outcome, when they are due (loop time), whether they may linger
_Unit = tuple[Sequence[Write], "asyncio.Future[list[int | None]]", float, bool]


class GroupCommit:
    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._waiting: list[_Unit] = []
        self._writer: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def commit(self, writes: Sequence[Write], *, linger: float = 0.0) -> list[int | None]:
        """Commit `writes` in one transaction (shared with other callers'); for each write, the rows it
        matched when that is known (it went alone, or every write of its statement in the commit matched
        exactly one row), else None. Writes are expected to be keyed by a unique id.
        `linger`: seconds the commit may wait for other writes to share it."""
        if not writes:
            return []
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a terminal command run after another): start afresh
            self._loop, self._waiting, self._writer, self._arrived = loop, [], None, asyncio.Event()
        future: asyncio.Future[list[int | None]] = loop.create_future()
        self._waiting.append((writes, future, loop.time() + max(0.0, linger), linger > 0))
        self._arrived.set()
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write(), name="storage:group-commit")
        return await future

    def flush(self) -> None:
        """Lingering writes go now (a process stopping, a test waiting for its work to finish)."""
        if self._loop is None or not self._waiting:
            return
        now = self._loop.time()
        self._waiting = [(writes, future, min(due, now), linger)
                         for writes, future, due, linger in self._waiting]
        self._arrived.set()

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            now = loop.time()
            wait = min(due for _writes, _future, due, _linger in self._waiting) - now
            if wait > 0:  # only lingering writes: wait for company, or for their time
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), wait)
                continue
            batch = self._next_batch(now)
            try:
                results = await self._commit([writes for writes, *_rest in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0][1], exc=exc)
                    continue
                log.info("a group commit failed; writing its callers one by one",
                         extra={"callers": len(batch), "error": type(exc).__name__})
                await self._one_by_one(batch)
                continue
            for (_writes, future, *_rest), matched in zip(batch, results, strict=True):
                _settle(future, matched)

    def _next_batch(self, now: float) -> list[_Unit]:
        """Writes that do not wait go on their own; once the first lingering one is due, every lingering
        write goes with it (they would not gain from riding along sooner: each commit they join costs them
        a statement)."""
        lingering_due = any(linger and due <= now for _w, _f, due, linger in self._waiting)
        chosen = [unit for unit in self._waiting if lingering_due or not unit[3]][:self.max_batch]
        taken = {id(unit) for unit in chosen}
        self._waiting = [unit for unit in self._waiting if id(unit) not in taken]
        return chosen

    async def _one_by_one(self, batch: list[_Unit]) -> None:
        for writes, future, *_rest in batch:
            try:
                matched = (await self._commit([writes]))[0]
            except Exception as exc:
                _settle(future, exc=exc)
                continue
            _settle(future, matched)

    async def _commit(self, units: list[Sequence[Write]]) -> list[list[int | None]]:
        # Same statement object -> one executemany, in the order the statements first appear.
        groups: dict[int, tuple[Any, list[tuple[int, int]]]] = {}
        for u, writes in enumerate(units):
            for w, write in enumerate(writes):
                groups.setdefault(id(write.statement), (write.statement, []))[1].append((u, w))
        matched: list[list[int | None]] = [[None] * len(writes) for writes in units]
        async with self.db.write() as conn:
            for statement, places in groups.values():
                params = [dict(units[u][w].params) for u, w in places]
                result = await conn.execute(statement, params if len(params) > 1 else params[0])
                rows = _rowcount(result, conn, len(places) > 1)
                if rows is not None and (len(places) == 1 or rows == len(places)):
                    for u, w in places:
                        matched[u][w] = rows if len(places) == 1 else 1
        return matched


def _rowcount(result: Any, conn: Any, many: bool) -> int | None:
    if getattr(result, "is_insert", False):
        return None  # an INSERT's count says nothing about conflicts it skipped
    dialect = conn.dialect
    if not (dialect.supports_sane_multi_rowcount if many else dialect.supports_sane_rowcount):
        return None
    try:
        return int(result.rowcount)
    except (TypeError, ValueError):
        return None


def _settle(future: asyncio.Future[list[int | None]], matched: list[int | None] | None = None, *,
            exc: BaseException | None = None) -> None:
    if future.done():
        return  # its caller gave up (cancelled) meanwhile
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(matched or [])
