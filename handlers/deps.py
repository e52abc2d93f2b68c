"""What the Slack listeners are handed by `bot.py`: the domain services, nothing Slack-specific,
plus the set of background tasks that do the slow work after Slack has been acknowledged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ringkas.limits import FairSlots

if TYPE_CHECKING:
    from ringkas.config import Settings
    from ringkas.digest.service import DigestService
    from ringkas.qa import QuestionService
    from ringkas.service import Ringkas
    from ringkas.slack_state import SlackState

log = logging.getLogger("ringkas.tasks")

MAX_CONCURRENT_LINKS = 16


class BackgroundTasks:
    """Slow work started after an ack. Keeps a reference to every task (so none is garbage-collected
    mid-flight), logs crashes, and lets shutdown wait for the work in progress."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task crashed", extra={"task": task.get_name()}, exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def join(self) -> None:
        """Wait until no task is running (including tasks spawned while waiting)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def drain(self, grace: float = 30.0) -> None:
        """Shutdown: let running work finish for up to `grace` seconds, then cancel what is left."""
        self.closing = True
        try:
            async with asyncio.timeout(grace):
                await self.join()
        except TimeoutError:
            left = list(self._tasks)
            log.warning("cancelling unfinished background work", extra={"tasks": len(left)})
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)


@dataclass
class Deps:
    settings: Settings
    ringkas: Ringkas  # fetch, extract, summarize (cached, single-flight)
    state: SlackState  # idempotency records, thread<->article links, channel settings
    questions: QuestionService | None = None  # follow-up questions (issue 4)
    digests: DigestService | None = None  # daily digests (issue 5)
    scheduler: Any = None  # ringkas.digest.scheduler.DigestScheduler when running as an app
    tasks: BackgroundTasks = field(default_factory=BackgroundTasks)  # slow work after the ack
    jobs: Any = None  # bot.JobsRuntime: durable jobs (queue, outbox, worker, intake)
    # At most this many links are fetched and summarized at once, handed out fairly by user and channel;
    # the rest wait with their progress shown.
    slots: FairSlots = field(default_factory=lambda: FairSlots(MAX_CONCURRENT_LINKS))
