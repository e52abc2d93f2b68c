"""Digest runs survive crashes: a run whose process died (while building or posting) is taken over by the
next start or another process, and its posts are looked up in Slack first, so the digest appears once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from datetime import timedelta

from sqlalchemy import update

from bot import slack_client
from handlers.delivery import KeyedPoster, KeyedPosts
from ringkas.config import Settings
from ringkas.digest.store import DigestStore
from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.digest_tables import DigestRunRow
from tests.support.slack_stub import SlackStub

TEAM, CHANNEL, DAY = "T1", "C1", "2026-03-10"


async def _dead_pid() -> int:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    return proc.pid


async def _set(db: Database, **values: object) -> None:
    async with db.session() as session:
        await session.execute(update(DigestRunRow).where(DigestRunRow.local_date == DAY).values(**values))


async def test_a_run_whose_process_died_is_taken_over_at_once(database: Database) -> None:
    store = DigestStore(database)
    run_id = await store.claim_run(TEAM, CHANNEL, DAY)
    assert run_id is not None
    for state in ("claimed", "posting"):  # killed while building, then while posting
        await _set(database, state=state, owner=f"{socket.gethostname()}:{await _dead_pid()}",
                   claimed_at=utcnow())
        assert await store.claim_run(TEAM, CHANNEL, DAY) == run_id
    run = await store.run(TEAM, CHANNEL, DAY)
    assert run is not None and run.state == "claimed" and run.attempts == 3


async def test_a_silent_claimer_elsewhere_is_taken_over_after_its_heartbeat_stops(database: Database) -> None:
    store = DigestStore(database)
    assert await store.claim_run(TEAM, CHANNEL, DAY) is not None
    await _set(database, owner="another-host:4242", state="posting", claimed_at=utcnow())
    assert await store.claim_run(TEAM, CHANNEL, DAY) is None  # alive as far as we know
    await _set(database, claimed_at=utcnow() - timedelta(minutes=4))
    assert await store.claim_run(TEAM, CHANNEL, DAY) is not None
    # A run renewing its claim (our heartbeat) is never taken over.
    await _set(database, claimed_at=utcnow() - timedelta(minutes=4))
    await store.renew_claim(TEAM, CHANNEL, DAY)
    await _set(database, owner="another-host:4242")
    assert await store.claim_run(TEAM, CHANNEL, DAY) is None


async def test_a_resumed_digest_post_finds_what_was_already_posted(slack_stub: SlackStub) -> None:
    client = KeyedPosts(slack_client(Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-t",
                                                        "SLACK_API_URL": slack_stub.api_url})))
    crash_after_main = True

    async def post(team_id: str, channel_id: str, digest: object) -> str:
        main = await client.chat_postMessage(channel=channel_id, text="digest")
        if crash_after_main:
            raise ConnectionError("the process died here")
        await client.chat_postMessage(channel=channel_id, thread_ts=main["ts"], text="more stories")
        return str(main["ts"])

    poster = KeyedPoster(post)
    digest = type("Digest", (), {"local_date": DAY})()
    with contextlib.suppress(ConnectionError):
        await poster(TEAM, CHANNEL, digest)
    crash_after_main = False
    ts = await poster(TEAM, CHANNEL, digest)
    assert await poster(TEAM, CHANNEL, digest) == ts  # and once more: nothing new
    texts = [m["text"] for m in slack_stub.messages[CHANNEL]]
    assert texts == ["digest", "more stories"]
    # Posts outside a digest run are not keyed.
    await client.chat_postMessage(channel=CHANNEL, text="plain")
    assert "metadata" not in slack_stub.messages[CHANNEL][-1]
