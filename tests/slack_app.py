"""The real Slack app, running over HTTP on 127.0.0.1, for tests of every Slack feature.

The fixtures are registered for every test by `tests/conftest.py` (`pytest_plugins`)::

    from tests.slack_app import BOT_USER_ID, SlackApp, mention, message

    async def test_something(slack_app: SlackApp, slack_stub, web) -> None:
        assert await slack_app.event(mention("<@UBOT> <https://…>")) == 200
        await slack_app.settle()                       # all slow work after the ack is done
        posted = slack_stub.posted()

`slack_app` is built by bot.py's `build_slack_app(settings)` (digest scheduler not started) with settings
from `make_settings(SLACK_API_URL=slack_stub.api_url, …)` and served by `serve_http` on a free port.
`make_slack_app(**ENV)` builds one with extra settings (env-var names). Requests are signed exactly as
Slack signs them (tests/support/slack_signing.py). `restart()` stops the app and starts a new process-like
instance on the same database.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from ringkas.config import Settings
from tests.conftest import SIGNING_SECRET
from tests.support.slack_signing import command_body, event_body, interaction_body, signed_headers
from tests.support.slack_stub import BOT_USER_ID, TEAM_ID, SlackStub

_ts = itertools.count(1)
_ids = itertools.count(1)
USER_ID = "U0001"
CHANNEL_ID = "C0001"


def next_ts() -> str:
    """A fresh Slack message timestamp."""
    return f"1800000000.{next(_ts):06d}"


def message(text: str, *, ts: str | None = None, channel: str = CHANNEL_ID, user: str | None = USER_ID,
            thread_ts: str | None = None, channel_type: str = "channel", **extra: Any) -> dict[str, Any]:
    """A `message` event as Slack sends it (extra keys, e.g. subtype or bot_id, are added as given)."""
    event: dict[str, Any] = {
        "type": "message", "channel": channel, "text": text, "ts": ts or next_ts(),
        "channel_type": channel_type, "team": TEAM_ID, "event_ts": ts,
    }
    if user is not None:
        event["user"] = user
    if thread_ts:
        event["thread_ts"] = thread_ts
    event.update(extra)
    event["event_ts"] = event["ts"]
    return event


def mention(text: str, *, ts: str | None = None, channel: str = CHANNEL_ID, user: str = USER_ID,
            thread_ts: str | None = None, **extra: Any) -> dict[str, Any]:
    """An `app_mention` event; `text` should contain `<@UBOT>` like real mentions do."""
    event = message(text, ts=ts, channel=channel, user=user, thread_ts=thread_ts, **extra)
    event["type"] = "app_mention"
    event.pop("channel_type", None)
    return event


def reaction(name: str, item: dict[str, Any], *, user: str = USER_ID) -> dict[str, Any]:
    """A `reaction_added` event on the message `item` (a `message(...)` event)."""
    return {"type": "reaction_added", "user": user, "reaction": name, "item_user": item.get("user"),
            "item": {"type": "message", "channel": item["channel"], "ts": item["ts"]},
            "event_ts": next_ts()}


def message_action(item: dict[str, Any], *, callback_id: str = "summarize_link",
                   user: str = USER_ID) -> dict[str, Any]:
    """A message shortcut payload on the message `item` (a `message(...)` event)."""
    found = {k: v for k, v in item.items() if k in {"type", "ts", "text", "user", "thread_ts"}}
    return {"type": "message_action", "callback_id": callback_id, "user": {"id": user, "name": "someone"},
            "channel": {"id": item["channel"], "name": "general"}, "message": found,
            "message_ts": item["ts"]}


@dataclass
class Reply:
    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text) if self.text else None


class SlackApp:
    """One running app plus a signed-request client for it."""

    def __init__(self, settings: Settings, slack_stub: SlackStub) -> None:
        self.settings = settings
        self.stub = slack_stub
        self.runtime: Any = None
        self.runner: Any = None
        self.port = 0
        self._http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def deps(self) -> Any:
        return self.runtime.deps

    async def start(self) -> SlackApp:
        from bot import build_slack_app, serve_http

        self.runtime = await build_slack_app(self.settings, start_scheduler=False)
        self.runner = await serve_http(self.runtime, 0, host="127.0.0.1")
        self.port = self.runner.addresses[0][1]
        self._http = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.runtime is not None:
            await self.runtime.aclose(grace=10)
            self.runtime = None

    async def restart(self, **env: str) -> SlackApp:
        """Stop, then start again on the same database (settings changed by `env`, if given)."""
        await self.stop()
        if env:
            self.settings = Settings.from_env({**_settings_env(self.settings), **env})
        return await self.start()

    async def post(self, path: str, body: str, headers: dict[str, str]) -> Reply:
        assert self._http is not None
        async with self._http.post(self.url + path, data=body.encode(), headers=headers) as response:
            return Reply(response.status, await response.text())

    async def get(self, path: str) -> Reply:
        assert self._http is not None
        async with self._http.get(self.url + path) as response:
            return Reply(response.status, await response.text())

    async def event(self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None,
                    team_id: str = TEAM_ID) -> int:
        """POST a signed Events API callback; returns the HTTP status of the ack."""
        body = event_body(event, team_id=team_id, event_id=event_id or f"Ev{next(_ids):06d}")
        headers = signed_headers(SIGNING_SECRET, body, content_type="application/json")
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return (await self.post("/slack/events", body, headers)).status

    async def command(self, text: str, *, command: str = "/summarize", channel_id: str = CHANNEL_ID,
                      user_id: str = USER_ID, response_name: str = "r") -> Reply:
        """POST a signed slash command; the reply body is the ack (JSON with `text` for ephemeral answers)."""
        # Unique per invocation and as long as Slack's (longer than a message ts).
        trigger_id = f"13345224609.{next(_ids):09d}.8088930838d88f008e0"
        body = command_body(command, text, response_url=self.stub.response_url(response_name),
                            channel_id=channel_id, user_id=user_id, trigger_id=trigger_id)
        headers = signed_headers(SIGNING_SECRET, body, content_type="application/x-www-form-urlencoded")
        return await self.post("/slack/events", body, headers)

    async def interaction(self, payload: dict[str, Any]) -> Reply:
        """POST a signed interactivity payload (message shortcut, block action, view submission)."""
        payload.setdefault("team", {"id": TEAM_ID, "domain": "stub"})
        payload.setdefault("api_app_id", "A0001")
        payload.setdefault("token", "legacy-verification-token")
        payload.setdefault("trigger_id", f"13345224609.{next(_ids):09d}.8088930838d88f008e0")
        payload.setdefault("response_url", self.stub.response_url("interaction"))
        body = interaction_body(payload)
        headers = signed_headers(SIGNING_SECRET, body, content_type="application/x-www-form-urlencoded")
        return await self.post("/slack/events", body, headers)

    async def settle(self, quiet: float = 0.1, timeout: float = 60.0) -> None:
        """Wait until every piece of slow work started by the requests so far has finished."""
        tasks = self.runtime.deps.tasks
        jobs = self.runtime.deps.jobs
        async with asyncio.timeout(timeout):
            while True:
                await tasks.join()
                jobs.queue.db.flush_writes()  # finished jobs' completions need not wait for company
                await jobs.worker.join()
                await asyncio.sleep(quiet)  # a listener may still be about to start its work
                if not len(tasks) and not jobs.worker.running and not await jobs.queue.depth():
                    return


def _settings_env(settings: Settings) -> dict[str, str]:
    env = {
        "OPENAI_BASE_URL": settings.openai_base_url or "",
        "OPENAI_API_KEY": settings.openai_api_key or "",
        "OPENAI_MODEL": settings.openai_model,
        "OPENAI_MAX_RETRIES": str(settings.openai_max_retries),
        "OPENAI_TIMEOUT": str(settings.openai_timeout),
        "MAX_INPUT_TOKENS": str(settings.max_input_tokens),
        "SUMMARY_LANGUAGE": settings.summary_language,
        "DATABASE_URL": settings.database_url,
        "FETCH_ALLOW_HOSTS": ",".join(settings.fetch_allow_hosts),
        "FETCH_TIMEOUT": str(settings.fetch_timeout),
        "SLACK_BOT_TOKEN": settings.slack_bot_token or "",
        "SLACK_APP_TOKEN": settings.slack_app_token or "",
        "SLACK_SIGNING_SECRET": settings.slack_signing_secret or "",
        "SLACK_API_URL": settings.slack_api_url,
        "MAX_LINKS_PER_MESSAGE": str(settings.max_links_per_message),
        "LOG_FORMAT": settings.log_format,
    }
    return {k: v for k, v in env.items() if v}


MakeSlackApp = Callable[..., Awaitable[SlackApp]]


@pytest.fixture
async def make_slack_app(
    slack_stub: SlackStub, make_settings: Callable[..., Settings]
) -> AsyncIterator[MakeSlackApp]:
    """`await make_slack_app(**ENV)`: a running app with extra settings; stopped after the test."""
    started: list[SlackApp] = []

    async def build(**env: str) -> SlackApp:
        settings = make_settings(SLACK_API_URL=slack_stub.api_url, **env)
        app = await SlackApp(settings, slack_stub).start()
        started.append(app)
        return app

    yield build
    for app in started:
        await app.stop()


@pytest.fixture
async def slack_app(make_slack_app: MakeSlackApp) -> SlackApp:
    """The app with default test settings (SQLite in tmp_path, OpenAI stand-in, Slack stand-in)."""
    return await make_slack_app()


__all__ = [
    "BOT_USER_ID", "TEAM_ID", "MakeSlackApp", "SlackApp", "make_slack_app", "mention", "message",
    "message_action", "next_ts", "reaction", "slack_app",
]
