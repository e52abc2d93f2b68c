"""Accepting a Slack request before the ack: its claim and its job in one transaction.

The one place that records requests for every job kind (links, questions, /ask). When the database
cannot be reached, the request is recorded in the background as soon as it is back, within
RETRY_DEADLINE, so an outage delays the answer instead of losing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from handlers.deps import Deps
from ringkas.slack_state import AcceptSpec

log = logging.getLogger("ringkas.slack.accept")


GiveUp = Callable[[], Awaitable[None]]


async def accept_request(deps: Deps, spec: AcceptSpec, *, on_give_up: GiveUp | None = None) -> int | None:
    """How many of the request's links were claimed now (0: claimed before, a redelivery), or None when
    the database is out and the request will be recorded in the background (`on_give_up` runs if it
    still cannot be recorded by RETRY_DEADLINE)."""
    try:
        claimed = await deps.jobs.intake.accept(spec)
    except Exception as exc:
        log.warning("could not record the request now; retrying in the background",
                    extra={"channel": spec.channel_id, "kind": spec.kind, "error": type(exc).__name__})
        deps.tasks.spawn(_accept_when_possible(deps, spec, on_give_up), name=f"accept:{spec.channel_id}")
        return None
    if claimed:
        deps.jobs.worker.wake()
    else:
        log.info("request already handled", extra={"channel": spec.channel_id, "message_ts": spec.message_ts})
    return len(claimed)


async def _accept_when_possible(deps: Deps, spec: AcceptSpec, on_give_up: GiveUp | None) -> None:
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + deps.settings.retry_deadline
    wait = 1.0
    while loop.time() < give_up_at and not deps.tasks.closing:
        await asyncio.sleep(wait)
        wait = min(30.0, wait * 2)
        try:
            if await deps.jobs.intake.accept(spec):
                deps.jobs.worker.wake()
            return
        except Exception as exc:
            log.warning("still cannot record the request",
                        extra={"channel": spec.channel_id, "error": type(exc).__name__})
    log.error("gave up recording a request", extra={"channel": spec.channel_id, "kind": spec.kind})
    if on_give_up is not None:
        try:
            await on_give_up()
        except Exception:
            log.exception("could not tell the person either", extra={"channel": spec.channel_id})
