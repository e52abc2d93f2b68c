"""Async SQLAlchemy engine and sessions; SQLite by default, PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from ringkas.config import redact_url
from ringkas.errors import ConfigError
from ringkas.storage.base import Base


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
        kwargs: dict[str, object] = {"pool_pre_ping": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def create_all(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

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

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
