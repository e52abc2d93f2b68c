"""Shared fixtures: local OpenAI, Slack and web servers on 127.0.0.1, and real databases."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from ringkas.config import Settings
from ringkas.storage import Base, Database
from ringkas.storage.db import async_url
from tests.support.openai_stub import OpenAIStub
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub

# The running Slack app (fixtures `slack_app`, `make_slack_app`), shared by every Slack feature's tests.
pytest_plugins = ["tests.slack_app"]

FIXTURES = Path(__file__).parent / "fixtures"
_SHARED_TIKTOKEN = Path(__file__).resolve().parents[2] / "shared" / "tiktoken"
if "TIKTOKEN_CACHE_DIR" not in os.environ and _SHARED_TIKTOKEN.is_dir():
    # Offline runs: tiktoken's official encoding files, kept beside the repo (never committed).
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_SHARED_TIKTOKEN)
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SIGNING_SECRET = "test-signing-secret"


@pytest.fixture
async def openai_stub() -> AsyncIterator[OpenAIStub]:
    stub = await OpenAIStub().start()
    yield stub
    await stub.stop()


@pytest.fixture
async def slack_stub() -> AsyncIterator[SlackStub]:
    stub = await SlackStub().start()
    yield stub
    await stub.stop()


@pytest.fixture
async def web() -> AsyncIterator[WebStub]:
    site = await WebStub().start()
    yield site
    await site.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A private database for this test run on the PostgreSQL server at TEST_POSTGRES_URL.

    Each run gets its own database (created here, dropped at the end), so two test runs on one machine
    never drop each other's tables. Without the right to create databases, the URL is used as it is.
    None when no server is reachable.
    """
    server = make_url(POSTGRES_URL)
    try:
        admin = psycopg.connect(
            server.set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True,
            connect_timeout=5,
        )
    except psycopg.Error:
        yield None
        return
    name = f"ringkas_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error:
        admin.close()
        yield POSTGRES_URL
        return
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None
) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, and PostgreSQL where a server is reachable."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ringkas.db'}"
        return
    if postgres_url is None:
        pytest.skip(f"no PostgreSQL server reachable at {POSTGRES_URL}")
    engine = create_async_engine(async_url(postgres_url))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
    await engine.dispose()
    yield postgres_url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await db.create_all()
    yield db
    await db.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ringkas.db'}"


@pytest.fixture
def make_settings(openai_stub: OpenAIStub, tmp_path: Path) -> Callable[..., Settings]:
    """Settings pointing at the local OpenAI stand-in; keyword overrides use env-var names."""

    def build(**env: str) -> Settings:
        values = {
            "OPENAI_API_KEY": "sk-test-secret-key",
            "OPENAI_BASE_URL": openai_stub.base_url,
            "OPENAI_MODEL": "gpt-4.1-mini",
            "OPENAI_MAX_RETRIES": "3",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'ringkas.db'}",
            "FETCH_ALLOW_HOSTS": "127.0.0.1,localhost",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "LOG_FORMAT": "text",
        }
        values.update(env)
        return Settings.from_env(values)

    return build
