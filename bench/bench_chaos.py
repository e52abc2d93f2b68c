"""Chaos: real `python bot.py` processes, signed events, Slack/model stand-ins, crashes and outages.

    python bench/bench_chaos.py [--requests 10] [--outage 20] [--only NAME ...]

Prints issue 14's table for this build: per scenario the requests sent, answered once, lost, answered
twice and progress messages left ("stuck"), plus the wall time until everything was settled. The `q-…`
rows do the same for follow-up questions and `/ask` (half each, one per summary thread, answers streamed):
there "stuck" also counts a stream left half-written and a 🤔 left on a question. Each scenario
runs on fresh stand-ins and a fresh database (SQLite file; PostgreSQL at TEST_POSTGRES_URL for the
two-process and database-outage rows, skipped when none is reachable). `--outage` sets the length of the
Slack/model/database outages (the issue used 20-30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from _setup import ROOT
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.chaos import (
    Bot,
    Outcome,
    bot_env,
    digest_crash_scenario,
    outcome,
    qa_responder,
    question_outcome,
    wait_until,
)
from tests.support.openai_stub import OpenAIStub
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub

SECRET = "bench-signing-secret"
CHANNEL = "C0001"
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


ARTICLE = (ROOT / "tests" / "fixtures" / "slack_article.html").read_text(encoding="utf-8")


def article(title: str) -> str:
    """The tests' news article under another title (varied enough to pass the summary checks)."""
    return ARTICLE.replace("Open-weight model tops coding benchmark", title)


@dataclass
class World:
    slack: SlackStub
    model: OpenAIStub
    web: WebStub
    home: Path
    database_url: str
    events: list[dict[str, Any]]
    threads: dict[str, str]
    counter: int = 0
    digests: dict[str, int] | None = None  # the digest row: channel -> digests posted
    # question rows: question ts / trigger id -> (thread ts, marker); the mentions; the /ask commands
    questions: dict[str, tuple[str, str]] | None = None
    question_events: list[dict[str, Any]] = field(default_factory=list)
    asks: list[tuple[str, str, str]] = field(default_factory=list)  # (trigger id, text, response name)

    def env(self, **extra: str) -> dict[str, str]:
        return bot_env(home=self.home, database_url=self.database_url, slack_api_url=self.slack.api_url,
                       openai_base_url=self.model.base_url, signing_secret=SECRET, JOB_LEASE="3",
                       RETRY_DEADLINE="600", **extra)

    async def send(self, bot: Bot, indexes: range | list[int], *, retry: bool = False) -> None:
        for i in indexes:
            status = await bot.event(self.events[i], event_id=f"Ev{i}", retry_num=1 if retry else None)
            assert status == 200, status

    def answered(self) -> bool:
        return outcome(self.slack, CHANNEL, self.threads).answered_once == len(self.threads)

    def plan_questions(self, count: int) -> None:
        """`count` questions, one per summary thread: mentions in the thread and `/ask … LINK` in turn."""
        self.questions = {}
        for i, (thread_ts, event) in enumerate(zip(self.threads, self.events, strict=True)):
            if i >= count:
                break
            if i % 2 == 0:
                ts = f"{int(time.time())}.{200000 + i:06d}"
                self.question_events.append({
                    "type": "app_mention", "user": "U0001", "text": f"<@UBOT> what about askm{i}?", "ts": ts,
                    "channel": CHANNEL, "thread_ts": thread_ts, "event_ts": ts})
                self.questions[ts] = (thread_ts, f"askm{i}")
            else:
                url = event["text"].split("<")[-1].rstrip(">")
                trigger = f"13345224609.{i:09d}.{secrets.token_hex(10)}"
                self.asks.append((trigger, f"and askc{i}? <{url}>", f"ask{i}"))
                self.questions[trigger] = (thread_ts, f"askc{i}")

    async def ask(self, bot: Bot, *, retry: bool = False) -> None:
        """Send the questions; `retry`: Slack redelivers the mentions (slash commands are not retried)."""
        for i, event in enumerate(self.question_events):
            status = await bot.event(event, event_id=f"EvQ{i}", retry_num=1 if retry else None)
            assert status == 200, status
        if retry:
            return
        for trigger, text, name in self.asks:
            status = await bot.command(text, trigger_id=trigger, response_url=self.slack.response_url(name))
            assert status == 200, status

    def questions_answered(self) -> bool:
        assert self.questions is not None
        return question_outcome(self.slack, CHANNEL, self.questions).answered_once == len(self.questions)

    async def summaries_first(self, bot: Bot, args: argparse.Namespace) -> None:
        """The threads the questions are asked in: every link summarized, then the questions planned."""
        await self.send(bot, range(len(self.events)))
        if not await wait_until(self.answered, args.wait):
            raise AssertionError("the summaries the questions are about never came")
        self.plan_questions(args.requests)


async def make_world(home: Path, requests: int, database_url: str | None = None) -> World:
    slack, model, web = SlackStub(), OpenAIStub(), WebStub()
    model.responder = qa_responder  # summaries as usual; answers name their question's marker
    await asyncio.gather(slack.start(), model.start(), web.start())
    events, threads = [], {}
    tag = secrets.token_hex(2)
    for i in range(requests):
        title = f"Chaos story {tag}-{i}"
        url = web.add(f"/story-{tag}-{i}", article(title))
        ts = f"{int(time.time())}.{100000 + i:06d}"
        # One person per link: 40 links from one person would meet LINKS_PER_USER_PER_HOUR (30), not chaos.
        events.append({"type": "app_mention", "user": f"U{1000 + i}", "text": f"<@UBOT> <{url}>", "ts": ts,
                       "channel": CHANNEL, "channel_type": "channel", "event_ts": ts})
        threads[ts] = title
    db = database_url or f"sqlite:///{home / 'chaos.db'}"
    return World(slack, model, web, home, db, events, threads)


async def close_world(world: World) -> None:
    await asyncio.gather(world.slack.stop(), world.model.stop(), world.web.stop())


# --- PostgreSQL: a private database per scenario, and a TCP proxy to cut it off --------------------------


@contextlib.asynccontextmanager
async def private_postgres():  # type: ignore[no-untyped-def]
    server = make_url(POSTGRES_URL)
    try:
        admin = await psycopg.AsyncConnection.connect(
            server.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True,
            connect_timeout=5)
    except psycopg.Error:
        yield None
        return
    name = f"ringkas_chaos_{os.getpid()}_{secrets.token_hex(3)}"
    await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.set(database=name)
    finally:
        await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        await admin.close()


class Proxy:
    """127.0.0.1:port -> PostgreSQL; `cut()` drops every connection and refuses new ones until `mend()`."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> Proxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        for task in (asyncio.create_task(pipe(reader, up_writer)),
                     asyncio.create_task(pipe(up_reader, writer))):
            self.pipes.add(task)
            task.add_done_callback(self.pipes.discard)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)

    async def mend(self) -> None:
        await self.start()


# --- scenarios ---------------------------------------------------------------------------------------


Scenario = Callable[[World, argparse.Namespace], Awaitable[None]]


async def _kill9(bot: Bot) -> None:
    bot.kill9()
    await bot.proc.wait()  # type: ignore[union-attr]
    await bot.stop()


async def _restart_until(world: World, args: argparse.Namespace, done: Callable[[], bool],
                         redeliver: Callable[[Bot], Awaitable[None]] | None) -> None:
    """A new process after a `kill -9` (Slack redelivering to it, or not), until `done` or `--wait`."""
    second = await Bot(world.env(), SECRET).start()
    try:
        if redeliver is not None:
            await redeliver(second)
        await wait_until(done, args.wait)
        await asyncio.sleep(2)  # time for a double answer to show, if there were one
    finally:
        await second.stop()


async def kill_after_acks(world: World, args: argparse.Namespace, *, redeliver: bool = False) -> None:
    world.model.delay = args.model_delay
    first = await Bot(world.env(), SECRET).start()
    await world.send(first, range(len(world.events)))
    await world.slack.wait_for("chat.postMessage", len(world.events), timeout=60)
    await _kill9(first)

    async def again(bot: Bot) -> None:
        await world.send(bot, range(len(world.events)), retry=True)

    await _restart_until(world, args, world.answered, again if redeliver else None)


async def kill_and_redeliver(world: World, args: argparse.Namespace) -> None:
    await kill_after_acks(world, args, redeliver=True)


async def two_processes_one_killed(world: World, args: argparse.Namespace) -> None:
    world.model.delay = args.model_delay
    doomed, survivor = await asyncio.gather(Bot(world.env(), SECRET).start(),
                                            Bot(world.env(), SECRET).start())
    try:
        n = len(world.events)
        await world.send(doomed, range(0, n, 2))
        await world.send(survivor, range(1, n, 2))
        await world.slack.wait_for("chat.postMessage", max(1, n // 2), timeout=60)
        doomed.kill9()
        await doomed.proc.wait()  # type: ignore[union-attr]
        await world.send(survivor, range(0, n, 2), retry=True)  # Slack's retries reach the survivor
        await wait_until(world.answered, args.wait)
        await asyncio.sleep(2)
    finally:
        await survivor.stop()
        await doomed.stop()


async def digests_killed(world: World, args: argparse.Namespace) -> None:
    """Two channels' digests; the process is killed while building, then while posting; restarted."""
    posted = await digest_crash_scenario(world.slack, world.model, world.web, world.home, world.database_url,
                                         SECRET, world.model.base_url)
    # The table's columns for digests: one "request" per channel; answered once = exactly one digest.
    world.digests = posted


async def slack_500(world: World, args: argparse.Namespace) -> None:
    bot = await Bot(world.env(), SECRET).start()
    try:
        world.slack.fail_status = 500
        await world.send(bot, range(len(world.events)))
        await asyncio.sleep(args.outage)
        world.slack.fail_status = None
        await wait_until(world.answered, args.wait)
        await asyncio.sleep(2)
    finally:
        await bot.stop()


async def slack_refuses(world: World, args: argparse.Namespace) -> None:
    world.model.delay = 1.0
    bot = await Bot(world.env(), SECRET).start()
    try:
        await world.send(bot, range(len(world.events)))
        await world.slack.wait_for("chat.postMessage", len(world.events), timeout=60)
        await world.slack.go_down()  # the answers become ready while Slack is unreachable
        await asyncio.sleep(args.outage)
        await world.slack.come_back()
        await wait_until(world.answered, args.wait)
        await asyncio.sleep(2)
    finally:
        await bot.stop()


async def slack_429_on_update(world: World, args: argparse.Namespace) -> None:
    bot = await Bot(world.env(), SECRET).start()
    try:
        world.slack.rate_limit_next("chat.update", 100_000, retry_after=1)
        await world.send(bot, range(len(world.events)))
        await asyncio.sleep(args.outage)
        world.slack._rate_limits.pop("chat.update", None)
        await wait_until(world.answered, args.wait)
        await asyncio.sleep(2)
    finally:
        await bot.stop()


async def model_500(world: World, args: argparse.Namespace) -> None:
    bot = await Bot(world.env(OPENAI_MAX_RETRIES="2"), SECRET).start()
    try:
        world.model.fail_next(100_000, status=500)
        await world.send(bot, range(len(world.events)))
        await asyncio.sleep(args.outage)
        world.model._failures.clear()
        await wait_until(world.answered, args.wait)
        await asyncio.sleep(2)
    finally:
        await bot.stop()


async def postgres_down(world: World, args: argparse.Namespace) -> None:
    url = make_url(world.database_url)
    proxy = await Proxy(url.host or "127.0.0.1", url.port or 5432).start()
    world.database_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    world.model.delay = 1.0
    bot = await Bot(world.env(), SECRET).start()
    try:
        half = len(world.events) // 2
        await world.send(bot, range(half))
        await proxy.cut()
        await world.send(bot, range(half, len(world.events)))  # arrive while the database is down
        await asyncio.sleep(args.outage)
        await proxy.mend()
        await wait_until(world.answered, args.wait)
        await asyncio.sleep(2)
    finally:
        await bot.stop()
        await proxy.cut()


# --- follow-up questions and /ask -------------------------------------------------------------------


def slow_streams(world: World) -> None:
    world.model.stream_chunk, world.model.stream_delay = 8, 0.3  # answers stream for ~5 s


async def q_kill_after_acks(world: World, args: argparse.Namespace, *, redeliver: bool = False) -> None:
    first = await Bot(world.env(), SECRET).start()
    try:
        await world.summaries_first(first, args)
        slow_streams(world)
        await world.ask(first)
        await world.slack.wait_for("chat.startStream", max(1, len(world.questions or {}) // 2), timeout=60)
    finally:
        await _kill9(first)
    world.model.stream_delay = 0.0

    async def again(bot: Bot) -> None:
        await world.ask(bot, retry=True)

    await _restart_until(world, args, world.questions_answered, again if redeliver else None)


async def q_kill_and_redeliver(world: World, args: argparse.Namespace) -> None:
    await q_kill_after_acks(world, args, redeliver=True)


async def q_slack_500(world: World, args: argparse.Namespace) -> None:
    bot = await Bot(world.env(), SECRET).start()
    try:
        await world.summaries_first(bot, args)
        world.slack.fail_status = 500
        await world.ask(bot)
        await asyncio.sleep(args.outage)
        world.slack.fail_status = None
        await wait_until(world.questions_answered, args.wait)
        await asyncio.sleep(2)
    finally:
        await bot.stop()


async def q_slack_refuses(world: World, args: argparse.Namespace) -> None:
    bot = await Bot(world.env(), SECRET).start()
    try:
        await world.summaries_first(bot, args)
        world.model.delay = 1.0
        await world.ask(bot)
        await world.slack.go_down()  # the answers become ready while Slack is unreachable
        await asyncio.sleep(args.outage)
        await world.slack.come_back()
        await wait_until(world.questions_answered, args.wait)
        await asyncio.sleep(2)
    finally:
        await bot.stop()


ANSWER_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream", "chat.update",
                  "chat.postMessage")


async def q_slack_429(world: World, args: argparse.Namespace) -> None:
    bot = await Bot(world.env(), SECRET).start()
    try:
        await world.summaries_first(bot, args)
        for method in ANSWER_METHODS:
            world.slack.rate_limit_next(method, 100_000, retry_after=1)
        await world.ask(bot)
        await asyncio.sleep(args.outage)
        for method in ANSWER_METHODS:
            world.slack._rate_limits.pop(method, None)
        await wait_until(world.questions_answered, args.wait)
        await asyncio.sleep(2)
    finally:
        await bot.stop()


async def q_model_500(world: World, args: argparse.Namespace) -> None:
    bot = await Bot(world.env(OPENAI_MAX_RETRIES="2"), SECRET).start()
    try:
        await world.summaries_first(bot, args)
        world.model.fail_next(100_000, status=500)
        await world.ask(bot)
        await asyncio.sleep(args.outage)
        world.model._failures.clear()
        await wait_until(world.questions_answered, args.wait)
        await asyncio.sleep(2)
    finally:
        await bot.stop()


SCENARIOS: list[tuple[str, str, Scenario, bool]] = [
    ("kill9", "`kill -9` after the mentions were acked (slow model), restart", kill_after_acks, False),
    ("redeliver", "same, and Slack redelivers all after the restart", kill_and_redeliver, False),
    ("two-pg", "2 processes on PostgreSQL, one `kill -9`'d mid-run, retries to the survivor",
     two_processes_one_killed, True),
    ("digest", "digest: `kill -9` while building, then while posting; restart (2 channels)", digests_killed,
     False),
    ("slack500", "Slack answers 500 to every method for {o} s", slack_500, False),
    ("slackdown", "Slack refuses connections for {o} s while answers are ready", slack_refuses, False),
    ("slack429", "Slack 429 on `chat.update` for {o} s", slack_429_on_update, False),
    ("model500", "model 500 for {o} s, then fine", model_500, False),
    ("pgdown", "PostgreSQL down for {o} s mid-run", postgres_down, True),
    ("q-kill9", "questions + `/ask`: `kill -9` mid-stream after the acks, restart", q_kill_after_acks,
     False),
    ("q-redeliver", "questions + `/ask`: same, and Slack redelivers the mentions", q_kill_and_redeliver,
     False),
    ("q-slack500", "questions + `/ask`: Slack answers 500 to every method for {o} s", q_slack_500, False),
    ("q-slackdown", "questions + `/ask`: Slack refuses connections for {o} s while answers are ready",
     q_slack_refuses, False),
    ("q-slack429", "questions + `/ask`: Slack 429 on every posting/streaming method for {o} s", q_slack_429,
     False),
    ("q-model500", "questions + `/ask`: model 500 for {o} s, then fine", q_model_500, False),
]


async def run(args: argparse.Namespace) -> None:
    rows: list[tuple[str, Outcome | None, float, str]] = []
    for name, title, scenario, needs_postgres in SCENARIOS:
        if args.only and name not in args.only:
            continue
        title = title.format(o=int(args.outage))
        with tempfile.TemporaryDirectory() as tmp:
            async with contextlib.AsyncExitStack() as stack:
                database_url = None
                if needs_postgres:
                    server = await stack.enter_async_context(private_postgres())
                    if server is None:
                        rows.append((title, None, 0.0, "skipped: no PostgreSQL"))
                        continue
                    database_url = server.render_as_string(hide_password=False)
                world = await make_world(Path(tmp), args.requests, database_url)
                started = time.perf_counter()
                note = ""
                try:
                    await scenario(world, args)
                except Exception as exc:  # a scenario that broke is a row too
                    note = f"error: {type(exc).__name__}: {exc}"[:120]
                wall = time.perf_counter() - started
                result = outcome(world.slack, CHANNEL, world.threads)
                if world.questions is not None:
                    result = question_outcome(world.slack, CHANNEL, world.questions)
                if world.digests is not None:
                    counts = list(world.digests.values())
                    result = Outcome(sent=len(counts), answered_once=counts.count(1), lost=counts.count(0),
                                     twice=sum(1 for n in counts if n > 1), stuck=0)
                rows.append((title, result, wall, note))
                await close_world(world)
        print(f"done: {title}", file=sys.stderr, flush=True)
    print("| scenario | sent | answered once | lost | twice | stuck | wall s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for title, result, wall, note in rows:
        if result is None:
            print(f"| {title} | — | — | — | — | — | {note} |")
            continue
        suffix = f" ({note})" if note else ""
        print(f"| {title}{suffix} | {result.row()} | {wall:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10, help="mentions per scenario (default 10)")
    parser.add_argument("--outage", type=float, default=20.0, help="outage length in seconds (default 20)")
    parser.add_argument("--model-delay", type=float, default=3.0, help="model latency in the crash rows (s)")
    parser.add_argument("--wait", type=float, default=180.0, help="how long to wait for answers (s)")
    parser.add_argument("--only", nargs="*", help="scenario names: " + " ".join(s[0] for s in SCENARIOS))
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
