"""Slack refusing what the bot posts, and shutdown in the middle of an answer: every request a person
made still ends in a visible reply."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from handlers.digest import make_poster
from tests.slack_app import SlackApp, mention, next_ts
from tests.support.openai_stub import OpenAIStub
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_ask import model, summarize_here
from tests.test_digest_slack import _digest
from tests.test_slack_events import article_page


def refuse_blocks(stub: SlackStub, method: str, error: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Slack refusing every `method` call that carries blocks, except the bot's progress message."""

    def answer(args: dict[str, Any]) -> dict[str, Any]:
        if args.get("blocks") and "Reading" not in json.dumps(args):
            return {"ok": False, "error": error}
        return stub._answer(method, args)

    return answer


@pytest.mark.parametrize("error", ["invalid_blocks", "msg_too_long"])
async def test_a_summary_slack_refuses_as_blocks_arrives_as_plain_text(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub, error: str
) -> None:
    url = article_page(web)
    slack_stub.overrides["chat.postMessage"] = refuse_blocks(slack_stub, "chat.postMessage", error)
    assert await slack_app.event(mention(f"<@UBOT> <{url}>")) == 200
    await slack_app.settle()
    refused, delivered = slack_stub.calls_to("chat.postMessage")
    assert refused.response and not refused.response["ok"]
    args = delivered.args
    assert not args.get("blocks")  # the same words as plain text
    title = "Open-weight model tops coding benchmark"
    assert title in args["text"] and len(args["text"]) > len(title) + 60  # the summary too, not only a title
    assert slack_stub.calls_to("chat.update") == []


async def test_summarize_via_response_url_falls_back_to_plain_text(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    """Bot not in the channel: /summarize answers through response_url, which Slack answers with an
    HTTP status (never an exception); a refused message is sent again as plain text."""
    url = article_page(web)
    slack_stub.overrides["chat.postMessage"] = lambda args: {"ok": False, "error": "not_in_channel"}
    slack_stub.response_answer = lambda body: (
        (400, "invalid_blocks") if body.get("blocks") and "Reading" not in json.dumps(body) else (200, "ok")
    )
    reply = await slack_app.command(url)
    assert reply.status == 200
    await slack_app.settle()
    bodies = [body for _, body in slack_stub.responses]
    kinds = [b.get("response_type") for b in bodies]
    assert kinds[-2:] == ["in_channel", "in_channel"] and kinds[:-2] in ([], ["ephemeral"])
    final = bodies[-1]
    assert not final.get("blocks") and "Open-weight model tops coding benchmark" in final["text"]


async def test_a_thread_answer_slack_refuses_as_blocks_is_posted_as_plain_text(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model(["Bing shows AI answers for about 40 percent of US searches."])
    thread = await summarize_here(slack_app, web)
    before = len(slack_stub.posted())
    slack_stub.refuse_streams = "not_allowed_token_type"  # the answer goes out as one post
    slack_stub.overrides["chat.postMessage"] = (
        lambda args: {"ok": False, "error": "invalid_blocks"} if args.get("blocks")
        else slack_stub._answer("chat.postMessage", args)
    )
    assert await slack_app.event(mention("<@UBOT> how many searches?", thread_ts=thread)) == 200
    await slack_app.settle()
    answers = [c for c in slack_stub.calls_to("chat.postMessage")[before:] if c.response and c.response["ok"]]
    assert len(answers) == 1
    assert "40 percent" in answers[0].args["text"] and answers[0].args["thread_ts"] == thread
    assert "went wrong" not in answers[0].args["text"]


async def test_a_digest_slack_refuses_as_blocks_is_posted_as_plain_text(slack_stub: SlackStub) -> None:
    slack_stub.overrides["chat.postMessage"] = (
        lambda args: {"ok": False, "error": "invalid_blocks"} if args.get("blocks")
        else slack_stub._answer("chat.postMessage", args)
    )
    client = AsyncWebClient(token="xoxb-test", base_url=slack_stub.api_url)
    ts = await make_poster(client, None)("T0001", "C0001", _digest(20))
    delivered = [c.args for c in slack_stub.calls_to("chat.postMessage") if c.response and c.response["ok"]]
    assert ts and len(delivered) >= 2  # the digest and its continuation in the thread
    assert "Story 0" in delivered[0]["text"] and "https://n.example/0" in delivered[0]["text"]
    assert all(not d.get("blocks") for d in delivered)
    assert all(d["thread_ts"] == ts for d in delivered[1:])
    assert any("Story 19" in d["text"] for d in delivered)


async def test_a_question_cut_off_by_shutdown_is_answered_after_the_restart(
    slack_app: SlackApp, slack_stub: SlackStub, openai_stub: OpenAIStub, web: WebStub
) -> None:
    openai_stub.responder = model()
    thread = await summarize_here(slack_app, web)
    before = len(slack_stub.posted())
    openai_stub.delay = 2  # the model is slow; shutdown's grace (0.2 s) runs out first
    ts = next_ts()
    assert await slack_app.event(mention("<@UBOT> how many searches?", ts=ts, thread_ts=thread)) == 200
    async with asyncio.timeout(10):
        while not openai_stub.in_flight:
            await asyncio.sleep(0.02)
    await slack_app.deps.jobs.worker.stop(grace=0.2)  # the job goes back to the queue
    assert slack_stub.posted()[before:] == []  # no "please ask again": it will be answered
    openai_stub.delay = 0
    await slack_app.restart()
    await slack_app.settle()
    answers = [m for m in slack_stub.messages["C0001"]
               if m.get("thread_ts") == thread and "Bing shows AI answers for about 40 percent" in m["text"]]
    assert len(answers) == 1 and "streaming" not in answers[0]  # streamed in, finished, once
    records = await slack_app.deps.state.claim(
        kind="mention", team_id="T0001", channel_id="C0001", message_ts=ts, link="-", user_id="U0001",
    )
    assert records is None  # recorded once: a redelivery is not answered again
