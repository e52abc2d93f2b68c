"""Acks that arrive together share one commit.

Every accepted Slack request is written (claim + job) before its ack. On SQLite all writes take turns, so
50 requests arriving at once waited for 50 commits one after another; here the requests that arrive while
a commit is under way are written together in the next one (group commit). A batch that hits a request
claimed before (a redelivery) is written again one request at a time, so each still gets its own answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from ringkas.jobs.queue import JobQueue

if TYPE_CHECKING:
    from ringkas.slack_state import AcceptSpec, SlackState

log = logging.getLogger("ringkas.jobs")

MAX_BATCH = 100
Claimed = asyncio.Future  # resolves to the (link, request id) pairs claimed


class Intake:
    def __init__(self, state: SlackState, queue: JobQueue) -> None:
        self.state = state
        self.queue = queue
        self._waiting: list[tuple[AcceptSpec, Claimed]] = []
        self._writer: asyncio.Task[None] | None = None

    async def accept(self, spec: AcceptSpec) -> list[tuple[str, int]]:
        """The (link, request id) pairs claimed for `spec` (empty: claimed before), once committed."""
        future: asyncio.Future[list[tuple[str, int]]] = asyncio.get_running_loop().create_future()
        self._waiting.append((spec, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write(), name="jobs:intake")
        return await future

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                results = await self.state.accept_many([spec for spec, _ in batch], self.queue)
            except IntegrityError:
                await self._one_by_one(batch)
                continue
            except Exception as exc:
                for _spec, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_spec, future), claimed in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(claimed)

    async def _one_by_one(self, batch: list[tuple[AcceptSpec, Claimed]]) -> None:
        for spec, future in batch:
            try:
                claimed = await self.state.accept(
                    kind=spec.kind, team_id=spec.team_id, channel_id=spec.channel_id,
                    message_ts=spec.message_ts, links=list(spec.links), user_id=spec.user_id,
                    queue=self.queue, job_kind=spec.job_kind, payload=spec.payload,
                )
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(claimed)
