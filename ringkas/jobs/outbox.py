"""The outbox: what a job will write to Slack is stored before it is written, then delivered until Slack
takes it (or the deadline passes) and marked sent with the message ts.

Delivery itself is a `Sender` given by the Slack glue. It raises `SendLater` for 429s and outages and
`SendRefused` for answers that will not change; for an entry whose `attempts` is above 1 it first looks
whether an earlier attempt reached Slack (a crash between sending and recording), so a retry never
doubles a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ringkas.storage import Database, Write
from ringkas.storage.base import utcnow
from ringkas.storage.job_tables import OutboxRow

log = logging.getLogger("ringkas.outbox")

ACTIONS = frozenset({"post", "update", "delete", "unreact", "respond"})


class SendLater(Exception):
    """Slack cannot take it now (429, 5xx, unreachable): try again after `delay` seconds (None: back off)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class SendRefused(Exception):
    """Slack refused it for good (channel gone, not allowed): retrying cannot help."""


class DeliveryFailed(Exception):
    """An outbox entry could not be delivered before its deadline, or was refused."""


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    key: str
    job_id: int | None
    action: str
    channel_id: str
    thread_ts: str | None
    target_ts: str | None
    payload: dict[str, Any]
    state: str
    attempts: int
    message_ts: str | None
    created_at: datetime


class Sender(Protocol):
    async def send(self, entry: OutboxEntry) -> str | None: ...


def _entry(row: Any) -> OutboxEntry:
    return OutboxEntry(
        id=row.id, key=row.key, job_id=row.job_id, action=row.action, channel_id=row.channel_id,
        thread_ts=row.thread_ts, target_ts=row.target_ts, payload=dict(row.payload or {}), state=row.state,
        attempts=row.attempts, message_ts=row.message_ts, created_at=row.created_at,
    )


_COLUMNS = tuple(getattr(OutboxRow, name) for name in (
    "id", "key", "job_id", "action", "channel_id", "thread_ts", "target_ts", "payload", "state", "attempts",
    "message_ts", "created_at",
))


# Marked sent through the database's group commit (answers to many jobs are sent at once under load).
_SENT = (
    update(OutboxRow).where(OutboxRow.id == bindparam("entry_id"))
    .values(state="sent", message_ts=bindparam("ts"), sent_at=bindparam("now"), last_error=None)
)


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _insert(self) -> Any:
        return sqlite_insert(OutboxRow) if self.db.is_sqlite else postgresql_insert(OutboxRow)

    async def get(self, key: str) -> OutboxEntry | None:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(*_COLUMNS).where(OutboxRow.key == key))).first()
        return _entry(row) if row is not None else None

    async def get_many(self, keys: list[str]) -> dict[str, OutboxEntry]:
        """The entries stored under any of `keys`, by key, in one round trip."""
        if not keys:
            return {}
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(select(*_COLUMNS).where(OutboxRow.key.in_(keys)))).all()
        return {row.key: _entry(row) for row in rows}

    async def put(self, key: str, *, action: str, channel_id: str, payload: dict[str, Any],
                  job_id: int | None = None, thread_ts: str | None = None,
                  target_ts: str | None = None, started: bool = False) -> OutboxEntry:
        """Store a write to make; if `key` was stored before (a job run again), the stored entry wins.

        `started=True` counts a send attempt with the insert (the caller delivers the entry returned right
        away with `deliver(..., started=True)`): one statement less; a crash before the send only means the
        retry looks in Slack first."""
        if action not in ACTIONS:
            raise ValueError(f"unknown outbox action {action!r}")
        async with self.db.write() as conn:
            row = (await conn.execute(
                self._insert().values(
                    key=key, job_id=job_id, action=action, channel_id=channel_id, thread_ts=thread_ts,
                    target_ts=target_ts, payload=payload, state="pending", attempts=1 if started else 0,
                    created_at=utcnow(),
                ).on_conflict_do_nothing(index_elements=["key"]).returning(*_COLUMNS)
            )).first()
        if row is not None:
            return _entry(row)
        stored = await self.get(key)  # stored before, by an earlier run of the same job
        assert stored is not None
        if started and stored.state == "pending":
            stored = await self.start_attempt(stored)
        return stored

    async def start_attempt(self, entry: OutboxEntry) -> OutboxEntry:
        """Count a send before making it: after a crash, attempts > 0 says "look before sending again"."""
        async with self.db.write() as conn:
            row = (await conn.execute(
                update(OutboxRow).where(OutboxRow.id == entry.id).values(attempts=OutboxRow.attempts + 1)
                .returning(*_COLUMNS)
            )).first()
        assert row is not None
        return _entry(row)

    async def mark_sent(self, entry: OutboxEntry, message_ts: str | None,
                        also: Callable[[str | None], Iterable[Write]] | None = None) -> None:
        """Record the entry as sent; `also(message_ts)` gives writes that commit with it (what the caller
        records about the answer, e.g. its request settled)."""
        sent = Write(_SENT, {"entry_id": entry.id, "ts": message_ts, "now": utcnow()})
        await self.db.write_together([sent, *(also(message_ts) if also is not None else ())])

    async def mark_failed(self, entry: OutboxEntry, error: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(OutboxRow).where(OutboxRow.id == entry.id).values(
                state="failed", last_error=error[:2000]))

    async def note_error(self, entry: OutboxEntry, error: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(OutboxRow).where(OutboxRow.id == entry.id).values(last_error=error[:2000])
            )

    async def deliver(self, entry: OutboxEntry, sender: Sender, *, give_up_at: datetime,
                      backoff: float = 2.0, backoff_cap: float = 60.0, started: bool = False,
                      also: Callable[[str | None], Iterable[Write]] | None = None) -> str | None:
        """Deliver `entry` (if not sent yet) and return its message ts; waits out 429s and outages until
        `give_up_at`. Raises DeliveryFailed when Slack refuses it or the deadline passes.
        `started`: the first attempt was counted already (`put(..., started=True)` returned `entry`).
        `also`: writes committed with the "sent" record (see `mark_sent`); not run when the entry was
        sent before this call."""
        wait = backoff
        while True:
            if entry.state == "sent":
                return entry.message_ts
            if entry.state == "failed":
                raise DeliveryFailed(f"outbox entry {entry.key} failed before")
            if not started:
                entry = await self.start_attempt(entry)
            started = False
            try:
                message_ts = await sender.send(entry)
            except SendRefused as exc:
                await self.mark_failed(entry, f"refused: {exc}")
                raise DeliveryFailed(str(exc)) from exc
            except SendLater as exc:
                remaining = (give_up_at - utcnow()).total_seconds()
                if remaining <= 0:
                    await self.mark_failed(entry, f"deadline passed: {exc.reason}")
                    raise DeliveryFailed(f"Slack did not take it before the deadline: {exc.reason}") from exc
                delay = min(remaining, exc.delay if exc.delay is not None else wait)
                wait = min(backoff_cap, wait * 2)
                log.warning("Slack cannot take a message now; retrying",
                            extra={"outbox": entry.id, "reason": exc.reason, "retry_in": round(delay, 1),
                                   "attempt": entry.attempts})
                await self.note_error(entry, exc.reason)
                await asyncio.sleep(delay)
                continue
            await self.mark_sent(entry, message_ts, also)
            return message_ts
