"""`kill -9` of real `python bot.py` processes: nothing accepted is lost, nothing is answered twice, no
progress message stays (issue 14's scenarios, smaller): links, follow-up questions and /ask, digests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from ringkas.storage import Base
from ringkas.storage.db import async_url
from tests.chaos import (
    Bot,
    bot_env,
    digest_crash_scenario,
    outcome,
    qa_responder,
    question_outcome,
    wait_until,
)
from tests.conftest import SIGNING_SECRET
from tests.slack_app import BOT_USER_ID, mention, next_ts
from tests.support.openai_stub import OpenAIStub
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_slack_events import article_page

CHANNEL = "C0001"


def _requests(web: WebStub, count: int, prefix: str) -> tuple[list[dict], dict[str, str]]:
    events, threads = [], {}
    for i in range(count):
        title = f"Chaos story {prefix}{i}"
        url = article_page(web, f"/{prefix}{i}", title=title)
        event = mention(f"<@{BOT_USER_ID}> <{url}>")
        events.append(event)
        threads[event["ts"]] = title
    return events, threads


def _all_answered(stub: SlackStub, threads: dict[str, str]) -> bool:
    return outcome(stub, CHANNEL, threads).answered_once == len(threads)


@pytest.mark.timeout(240)  # two bot.py starts; slow on a loaded machine
async def test_kill_9_after_the_acks_then_restart_and_redelivery(
    tmp_path: Path, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.delay = 1.5  # the model is slow: the work is in flight when the process dies
    env = bot_env(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'bot.db'}",
                  slack_api_url=slack_stub.api_url, openai_base_url=openai_stub.base_url,
                  signing_secret=SIGNING_SECRET, JOB_LEASE="2")
    events, threads = _requests(web, 6, "k")
    first = await Bot(env, SIGNING_SECRET).start()
    try:
        for n, event in enumerate(events):
            assert await first.event(event, event_id=f"Ev{n}") == 200
        # progress shown (a thread status on each mention): the work is in flight
        await slack_stub.wait_for("assistant.threads.setStatus", len(events), timeout=30)
    finally:
        first.kill9()
        await first.proc.wait()  # type: ignore[union-attr]
    assert not slack_stub.calls_to("chat.update")  # nothing was answered before the crash
    second = await Bot(env, SIGNING_SECRET).start()
    try:
        for n, event in enumerate(events):  # Slack redelivers everything to the restarted process
            assert await second.event(event, event_id=f"Ev{n}", retry_num=1) == 200
        assert await wait_until(lambda: _all_answered(slack_stub, threads), 60)
        await asyncio.sleep(1.0)  # time for a double answer to show, if there were one
    finally:
        await second.stop()
    result = outcome(slack_stub, CHANNEL, threads)
    assert (result.lost, result.twice, result.stuck) == (0, 0, 0), result
    assert len(slack_stub.calls_to("chat.postMessage")) == len(events)  # one answer each, none posted twice


@pytest.mark.timeout(240)
async def test_two_processes_on_postgresql_one_killed_mid_run(
    tmp_path: Path, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub, postgres_url: str | None
) -> None:
    if postgres_url is None:
        pytest.skip("no PostgreSQL server reachable")
    engine = create_async_engine(async_url(postgres_url))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
    await engine.dispose()
    openai_stub.delay = 1.5
    env = bot_env(home=tmp_path, database_url=postgres_url, slack_api_url=slack_stub.api_url,
                  openai_base_url=openai_stub.base_url, signing_secret=SIGNING_SECRET, JOB_LEASE="2")
    events, threads = _requests(web, 8, "p")
    doomed, survivor = await asyncio.gather(Bot(env, SIGNING_SECRET).start(),
                                            Bot(env, SIGNING_SECRET).start())
    try:
        for n, event in enumerate(events):
            target = doomed if n % 2 == 0 else survivor
            assert await target.event(event, event_id=f"Ev{n}") == 200
        await slack_stub.wait_for("chat.postMessage", len(events), timeout=30)
        doomed.kill9()
        await doomed.proc.wait()  # type: ignore[union-attr]
        for n, event in enumerate(events):  # Slack's retries now all reach the survivor
            if n % 2 == 0:
                assert await survivor.event(event, event_id=f"Ev{n}", retry_num=1) == 200
        assert await wait_until(lambda: _all_answered(slack_stub, threads), 60)
        await asyncio.sleep(1.0)
    finally:
        await survivor.stop()
        await doomed.stop()
    result = outcome(slack_stub, CHANNEL, threads)
    assert (result.lost, result.twice, result.stuck) == (0, 0, 0), result


@pytest.mark.timeout(240)
async def test_questions_and_ask_killed_mid_stream_are_finished_once_after_restart_and_redelivery(
    tmp_path: Path, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = qa_responder
    env = bot_env(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'bot.db'}",
                  slack_api_url=slack_stub.api_url, openai_base_url=openai_stub.base_url,
                  signing_secret=SIGNING_SECRET, JOB_LEASE="2")
    links, threads = _requests(web, 2, "q")
    urls = {event["ts"]: event["text"].split("<")[-1].rstrip(">") for event in links}
    first = await Bot(env, SIGNING_SECRET).start()
    try:
        for n, event in enumerate(links):
            assert await first.event(event, event_id=f"EvL{n}") == 200
        assert await wait_until(lambda: _all_answered(slack_stub, threads), 60)
        # The answers stream slowly: the process dies with every stream open.
        openai_stub.stream_chunk, openai_stub.stream_delay = 8, 0.4
        questions: dict[str, tuple[str, str]] = {}
        events = []
        for i, thread_ts in enumerate(threads):
            event = mention(f"<@{BOT_USER_ID}> what about askm{i}?", ts=next_ts(), thread_ts=thread_ts)
            events.append(event)
            questions[event["ts"]] = (thread_ts, f"askm{i}")
            assert await first.event(event, event_id=f"EvQ{i}") == 200
        for i, thread_ts in enumerate(threads):
            trigger = f"13345224609.{i:09d}.8088930838d88f008e0"
            status = await first.command(f"and askc{i}? <{urls[thread_ts]}>", trigger_id=trigger,
                                         response_url=slack_stub.response_url(f"ask{i}"))
            assert status == 200
            questions[trigger] = (thread_ts, f"askc{i}")
        # One question at a time per thread: the first of each thread is streaming.
        await slack_stub.wait_for("chat.startStream", len(threads), timeout=60)
    finally:
        first.kill9()
        await first.proc.wait()  # type: ignore[union-attr]
    assert [s for s in slack_stub.streams.values() if not s["stopped"]]  # killed mid-stream
    openai_stub.stream_delay = 0.0
    second = await Bot(env, SIGNING_SECRET).start()
    try:
        for i, event in enumerate(events):  # Slack redelivers the mentions to the restarted process
            assert await second.event(event, event_id=f"EvQ{i}", retry_num=1) == 200
        done = lambda: question_outcome(slack_stub, CHANNEL, questions).answered_once == len(questions)  # noqa: E731
        assert await wait_until(done, 60)
        await asyncio.sleep(1.0)  # time for a double answer to show, if there were one
    finally:
        await second.stop()
    result = question_outcome(slack_stub, CHANNEL, questions)
    assert (result.lost, result.twice, result.stuck) == (0, 0, 0), result
    # A rerun completes the half-written stream it finds (an edit) instead of opening a second one.
    assert len(slack_stub.calls_to("chat.startStream")) <= len(questions)
    assert slack_stub.calls_to("chat.update")
    # The /ask private notes say where the answers are.
    notes = [body["text"] for _name, body in slack_stub.responses]
    assert sum("I answered" in text for text in notes) == len(threads)


@pytest.mark.timeout(300)  # three bot.py starts; slow on a loaded machine
async def test_digests_killed_while_building_then_while_posting_go_out_once(
    tmp_path: Path, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    posted = await digest_crash_scenario(
        slack_stub, openai_stub, web, tmp_path, f"sqlite:///{tmp_path / 'bot.db'}", SIGNING_SECRET,
        openai_stub.base_url,
    )
    assert posted == {"CDIGESTA": 1, "CDIGESTB": 1}
