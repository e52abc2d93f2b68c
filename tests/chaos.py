"""Real `python bot.py` processes for crash tests and the chaos benchmark: start, send signed events,
`kill -9`, restart on the same database, and count what Slack (the stand-in) ended up showing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.openai_stub import default_responder
from tests.support.slack_signing import command_body, event_body, signed_headers
from tests.support.slack_stub import SlackStub

ROOT = Path(__file__).resolve().parents[1]
PROGRESS_WORDS = ("Reading", "⏳", ":hourglass")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bot_env(*, home: Path, database_url: str, slack_api_url: str, openai_base_url: str, signing_secret: str,
            **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "TIKTOKEN_CACHE_DIR": os.environ.get("TIKTOKEN_CACHE_DIR", ""),
        "OPENAI_API_KEY": "sk-test-secret-key",
        "OPENAI_BASE_URL": openai_base_url,
        "DATABASE_URL": database_url,
        "FETCH_ALLOW_HOSTS": "127.0.0.1",
        "SLACK_BOT_TOKEN": "xoxb-process-test",
        "SLACK_SIGNING_SECRET": signing_secret,
        "SLACK_API_URL": slack_api_url,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
    }
    env.update(extra)
    return env


@dataclass
class Bot:
    env: dict[str, str]
    signing_secret: str
    port: int = 0
    proc: asyncio.subprocess.Process | None = None
    log: Path | None = None
    _log_file: Any = field(default=None, repr=False)

    async def start(self, timeout: float = 60.0) -> Bot:
        self.port = free_port()
        self.log = Path(self.env["HOME"]) / f"bot-{self.port}.log"
        self._log_file = self.log.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "bot.py", cwd=ROOT, env={**self.env, "PORT": str(self.port)},
            stdout=asyncio.subprocess.DEVNULL, stderr=self._log_file,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while loop.time() < deadline:
                if self.proc.returncode is not None:
                    raise AssertionError(f"bot.py exited early: {self.log.read_text()[-2000:]}")
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("bot.py never became healthy")

    async def event(self, event: dict[str, Any], *, event_id: str, retry_num: int | None = None) -> int:
        body = event_body(event, event_id=event_id)
        headers = signed_headers(self.signing_secret, body, content_type="application/json")
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_error"
        async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{self.port}/slack/events", data=body.encode(), headers=headers
        ) as response:
            return response.status

    async def command(self, text: str, *, trigger_id: str, response_url: str, command: str = "/ask",
                      channel_id: str = "C0001") -> int:
        body = command_body(command, text, response_url=response_url, trigger_id=trigger_id,
                            channel_id=channel_id)
        headers = signed_headers(self.signing_secret, body, content_type="application/x-www-form-urlencoded")
        async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{self.port}/slack/events", data=body.encode(), headers=headers
        ) as response:
            return response.status

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


@dataclass
class Outcome:
    sent: int
    answered_once: int
    lost: int
    twice: int
    stuck: int

    def row(self) -> str:
        return f"{self.sent} | {self.answered_once} | {self.lost} | {self.twice} | {self.stuck}"


def _shown(message: dict[str, Any]) -> str:
    """A message's text and blocks (a summary's `text` is its TL;DR; the title is in the blocks)."""
    return str(message.get("text", "")) + json.dumps(message.get("blocks") or [], ensure_ascii=False)


def _tally(answers_per_request: Iterable[list[Any]]) -> tuple[int, int, int]:
    """(answered once, lost, answered more than once) over each request's answers."""
    counts = [len(answers) for answers in answers_per_request]
    return counts.count(1), counts.count(0), sum(1 for n in counts if n > 1)


def outcome(stub: SlackStub, channel: str, threads: dict[str, str]) -> Outcome:
    """`threads`: thread ts -> a title only the answer for that thread contains."""
    messages = stub.messages.get(channel, [])
    once, lost, twice = _tally(
        [m for m in messages if m.get("thread_ts") == thread_ts and title in _shown(m)]
        for thread_ts, title in threads.items()
    )
    bot_posts = [m for m in messages if m.get("thread_ts") in threads]
    extra = len(bot_posts) - len(threads)  # one message per request: the answer (progress is no message)
    stuck = sum(1 for m in messages if any(word in m.get("text", "") for word in PROGRESS_WORDS))
    return Outcome(sent=len(threads), answered_once=once, lost=lost, twice=twice + max(0, extra - twice),
                   stuck=stuck)


# --- follow-up questions and /ask -------------------------------------------------------------------

_QUESTION = re.compile(r"<question>\s*(.*?)\s*</question>", re.S)
_MARKER = re.compile(r"\bask\w+\b")
_TITLE = re.compile(r"^Title: (.+)$", re.M)


def qa_responder(body: dict[str, Any]) -> str | dict[str, Any]:
    """The model stand-in for question rows: each answer names the question's marker (`ask…`) and the
    article's title (grounded enough for the answer checks); summaries get the default."""
    fmt = body.get("response_format") or {}
    name = (fmt.get("json_schema") or {}).get("name")
    prompt = "\n".join(str(m.get("content")) for m in body.get("messages", []) if m.get("role") == "user")
    if name == "keywords":
        return json.dumps({"keywords": []})
    if name == "answer":
        question = _QUESTION.search(prompt)
        marker = _MARKER.search(question.group(1) if question else "")
        title = _TITLE.search(prompt)
        text = (f"Answer {marker.group(0) if marker else '?'}: the article {title.group(1) if title else ''} "
                "says the open model leads the coding benchmark, and the lab published its weights.")
        return json.dumps({"answer": text, "answered": True})
    return default_responder(body)


def question_outcome(stub: SlackStub, channel: str, questions: dict[str, tuple[str, str]]) -> Outcome:
    """`questions`: question ts (or /ask trigger) -> (thread ts, marker only its answer contains). Lost: no
    answer; twice: more than one, or any other extra bot message in those threads (one summary each);
    stuck: a stream left half-written, a progress note, or 🤔 left on a question."""
    messages = stub.messages.get(channel, [])
    once, lost, twice = _tally(
        [m for m in messages if m.get("thread_ts") == thread_ts and f"Answer {marker}:" in _shown(m)]
        for thread_ts, marker in questions.values()
    )
    threads: dict[str, int] = {}
    for thread_ts, _marker in questions.values():
        threads[thread_ts] = threads.get(thread_ts, 0) + 1
    extra = 0
    for thread_ts, asked in threads.items():
        bot_posts = [m for m in messages if m.get("thread_ts") == thread_ts and m.get("bot_id")]
        extra += max(0, len(bot_posts) - asked - 1)  # the summary, then one answer per question
    stuck = sum(1 for m in messages
                if m.get("streaming") or any(word in m.get("text", "") for word in PROGRESS_WORDS))
    thinking: dict[str, str] = {}  # question ts -> the last reaction call about 🤔 that Slack took
    for call in stub.calls:
        taken = call.response is not None and call.response.get("ok")
        if taken and call.method in {"reactions.add", "reactions.remove"} \
                and call.args.get("name") == "thinking_face":
            thinking[str(call.args.get("timestamp"))] = call.method
    stuck += sum(1 for method in thinking.values() if method == "reactions.add")
    return Outcome(sent=len(questions), answered_once=once, lost=lost, twice=twice + max(0, extra - twice),
                   stuck=stuck)


async def wait_until(predicate: Any, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return bool(predicate())


# --- digests ---------------------------------------------------------------------------------------


async def subscribe_due_now(database_url: str, team_id: str, channels: list[str]) -> None:
    """Subscribe `channels` to a digest due a minute ago (UTC), subscribed since yesterday."""
    from datetime import timedelta

    from sqlalchemy import update

    from ringkas.digest.store import DigestStore
    from ringkas.storage import Database
    from ringkas.storage.base import utcnow
    from ringkas.storage.digest_tables import DigestSubscriptionRow

    db = Database(database_url)
    await db.create_all()
    try:
        store = DigestStore(db)
        at = (utcnow() - timedelta(minutes=1)).strftime("%H:%M")
        for channel in channels:
            await store.subscribe(team_id, channel, time=at, timezone="UTC", created_by=None)
        async with db.session() as session:
            yesterday = utcnow() - timedelta(days=1)
            await session.execute(
                update(DigestSubscriptionRow).values(created_at=yesterday, updated_at=yesterday)
            )
    finally:
        await db.dispose()


def ai_feed(web: Any, name: str, count: int = 6) -> str:
    """An RSS feed of fresh AI stories on the web stand-in; returns its URL."""
    from datetime import UTC, datetime, timedelta

    from tests.test_digest_support import rss

    now = datetime.now(UTC)
    entries = [(f"{name} lab releases open model number {i} with new AI benchmark results",
                web.url(f"/{name}/story-{i}"), now - timedelta(hours=i + 1)) for i in range(count)]
    return str(web.add(f"/{name}.xml", rss(f"{name} AI news", entries, description="A new AI model."),
                       content_type="application/rss+xml"))


def digests_posted(stub: SlackStub, channel: str) -> int:
    """Top-level digest messages in a channel (each day's digest is one top-level post)."""
    return sum(1 for m in stub.messages.get(channel, []) if "thread_ts" not in m)


async def digest_crash_scenario(stub: SlackStub, model: Any, web: Any, home: Path, database_url: str,
                                signing_secret: str, openai_base_url: str) -> dict[str, int]:
    """Two channels' digests: the process is killed while building, restarted, killed again while Slack
    is receiving the digest post, restarted. Returns channel -> digests posted."""
    from tests.test_digest_support import digest_responder

    channels = ["CDIGESTA", "CDIGESTB"]
    await subscribe_due_now(database_url, "T0001", channels)
    feeds = ",".join(ai_feed(web, name) for name in ("alpha", "beta"))
    model.responder = digest_responder
    env = bot_env(home=home, database_url=database_url, slack_api_url=stub.api_url,
                  openai_base_url=openai_base_url, signing_secret=signing_secret, DIGEST_FEEDS=feeds)
    model.delay = 2.0
    first = await Bot(env, signing_secret).start()
    await wait_until(lambda: len(model.requests) > 0, 60)  # building
    first.kill9()
    await first.stop()
    stub.delays["chat.postMessage"] = 3.0  # Slack takes its time: the next process dies mid-post
    posts_before = len(stub.calls_to("chat.postMessage"))
    second = await Bot(env, signing_secret).start()
    await wait_until(lambda: len(stub.calls_to("chat.postMessage")) > posts_before, 120)
    second.kill9()
    await second.stop()
    # The killed process's post still reaches Slack seconds later (Slack keeps a message whose sender died
    # while waiting for the answer): the restart, taking over at once, must not post it again.
    stub.delays.clear()
    model.delay = 0.0
    third = await Bot(env, signing_secret).start()
    try:
        await wait_until(lambda: all(digests_posted(stub, c) >= 1 for c in channels), 120)
        await asyncio.sleep(2)
    finally:
        await third.stop()
    return {channel: digests_posted(stub, channel) for channel in channels}
