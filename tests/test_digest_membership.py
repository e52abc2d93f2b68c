"""`/digest subscribe` where the bot cannot post is refused at once; a scheduled digest Slack refuses for good
pauses the subscription and tells the person who subscribed; a day without any digest is told in the
channel. Through the running Slack app (signed slash commands) and the Slack stand-in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ringkas.digest.store import MAX_ATTEMPTS
from tests.test_digest_support import digest_responder, recent_feed

TEAM, CHANNEL, USER = "T0001", "C0001", "U0001"


def info(**channel: Any):  # type: ignore[no-untyped-def]
    return lambda args: {"ok": True, "channel": {"id": args.get("channel"), **channel}}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (info(is_member=False, is_channel=True), "/invite <@"),
        (lambda args: {"ok": False, "error": "channel_not_found"}, "/invite <@"),
        (info(is_member=False, is_archived=True), "archived"),
    ],
)
async def test_subscribe_where_the_bot_cannot_post_is_refused(
    slack_app, slack_stub, answer, expected
) -> None:
    slack_stub.overrides["conversations.info"] = answer
    await slack_app.command("subscribe 07:30", command="/digest")
    await slack_app.settle()
    _, body = slack_stub.responses[-1]
    assert body["response_type"] == "ephemeral" and expected in body["text"]
    assert await slack_app.deps.digests.store.subscription(TEAM, CHANNEL) is None
    assert slack_stub.calls_to("conversations.info")[0].args["channel"] == CHANNEL


async def test_subscribe_goes_ahead_when_slack_cannot_tell(slack_app, slack_stub) -> None:
    slack_stub.overrides["conversations.info"] = lambda args: {"ok": False, "error": "missing_scope"}
    await slack_app.command("subscribe 07:30", command="/digest")
    await slack_app.settle()
    assert slack_stub.responses[-1][1]["response_type"] == "in_channel"
    assert await slack_app.deps.digests.store.subscription(TEAM, CHANNEL) is not None


def refuse_channel(error: str):  # type: ignore[no-untyped-def]
    def answer(args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel") == CHANNEL:
            return {"ok": False, "error": error}
        return {"ok": True, "channel": "D0001", "ts": "1700000001.000001"}
    return answer


@pytest.mark.parametrize("error", ["not_in_channel", "channel_not_found", "is_archived"])
async def test_a_refused_scheduled_digest_pauses_and_tells_the_subscriber(
    make_slack_app, slack_stub, openai_stub, web, error
) -> None:
    openai_stub.responder = digest_responder
    feed = recent_feed(web, "/ai.xml", "AI Daily", ["Anthropic releases Claude 6"], now=datetime.now(UTC))
    app = await make_slack_app(DIGEST_FEEDS=feed)
    await app.command("subscribe 07:30 Asia/Jakarta", command="/digest")
    await app.settle()
    scheduler = app.deps.scheduler
    slack_stub.overrides["chat.postMessage"] = refuse_channel(error)
    result = await scheduler.fire(TEAM, CHANNEL)
    assert result is not None and result.status == "failed"
    subscription = await app.deps.digests.store.subscription(TEAM, CHANNEL)
    assert subscription is not None and subscription.paused == error
    dms = [c.args for c in slack_stub.calls_to("chat.postMessage") if c.args.get("channel") == USER]
    assert len(dms) == 1 and "paused" in dms[0]["text"] and f"<#{CHANNEL}>" in dms[0]["text"]
    assert "/digest subscribe" in dms[0]["text"]
    # paused: not due, not fired, and /digest status says so
    assert await app.deps.digests.due(grace=None) == []
    assert await scheduler.fire(TEAM, CHANNEL) is None
    await app.command("status", command="/digest")
    await app.settle()
    assert "*paused*" in slack_stub.responses[-1][1]["text"] and error in slack_stub.responses[-1][1]["text"]
    # invited again: subscribing resumes it
    del slack_stub.overrides["chat.postMessage"]
    await app.command("subscribe 07:30 Asia/Jakarta", command="/digest")
    await app.settle()
    subscription = await app.deps.digests.store.subscription(TEAM, CHANNEL)
    assert subscription is not None and subscription.paused is None


async def test_a_passing_refusal_does_not_pause(make_slack_app, slack_stub, openai_stub, web) -> None:
    openai_stub.responder = digest_responder
    feed = recent_feed(web, "/ai.xml", "AI Daily", ["Anthropic releases Claude 6"], now=datetime.now(UTC))
    app = await make_slack_app(DIGEST_FEEDS=feed)
    await app.command("subscribe 07:30", command="/digest")
    await app.settle()
    slack_stub.overrides["chat.postMessage"] = refuse_channel("msg_too_long")
    assert (await app.deps.scheduler.fire(TEAM, CHANNEL)).status == "failed"
    assert (await app.deps.digests.store.subscription(TEAM, CHANNEL)).paused is None


async def test_no_usable_story_at_all_is_told_in_the_channel(make_slack_app, slack_stub, web) -> None:
    app = await make_slack_app(DIGEST_FEEDS=web.url("/down.xml"))
    await app.command("subscribe 07:30", command="/digest")
    await app.settle()
    for attempt in range(MAX_ATTEMPTS):
        result = await app.deps.scheduler.fire(TEAM, CHANNEL)
        assert result.status == "failed"
        told = [c.args for c in slack_stub.calls_to("chat.postMessage") if c.args.get("channel") == CHANNEL]
        assert len(told) == (1 if attempt == MAX_ATTEMPTS - 1 else 0)  # once, after the last try
    assert "No AI-news digest today" in told[0]["text"] and "news sources" in told[0]["text"]
