"""Fair work slots: a fixed number of links are worked on at once, handed out round-robin by user.

A plain semaphore serves waiters first come, first served: one person's 20 slow links queued first hold
all 16 slots and everyone else waits behind them. Here a freed slot goes to the waiting request whose user
has the fewest links in progress (ties: whoever waited longest), and no user or channel may hold more
than its cap, so one user or channel can never starve the others.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Hashable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

TOTAL_SLOTS = 16
PER_USER = 4
PER_CHANNEL = 8


@dataclass(order=True)
class _Waiter:
    order: int
    user: Hashable = field(compare=False)
    channel: Hashable = field(compare=False)
    granted: asyncio.Future[None] = field(compare=False)


class FairSlots:
    def __init__(
        self, total: int = TOTAL_SLOTS, *, per_user: int = PER_USER, per_channel: int = PER_CHANNEL
    ) -> None:
        self.total = total
        self.per_user = max(1, min(per_user, total))
        self.per_channel = max(self.per_user, min(per_channel, total))
        self.running_by_user: Counter[Hashable] = Counter()
        self.running_by_channel: Counter[Hashable] = Counter()
        self.running = 0
        self._waiting: list[_Waiter] = []
        self._order = itertools.count()
        self._anonymous: dict[asyncio.Task[object] | None, list[AbstractAsyncContextManager[None]]] = {}

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _may_run(self, user: Hashable, channel: Hashable) -> bool:
        return (
            self.running < self.total
            and self.running_by_user[user] < self.per_user
            and self.running_by_channel[channel] < self.per_channel
        )

    def _start(self, user: Hashable, channel: Hashable) -> None:
        self.running += 1
        self.running_by_user[user] += 1
        self.running_by_channel[channel] += 1

    def _finish(self, user: Hashable, channel: Hashable) -> None:
        self.running -= 1
        self.running_by_user[user] -= 1
        self.running_by_channel[channel] -= 1
        if self.running_by_user[user] <= 0:
            del self.running_by_user[user]
        if self.running_by_channel[channel] <= 0:
            del self.running_by_channel[channel]

    def _wake(self) -> None:
        while self._waiting and self.running < self.total:
            eligible = [w for w in self._waiting if self._may_run(w.user, w.channel)]
            if not eligible:
                return
            chosen = min(eligible, key=lambda w: (self.running_by_user[w.user], w.order))
            self._waiting.remove(chosen)
            self._start(chosen.user, chosen.channel)
            chosen.granted.set_result(None)

    @asynccontextmanager
    async def slot(self, *, user: Hashable, channel: Hashable) -> AsyncIterator[None]:
        """Hold one slot for `user` in `channel` while the block runs."""
        if not self._waiting and self._may_run(user, channel):
            self._start(user, channel)
        else:
            waiter = _Waiter(next(self._order), user, channel, asyncio.get_running_loop().create_future())
            self._waiting.append(waiter)
            self._wake()
            try:
                await waiter.granted
            except asyncio.CancelledError:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
                elif waiter.granted.done() and not waiter.granted.cancelled():
                    self._finish(user, channel)  # granted just as we were cancelled: give it back
                    self._wake()
                raise
        try:
            yield
        finally:
            self._finish(user, channel)
            self._wake()

    # `async with slots:` (work with no user, e.g. a fetch for /ask): a slot of the total, no per-key cap.

    async def __aenter__(self) -> None:
        own = object()
        holder = self.slot(user=own, channel=own)
        await holder.__aenter__()
        self._anonymous.setdefault(asyncio.current_task(), []).append(holder)

    async def __aexit__(self, *exc: object) -> None:
        task = asyncio.current_task()
        holder = self._anonymous[task].pop()
        if not self._anonymous[task]:
            del self._anonymous[task]
        await holder.__aexit__(None, None, None)
