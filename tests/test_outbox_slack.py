"""The outbox against the Slack stand-in: a post that reached Slack before a crash is found, not doubled;
429s, 500s and refused connections are waited out; /metrics, /healthz and `bot.py jobs` show the queue."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from bot import slack_client
from handlers.delivery import SlackSender
from ringkas.config import Settings
from ringkas.jobs import JobQueue, Outbox
from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.job_tables import OutboxRow
from tests.slack_app import BOT_USER_ID, SlackApp, mention
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_slack_events import article_page

ROOT = Path(__file__).resolve().parents[1]


def _client(stub: SlackStub):  # type: ignore[no-untyped-def]
    return slack_client(Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-t", "SLACK_API_URL": stub.api_url}))


async def test_a_post_that_reached_slack_before_a_crash_is_found_not_doubled(
    database: Database, slack_stub: SlackStub
) -> None:
    outbox = Outbox(database)
    sender = SlackSender(_client(slack_stub))
    deadline = utcnow() + timedelta(seconds=30)
    for thread in ("1700000001.000100", None):  # in a thread (conversations.replies), top level (history)
        key = f"job-{thread}:0:result"
        entry = await outbox.put(key, action="post", channel_id="C1", thread_ts=thread,
                                 payload={"text": "the answer", "blocks": []})
        ts = await outbox.deliver(entry, sender, give_up_at=deadline)
        # The crash: Slack has the message, the outbox never recorded it.
        async with database.engine.begin() as conn:
            await conn.execute(update(OutboxRow).where(OutboxRow.key == key).values(state="pending",
                                                                                   message_ts=None))
        again = await outbox.get(key)
        assert again is not None and again.attempts == 1
        assert await outbox.deliver(again, sender, give_up_at=deadline) == ts
    posts = slack_stub.posted()
    assert len(posts) == 2
    assert [p["metadata"]["event_payload"]["key"] for p in posts] == [
        "job-1700000001.000100:0:result", "job-None:0:result"]


async def test_slack_500s_refusals_and_429s_are_waited_out(database: Database, slack_stub: SlackStub) -> None:
    outbox = Outbox(database)
    sender = SlackSender(_client(slack_stub))
    deadline = utcnow() + timedelta(seconds=60)
    loop = asyncio.get_running_loop()

    slack_stub.fail_status = 500
    loop.call_later(1.5, setattr, slack_stub, "fail_status", None)
    first = await outbox.put("a", action="post", channel_id="C1", payload={"text": "one"})
    assert await outbox.deliver(first, sender, give_up_at=deadline, backoff=0.3)

    await slack_stub.go_down()
    loop.call_later(1.5, lambda: asyncio.ensure_future(slack_stub.come_back()))
    second = await outbox.put("b", action="post", channel_id="C1", payload={"text": "two"})
    ts = await outbox.deliver(second, sender, give_up_at=deadline, backoff=0.3)

    slack_stub.rate_limit_next("chat.update", 7, retry_after=0)  # more than the client's own 5 retries
    edit = await outbox.put("c", action="update", channel_id="C1", target_ts=ts,
                            payload={"text": "two, edited"})
    assert await outbox.deliver(edit, sender, give_up_at=deadline, backoff=0.3) == ts
    assert [m["text"] for m in slack_stub.messages["C1"]] == ["one", "two, edited"]
    states = [(await outbox.get(key)).state for key in "abc"]  # type: ignore[union-attr]
    assert states == ["sent", "sent", "sent"]


async def test_metrics_and_healthz_show_jobs(slack_app: SlackApp, slack_stub: SlackStub,
                                             web: WebStub) -> None:
    from ringkas.metrics import REGISTRY

    def runs() -> float:
        labels = {"kind": "links", "outcome": "done"}
        return REGISTRY.get_sample_value("ringkas_job_runs_total", labels) or 0.0

    before = runs()
    await slack_app.event(mention(f"<@{BOT_USER_ID}> <{article_page(web)}>"))
    await slack_app.settle()
    assert runs() == before + 1  # (the counters are this process's, shared by every test in it)
    health = (await slack_app.get("/healthz")).json()
    assert health["ok"] and health["queue_depth"] == 0 and health["jobs_running"] == 0
    reply = await slack_app.get("/metrics")
    assert reply.status == 200
    assert 'ringkas_jobs{kind="links",state="done"} 1.0' in reply.text
    assert 'ringkas_job_runs_total{kind="links",outcome="done"}' in reply.text
    assert 'ringkas_slack_call_seconds_count{method="chat.update",outcome="ok"}' in reply.text
    assert "ringkas_fetch_seconds_count" in reply.text and "ringkas_model_seconds_count" in reply.text
    assert 'ringkas_model_tokens{kind="prompt",model="gpt-4.1-mini"}' in reply.text


async def _failed_job(url: str) -> int:
    db = Database(url)
    await db.create_all()
    queue = JobQueue(db)
    await queue.enqueue(kind="links", key="k1", payload={})
    [job] = await queue.take(1)
    await queue.fail(job, "deadline passed: model unavailable")
    await db.dispose()
    return job.id


def test_bot_py_jobs_lists_failed_jobs_and_retries_one(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    import bot

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    job_id = asyncio.run(_failed_job(url))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "DATABASE_URL": url}
    listed = subprocess.run([sys.executable, "bot.py", "jobs"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "links failed: 1" in listed.stdout and "deadline passed: model unavailable" in listed.stdout

    monkeypatch.setenv("DATABASE_URL", url)
    assert bot.main(["jobs", "--retry", str(job_id)]) == 0
    assert f"job {job_id} queued again" in capsys.readouterr().out
    assert bot.main(["jobs"]) == 0
    assert "links queued: 1" in capsys.readouterr().out
    assert bot.main(["jobs", "--retry", "999"]) == 1
    assert "no unfinished job" in capsys.readouterr().err
