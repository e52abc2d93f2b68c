"""Writes that arrive together share one commit and one statement per kind (ringkas/storage/group_commit.py),
on SQLite and PostgreSQL; a caller whose write fails gets its own error; lingering writes wait for company;
a link answered but not yet recorded when its process dies is not answered twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ringkas.jobs import JobQueue
from ringkas.storage import Database, Write
from ringkas.storage.base import utcnow
from ringkas.storage.tables import ModelCallRow, SlackRequestRow
from tests.slack_app import MakeSlackApp, message
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_slack_events import article_page

USAGE = insert(ModelCallRow)
RENAME = update(ModelCallRow).where(ModelCallRow.id == bindparam("row_id")).values(purpose=bindparam("to"))


def usage(purpose: str, **extra: Any) -> Write:
    return Write(USAGE, {"purpose": purpose, "model": "m", "prompt_tokens": 1, "completion_tokens": 1,
                         "created_at": utcnow(), **extra})


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split())[:40])

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


async def purposes(database: Database) -> list[str]:
    async with database.engine.connect() as conn:
        return sorted((await conn.scalars(select(ModelCallRow.purpose))).all())


async def test_writes_arriving_together_share_one_statement_per_kind(database: Database) -> None:
    await database.write_together([usage("first")])  # the first commit goes alone, at once
    with statements() as seen:
        # 20 callers at once: the first goes alone, the 19 that arrive meanwhile share the next commit.
        await asyncio.gather(*(database.write_together([usage(f"u{i}")]) for i in range(20)))
    assert len(seen) <= 2, seen
    assert len(await purposes(database)) == 21


async def test_rows_matched_are_reported_and_a_failing_caller_fails_alone(database: Database) -> None:
    await database.write_together([usage("a", id=1), usage("b", id=2)])
    matched = await asyncio.gather(
        database.write_together([Write(RENAME, {"row_id": 1, "to": "renamed"})]),
        database.write_together([Write(RENAME, {"row_id": 2, "to": "also"}),
                                 Write(RENAME, {"row_id": 99, "to": "nobody"})]),
        database.write_together([usage("duplicate", id=1)]),  # the primary key is taken
        database.write_together([usage("c", id=3)]),
        return_exceptions=True,
    )
    assert matched[0] in ([1], [None])
    assert matched[1] in ([1, 0], [None, None])  # 0 when known: the second write matched nothing
    assert isinstance(matched[2], IntegrityError)
    assert matched[3] == [None]  # an INSERT's count is not reported
    assert await purposes(database) == ["also", "c", "renamed"]


async def test_lingering_writes_wait_for_company_and_go_together(database: Database) -> None:
    with statements() as seen:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(database.write_together([usage(f"l{i}")], linger=0.3) for i in range(5)))
        waited = loop.time() - started
    assert len(seen) == 1 and waited >= 0.25, (seen, waited)
    # A write that does not wait does not take lingering ones along; flush() sends them at once.
    with statements() as seen:
        lingering = asyncio.ensure_future(database.write_together([usage("late")], linger=30))
        await database.write_together([usage("now")])
        assert not lingering.done()
        database.flush_writes()
        await asyncio.wait_for(lingering, 5)
    assert len(seen) == 2
    assert len(await purposes(database)) == 7


@pytest.mark.timeout(60)
async def test_a_link_answered_but_not_recorded_when_its_process_dies_is_not_answered_twice(
    make_slack_app: MakeSlackApp, slack_stub: SlackStub, web: WebStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await make_slack_app(JOB_LEASE="1")
    url = article_page(web)
    completing = JobQueue.complete
    runs: list[int] = []

    async def dies_first(queue: JobQueue, job: Any, **kwargs: Any) -> bool:
        """The first run's process dies after posting, before its completion (and the request) commit."""
        runs.append(job.attempts)
        if job.attempts == 1:
            return False
        return await completing(queue, job, **kwargs)

    monkeypatch.setattr(JobQueue, "complete", dies_first)
    assert await app.event(message(f"<{url}>")) == 200
    await app.settle()  # the lease runs out, the job is taken again, looks in Slack, finds its answer
    assert runs == [1, 2]
    assert len(slack_stub.posted()) == 1
    assert slack_stub.calls_to("conversations.replies")  # looked before sending again
    async with app.deps.jobs.queue.db.engine.connect() as conn:
        state, reply_ts = (await conn.execute(select(SlackRequestRow.state, SlackRequestRow.reply_ts))).one()
    assert (state, reply_ts) == ("done", slack_stub.posted_ts(0))
