"""Async SQLAlchemy engine and sessions; SQLite by default, PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ringkas.config import redact_url
from ringkas.errors import ConfigError
from ringkas.storage.base import Base
from ringkas.storage.group_commit import GroupCommit, Write


def async_url(database_url: str) -> str:
    """Map a plain SQLAlchemy URL to its async driver (sqlite -> aiosqlite, postgresql -> psycopg)."""
    try:
        url = make_url(database_url)
    except Exception:
        shown = redact_url(database_url)
        raise ConfigError(f"DATABASE_URL is not a valid SQLAlchemy URL: {shown!r}") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        url = url.set(drivername="sqlite+aiosqlite")
        if url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    elif backend in {"postgresql", "postgres"}:
        url = url.set(drivername="postgresql+psycopg")
    else:
        raise ConfigError(f"DATABASE_URL must be a sqlite:// or postgresql:// URL, got {backend!r}")
    return url.render_as_string(hide_password=False)


class Database:
    def __init__(self, database_url: str) -> None:
        self.url = async_url(database_url)
        self.is_sqlite = self.url.startswith("sqlite")
        # A server connection can go stale (a restart, an idle timeout): PostgreSQL's are tested before use.
        # A SQLite file cannot, and the test costs a round trip to the driver's thread on every checkout
        # (0.2-0.3 ms of CPU, about ten times per shared link).
        kwargs: dict[str, object] = {"pool_pre_ping": not self.is_sqlite}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock: WriteTurns | None = None
        # Small in-process caches of rows read on every request (e.g. channel settings), by name.
        self.memo: dict[str, Any] = {}
        self._grouped = GroupCommit(self)

    async def create_all(self) -> None:
        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                # N processes starting together on one PostgreSQL: one creates the tables, the others wait
                # and find them (CREATE TABLE races fail on PostgreSQL's catalog otherwise).
                await conn.execute(text("SELECT pg_advisory_xact_lock(7423515)"))
            await conn.run_sync(Base.metadata.create_all)
            await conn.run_sync(_create_missing_indexes)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except (SQLAlchemyError, OSError):
            return False

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write_session(self, *, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """`session()` for a short write on the hot path (acks, job leases, the outbox). On SQLite, writers of
        this process queue here instead of inside SQLite's busy handler, whose back-off sleeps (up to 100 ms
        a try) made acknowledgements wait behind the workers' writes. `urgent` writers (what a Slack ack
        waits for) go before the others in that queue."""
        async with self._write_turn(urgent), self.session() as session:
            yield session

    @asynccontextmanager
    async def write(self, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
        """A Core connection in a transaction, queued like `write_session`."""
        async with self._write_turn(urgent), self.engine.begin() as conn:
            yield conn

    async def write_together(self, writes: list[Write], *, linger: float = 0.0) -> list[int | None]:
        """Commit `writes` in one transaction, shared with other callers' writes arriving meanwhile (or
        within `linger` s; ringkas.storage.group_commit): the rows each write matched, where known."""
        return await self._grouped.commit(writes, linger=linger)

    def flush_writes(self) -> None:
        """Commit lingering `write_together` writes now instead of at their time."""
        self._grouped.flush()

    @asynccontextmanager
    async def _write_turn(self, urgent: bool) -> AsyncIterator[None]:
        if not self.is_sqlite:
            yield
            return
        if self._write_lock is None:
            self._write_lock = WriteTurns()
        await self._write_lock.acquire(urgent)
        try:
            yield
        finally:
            self._write_lock.release()

    async def dispose(self) -> None:
        await self.engine.dispose()


class WriteTurns:
    """An asyncio lock whose urgent waiters are served before the others (each group first come, first
    served). A release hands the lock straight to the next waiter, so no newcomer slips in between."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())

    async def acquire(self, urgent: bool = False) -> None:
        if not self._held:
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting[0 if urgent else 1]
        queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # the lock was handed to us as we were cancelled: pass it on
            elif turn in queue:
                queue.remove(turn)
            raise

    def release(self) -> None:
        for queue in self._waiting:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._held = False


def _create_missing_indexes(connection: Any) -> None:
    """Indexes added to tables that already existed (create_all makes those of new tables only)."""
    for table in Base.metadata.sorted_tables:
        for index in table.indexes:
            index.create(connection, checkfirst=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
