"""A concurrency limit for model requests that follows the account's real capacity (AIMD).

It starts at MODEL_CONCURRENCY. A 429 halves it (never below 1) and holds every new request for the
Retry-After the server gave, so the other requests do not run into the same wall; each run of `limit`
successful requests in a row raises it by one, back up to MODEL_CONCURRENCY. Used as the `async with`
guard around each model request: the exception leaving the block is how it learns of a 429.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

log = logging.getLogger("ringkas.limits")


def _status(exc: BaseException | None) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _retry_after(exc: BaseException | None) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class AdaptiveLimit:
    def __init__(self, maximum: int, *, minimum: int = 1, max_pause: float = 60.0) -> None:
        self.maximum = max(1, maximum)
        self.minimum = max(1, min(minimum, self.maximum))
        self.limit = self.maximum
        self.in_use = 0
        self.max_pause = max_pause
        self._successes = 0
        self._paused_until = 0.0
        self._condition: asyncio.Condition | None = None

    def _cond(self) -> asyncio.Condition:
        if self._condition is None:  # created in the running loop
            self._condition = asyncio.Condition()
        return self._condition

    async def __aenter__(self) -> AdaptiveLimit:
        cond = self._cond()
        async with cond:
            await cond.wait_for(lambda: self.in_use < self.limit)
            self.in_use += 1
        wait = self._paused_until - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        cond = self._cond()
        async with cond:
            self.in_use -= 1
            if _status(exc) == 429:
                before = self.limit
                self.limit = max(self.minimum, self.limit // 2)
                self._successes = 0
                pause = _retry_after(exc)
                if pause:
                    until = asyncio.get_running_loop().time() + min(pause, self.max_pause)
                    self._paused_until = max(self._paused_until, until)
                if self.limit != before:
                    log.warning("model rate limited: fewer requests at once",
                                extra={"model_concurrency": self.limit, "was": before, "retry_after": pause})
            elif exc is None:
                self._successes += 1
                if self._successes >= self.limit and self.limit < self.maximum:
                    self.limit += 1
                    self._successes = 0
            cond.notify_all()
