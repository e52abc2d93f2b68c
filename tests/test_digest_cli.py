"""`python bot.py digest [--dry-run]` as real subprocesses, and two bot processes racing for a digest."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from ringkas.digest.store import DigestStore
from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.digest_tables import DigestRunRow, DigestSubscriptionRow, FeedItemRow, FeedStateRow
from ringkas.storage.tables import ModelCallRow
from tests.test_digest_support import digest_responder, recent_feed

ROOT = Path(__file__).resolve().parents[1]


def bot_env(openai_stub, slack_stub, database_url: str, feeds: list[str], **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "DIGEST_", "DATABASE_"))
    }
    env.update(
        {
            "OPENAI_API_KEY": "sk-test-secret-key",
            "OPENAI_BASE_URL": openai_stub.base_url,
            "OPENAI_MAX_RETRIES": "1",
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_API_URL": slack_stub.api_url,
            "DATABASE_URL": database_url,
            "DIGEST_FEEDS": ",".join(feeds),
            "FETCH_ALLOW_HOSTS": "127.0.0.1",
            "LOG_FORMAT": "text",
            **extra,
        }
    )
    return env


async def run_bot(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "bot.py",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, stdout.decode(), stderr.decode()


async def test_dry_run_prints_a_digest_and_records_nothing(web, openai_stub, slack_stub, sqlite_url) -> None:
    openai_stub.responder = digest_responder
    feed = recent_feed(
        web,
        "/ai.xml",
        "AI Daily",
        ["Anthropic releases Claude 6", "Mistral opens a Jakarta office"],
        description="A short description.",
    )
    env = bot_env(openai_stub, slack_stub, sqlite_url, [feed, web.url("/missing.xml")], SUMMARY_LANGUAGE="en")
    db = Database(sqlite_url)  # an existing database: the preview reads it and leaves it as it was
    await db.create_all()
    await db.dispose()
    before = Path(sqlite_url.removeprefix("sqlite:///")).read_bytes()
    code, out, err = await run_bot(env, "digest", "--dry-run")
    assert code == 0, err
    assert out.startswith("AI news digest — ")
    assert "1. Anthropic releases Claude 6" in out and "Summary of Anthropic releases Claude 6." in out
    assert "Sources: AI Daily <https://ai.xml.example/0>" in out
    flat = " ".join(out.split())
    assert "Read 2 new items from 1 of 2 sources" in flat and "1 source(s) unavailable" in flat
    assert "unavailable: " + web.url("/missing.xml") + " — HTTP 404" in out  # named, with the reason
    assert "2 model calls" in flat
    assert slack_stub.calls == []
    db = Database(sqlite_url)
    try:
        async with db.session() as session:
            counts = [
                await session.scalar(select(func.count()).select_from(t))
                for t in (FeedStateRow, FeedItemRow, DigestRunRow, ModelCallRow)
            ]
    finally:
        await db.dispose()
    assert counts == [0, 0, 0, 0]
    assert Path(sqlite_url.removeprefix("sqlite:///")).read_bytes() == before


async def test_dry_run_without_a_database_leaves_none_behind(web, openai_stub, slack_stub, tmp_path) -> None:
    openai_stub.responder = digest_responder
    feed = recent_feed(web, "/ai.xml", "AI Daily", ["Anthropic releases Claude 6"])
    path = tmp_path / "data" / "ringkas.db"
    env = bot_env(openai_stub, slack_stub, f"sqlite:///{path}", [feed])
    code, out, err = await run_bot(env, "digest", "--dry-run")
    assert code == 0, err
    assert "1. Anthropic releases Claude 6" in out
    assert not path.exists() and not path.parent.exists()
    assert slack_stub.calls == []


async def test_digest_command_without_slack_token_fails_clearly(
    web, openai_stub, slack_stub, sqlite_url
) -> None:
    env = bot_env(openai_stub, slack_stub, sqlite_url, [web.url("/x.xml")])
    env.pop("SLACK_BOT_TOKEN")
    code, _out, err = await run_bot(env, "digest")
    assert (
        code == 1
        and err.strip() == "error: SLACK_BOT_TOKEN is required to post digests (use --dry-run to print one)"
    )


async def test_two_bot_processes_post_exactly_one_digest(web, openai_stub, slack_stub, database_url) -> None:
    """Two `python bot.py digest` processes (cron on two hosts) on one database: one digest, not two."""
    openai_stub.responder = digest_responder
    openai_stub.delay = 0.2
    feed = recent_feed(web, "/ai.xml", "AI Daily", ["OpenAI ships GPT-6", "DeepMind robotics model"])
    db = Database(database_url)
    await db.create_all()
    try:
        store = DigestStore(db)
        for channel in ("C-one", "C-two"):
            await store.subscribe("T0001", channel, time="00:00", timezone="UTC", created_by="U1")
        async with db.session() as session:  # subscribed days ago, so today's 00:00 is due
            await session.execute(
                update(DigestSubscriptionRow).values(updated_at=utcnow() - timedelta(days=2))
            )
        env = bot_env(openai_stub, slack_stub, database_url, [feed])
        results = await asyncio.gather(run_bot(env, "digest"), run_bot(env, "digest"))
        for code, _, err in results:
            assert code == 0, err
        outputs = sorted(out.strip() for _, out, _ in results)
        posted = [c.args["channel"] for c in slack_stub.calls_to("chat.postMessage")]
        assert sorted(posted) == ["C-one", "C-two"], (outputs, posted)
        assert sum(int(out.split()[1]) for out in outputs) == 2
        async with db.session() as session:
            runs = (await session.scalars(select(DigestRunRow))).all()
        assert sorted((r.channel_id, r.state) for r in runs) == [("C-one", "posted"), ("C-two", "posted")]
        assert all(r.message_ts for r in runs)
        # run again (cron fires twice, or a retry): nothing more is posted
        code, out, err = await run_bot(env, "digest")
        assert (code, out.strip()) == (0, "posted 0 digest(s)"), err
        assert len(slack_stub.calls_to("chat.postMessage")) == 2
    finally:
        await db.dispose()
