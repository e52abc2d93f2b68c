"""The running Slack app over signed HTTP: mentions, passive summaries, DMs, idempotency, failures, limits."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from ringkas.storage.tables import SlackRequestRow
from tests.conftest import SIGNING_SECRET
from tests.slack_app import BOT_USER_ID, MakeSlackApp, SlackApp, mention, message, next_ts
from tests.support.openai_stub import OpenAIStub, fake_for_schema, summary_tldrs, summary_with
from tests.support.slack_signing import event_body, signed_headers
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub

ARTICLE = (Path(__file__).parent / "fixtures" / "slack_article.html").read_text(encoding="utf-8")


def article_page(web: WebStub, path: str = "/story", title: str | None = None) -> str:
    body = ARTICLE if title is None else ARTICLE.replace("Open-weight model tops coding benchmark", title)
    return web.add(path, body)


def summary_responder(**fields: Any):  # type: ignore[no-untyped-def]
    """A model stand-in answering summary requests with `fields` added to a summary of the page."""

    def respond(body: dict[str, Any]) -> str:
        fmt = body.get("response_format") or {}
        schema = fmt["json_schema"]["schema"] if fmt.get("type") == "json_schema" else {}
        if "tldr" in (schema.get("properties") or {}):
            # Added to a real summary of the page: pure junk would be stopped by the answer checks.
            return json.dumps(summary_with(body, schema, **fields))
        data = fake_for_schema(schema) if schema else {}
        if not isinstance(data, dict) or ("tldr" not in data and fmt.get("type") != "json_schema"):
            data = {"title": "t", "tldr": "stub", "key_points": ["a", "b", "c"], "why_it_matters": "w"}
        data.update(fields)
        return json.dumps(data)

    return respond


def updates(stub: SlackStub) -> list[dict[str, Any]]:
    """The results the bot posted (summaries, failures): new messages, never edits of a placeholder."""
    assert stub.calls_to("chat.update") == [], "results are posted as new messages, not edits"
    return [c.args for c in stub.calls_to("chat.postMessage")]


def all_text(args: dict[str, Any]) -> str:
    return json.dumps(args.get("blocks", [])) + "\n" + str(args.get("text", ""))


async def request_rows(app: SlackApp) -> list[SlackRequestRow]:
    async with app.runtime.core.db.session() as session:
        return list(await session.scalars(select(SlackRequestRow).order_by(SlackRequestRow.id)))


# --- HTTP surface ---------------------------------------------------------------------------------


async def test_forged_and_stale_signatures_are_rejected(slack_app: SlackApp, slack_stub: SlackStub) -> None:
    body = event_body(mention("<@UBOT> <https://example.test/a>"))
    forged = signed_headers("not-the-secret", body, content_type="application/json")
    assert (await slack_app.post("/slack/events", body, forged)).status == 401
    stale = signed_headers(SIGNING_SECRET, body, content_type="application/json",
                           timestamp=int(time.time()) - 10 * 60)
    assert (await slack_app.post("/slack/events", body, stale)).status == 401
    unsigned = {"Content-Type": "application/json"}
    assert (await slack_app.post("/slack/events", body, unsigned)).status == 401
    await slack_app.settle()
    assert slack_stub.calls_to("chat.postMessage") == []


async def test_url_verification_challenge(slack_app: SlackApp) -> None:
    body = json.dumps({"token": "t", "challenge": "chal-123", "type": "url_verification"})
    reply = await slack_app.post("/slack/events", body,
                                 signed_headers(SIGNING_SECRET, body, content_type="application/json"))
    assert reply.status == 200
    assert "chal-123" in reply.text


async def test_healthz_reports_database(slack_app: SlackApp) -> None:
    assert (await slack_app.get("/healthz")).status == 200
    db = slack_app.runtime.core.db
    working = db.engine
    # Point the app at a database server that is not there (a closed local port): not healthy.
    db.engine = create_async_engine("postgresql+psycopg://postgres@127.0.0.1:9/none",
                                    connect_args={"connect_timeout": 2})
    try:
        reply = await slack_app.get("/healthz")
        assert reply.status == 503
        assert "database" in reply.text
    finally:
        await db.engine.dispose()
        db.engine = working
    assert (await slack_app.get("/healthz")).status == 200


# --- mentions -------------------------------------------------------------------------------------


async def test_mention_with_one_link(slack_app: SlackApp, slack_stub: SlackStub, web: WebStub,
                                     openai_stub: OpenAIStub) -> None:
    url = article_page(web)
    event = mention(f"<@{BOT_USER_ID}> what about this? <{url}|a story>")
    assert await slack_app.event(event) == 200
    await slack_app.settle()

    # No placeholder: the only message is the summary, and its `text` (the notification) is the TL;DR.
    [update] = updates(slack_stub)
    assert update["thread_ts"] == event["ts"] and update["channel"] == "C0001"
    assert "Reading" not in all_text(update)
    blocks = update["blocks"]
    text = all_text(update)
    assert "Open-weight model tops coding benchmark" in text
    assert url in blocks[0]["text"]["text"]  # the title links to the source
    assert "AI Wire" in text and "Rina Hartono" in text and "20 November 2026" in text and "min read" in text
    assert "TL;DR" in text and "Key points" in text and "Why it matters" in text
    assert "gpt-4.1-mini" in json.dumps(blocks[-1]) and "English (en)" in json.dumps(blocks[-1])
    assert update["text"] in summary_tldrs(openai_stub)  # the notification preview is the TL;DR
    assert len(openai_stub.requests) >= 1
    [row] = await request_rows(slack_app)
    assert (row.kind, row.state, row.reply_ts) == ("mention", "done", slack_stub.posted_ts(0))
    # The thread now belongs to the article (follow-up questions find it).
    state = slack_app.deps.state
    assert await state.articles_in_thread("T0001", "C0001", event["ts"]) == [row.article_id]


async def test_mention_with_three_links_in_a_thread(slack_app: SlackApp, slack_stub: SlackStub,
                                                   web: WebStub, openai_stub: OpenAIStub) -> None:
    urls = [article_page(web, f"/s{i}", title=f"Story number {i}") for i in range(3)]
    root = next_ts()
    event = mention(f"<@{BOT_USER_ID}> " + " ".join(f"<{u}>" for u in urls), thread_ts=root)
    assert await slack_app.event(event) == 200
    await slack_app.settle()
    done = updates(slack_stub)
    assert len(done) == 3  # one reply per link (see handlers/summaries.py for why)
    assert all(p["thread_ts"] == root for p in done)  # replies go to the mention's thread
    for i in range(3):
        [holder] = [u for u in done if f"Story number {i}" in all_text(u)]
        assert holder["text"] in summary_tldrs(openai_stub)  # each notification previews its own TL;DR


async def test_links_beyond_the_cap_are_skipped_and_told(make_slack_app: MakeSlackApp, slack_stub: SlackStub,
                                                         web: WebStub) -> None:
    app = await make_slack_app(MAX_LINKS_PER_MESSAGE="2")
    urls = [article_page(web, f"/c{i}") for i in range(4)]
    await app.event(mention(f"<@{BOT_USER_ID}> " + " ".join(f"<{u}>" for u in urls)))
    await app.settle()
    posted = slack_stub.posted()
    assert len(posted) == 3  # two summaries + the note
    [note] = [p for p in posted if "up to 2 links" in p["text"]]
    assert "skipped 2" in note["text"]
    assert web.hits["/c2"] == 0 and web.hits["/c3"] == 0


async def test_mention_without_link_gets_help(slack_app: SlackApp, slack_stub: SlackStub,
                                              openai_stub: OpenAIStub) -> None:
    event = mention(f"<@{BOT_USER_ID}> hello there")
    await slack_app.event(event)
    await slack_app.event(event, retry_num=1)  # a redelivery does not repeat the help
    await slack_app.settle()
    [help_msg] = slack_stub.posted()
    assert help_msg["thread_ts"] == event["ts"]
    assert "/summarize" in help_msg["text"] or "summarize" in json.dumps(help_msg["blocks"])
    assert openai_stub.requests == []


# --- passive summaries, ignored messages ----------------------------------------------------------


async def test_plain_message_is_summarized_unless_turned_off(slack_app: SlackApp, slack_stub: SlackStub,
                                                            web: WebStub) -> None:
    url = article_page(web)
    first = message(f"look <{url}>")
    await slack_app.event(first)
    await slack_app.settle()
    assert [p["thread_ts"] for p in slack_stub.posted()] == [first["ts"]]
    assert len(updates(slack_stub)) == 1

    reply = await slack_app.command("auto off")
    assert reply.status == 200
    await slack_app.settle()
    await slack_app.event(message(f"again <{url}>"))
    await slack_app.settle()
    assert len(slack_stub.posted()) == 1  # nothing new

    # A mention still works with passive summaries off.
    await slack_app.event(mention(f"<@{BOT_USER_ID}> <{url}>"))
    await slack_app.settle()
    assert len(slack_stub.posted()) == 2

    await slack_app.command("auto on")
    await slack_app.settle()
    await slack_app.event(message(f"third <{url}>"))
    await slack_app.settle()
    assert len(slack_stub.posted()) == 3


async def test_bot_own_edited_deleted_and_other_messages_are_ignored(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    url = article_page(web)
    ts = next_ts()
    ignored = [
        message(f"<{url}>", bot_id="B999", user="U999"),
        message(f"<{url}>", subtype="bot_message", bot_id="B999", user=None),
        message(f"<{url}>", user=BOT_USER_ID),
        message("", subtype="message_changed", user=None,
                message={"type": "message", "user": "U0001", "text": f"edited <{url}>", "ts": ts},
                previous_message={"type": "message", "user": "U0001", "text": "old", "ts": ts}),
        message("", subtype="message_deleted", user=None, deleted_ts=ts),
        message(f"<@U0001> has joined the channel <{url}>", subtype="channel_join"),
        message("no link at all, just chatting"),
    ]
    for event in ignored:
        assert await slack_app.event(event) == 200
    await slack_app.settle()
    assert slack_stub.posted() == []
    assert web.hits["/story"] == 0


async def test_mention_delivered_as_mention_message_and_preview_edit_gets_one_reply(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub, openai_stub: OpenAIStub
) -> None:
    url = article_page(web)
    ts = next_ts()
    text = f"<@{BOT_USER_ID}> <{url}>"
    await slack_app.event(mention(text, ts=ts))
    await slack_app.event(message(text, ts=ts))
    # Slack adds the link preview by editing the message.
    await slack_app.event(message("", subtype="message_changed", user=None, hidden=True,
                                  message={"type": "message", "user": "U0001", "text": text, "ts": ts,
                                           "attachments": [{"title": "preview", "from_url": url}]}))
    # And the plain message path on its own (e.g. delivered first) claims the same link key.
    await slack_app.settle()
    assert len(slack_stub.posted()) == 1
    assert len(updates(slack_stub)) == 1


async def test_same_links_from_both_events_without_mention_dedupe(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    # Both paths race for the same (channel, ts, link): claim() lets exactly one through.
    url = article_page(web)
    ts = next_ts()
    event = message(f"<{url}>", ts=ts)
    await slack_app.event(event)
    await slack_app.event(mention(f"<{url}>", ts=ts))  # as if Slack also sent app_mention
    await slack_app.settle()
    assert len(slack_stub.posted()) == 1


async def test_retried_delivery_never_replies_twice(slack_app: SlackApp, slack_stub: SlackStub,
                                                   web: WebStub) -> None:
    url = article_page(web)
    event = mention(f"<@{BOT_USER_ID}> <{url}>")
    await slack_app.event(event, event_id="EvRetry1")
    await slack_app.settle()
    for attempt in (1, 2, 3):
        assert await slack_app.event(event, event_id="EvRetry1", retry_num=attempt) == 200
    await slack_app.settle()
    assert len(slack_stub.posted()) == 1
    assert len(updates(slack_stub)) == 1


async def test_direct_message_with_link(slack_app: SlackApp, slack_stub: SlackStub, web: WebStub) -> None:
    url = article_page(web)
    dm = message(f"<{url}>", channel="D0001", channel_type="im")
    await slack_app.event(dm)
    await slack_app.settle()
    [update] = updates(slack_stub)
    assert update["channel"] == "D0001" and "thread_ts" not in update  # top-level in a DM
    assert "Open-weight model" in all_text(update)
    [row] = await request_rows(slack_app)
    assert row.kind == "dm" and row.state == "done"
    # Replies in the summary's own thread are follow-up questions about the article.
    ts = slack_stub.posted_ts(0)
    assert await slack_app.deps.state.articles_in_thread("T0001", "D0001", ts) == [row.article_id]


async def test_direct_message_without_link_gets_help(slack_app: SlackApp, slack_stub: SlackStub) -> None:
    await slack_app.event(message("hi, what can you do?", channel="D0002", channel_type="im"))
    await slack_app.settle()
    [help_msg] = slack_stub.posted()
    assert help_msg["channel"] == "D0002" and "summarize" in help_msg["text"]


# --- failures -------------------------------------------------------------------------------------


async def test_failures_are_told_in_the_thread(
    make_slack_app: MakeSlackApp, slack_stub: SlackStub, web: WebStub, openai_stub: OpenAIStub
) -> None:
    app = await make_slack_app(OPENAI_MAX_RETRIES="1")
    good = article_page(web)
    blocked = "http://127.0.0.2/private"  # loopback, but not in FETCH_ALLOW_HOSTS
    missing = web.url("/missing")
    event = mention(f"<@{BOT_USER_ID}> <{blocked}> <{missing}> <{good}>")
    openai_stub.fail_next(2, status=500)  # the first try and the one retry
    await app.event(event)
    await app.settle()
    final = [all_text(u) for u in updates(slack_stub)]
    assert len(final) == 3
    [blocked_text] = [t for t in final if "127.0.0.2" in t]
    [missing_text] = [t for t in final if "404" in t]
    [model_text] = [t for t in final if "Open-weight model" in t]
    assert "private or internal address" in blocked_text
    assert "couldn't summarize" in missing_text
    # A model outage is waited out (issue 14): the answer comes late, not as an error reply.
    assert "Open-weight model tops coding benchmark" in model_text
    # (A mention's thread shows a status while working, cleared at the end; no reaction is needed there.)
    statuses = [c.args["status"] for c in slack_stub.calls_to("assistant.threads.setStatus")]
    assert (not statuses or statuses[-1] == "") and _reactions(slack_stub, event["ts"]) == []
    rows = await request_rows(app)
    assert [r.state for r in rows] == ["failed", "failed", "done"]
    assert rows[0].error_code == "blocked_address" and rows[2].error_code is None
    assert len(openai_stub.requests) == 3  # one try + one retry, then again once the job came back
    # The app is still fine: the same link works once the model is back.
    await app.event(mention(f"<@{BOT_USER_ID}> <{good}>"))
    await app.settle()
    assert "Open-weight model" in all_text(updates(slack_stub)[-1])


async def test_slack_rate_limit_is_retried(slack_app: SlackApp, slack_stub: SlackStub, web: WebStub) -> None:
    url = article_page(web)
    slack_stub.rate_limit_next("chat.postMessage", 1, retry_after=1)
    await slack_app.event(mention(f"<@{BOT_USER_ID}> <{url}>"))
    await slack_app.settle()
    assert len(slack_stub.calls_to("chat.postMessage")) == 2  # 429, then the retry
    assert "Open-weight model" in all_text(slack_stub.calls_to("chat.postMessage")[-1].args)
    [row] = await request_rows(slack_app)
    assert row.state == "done"


# --- rendering through the app --------------------------------------------------------------------


async def test_model_output_cannot_ping_or_inject(slack_app: SlackApp, slack_stub: SlackStub, web: WebStub,
                                                 openai_stub: OpenAIStub) -> None:
    openai_stub.responder = summary_responder(
        tldr="<!channel> @here Big news <https://evil.test|click me>",
        key_points=["@everyone look", "<@U0BADBAD> wins", "fine point"],
        why_it_matters="<!subteam^S123> matters",
    )
    url = article_page(web)
    await slack_app.event(mention(f"<@{BOT_USER_ID}> <{url}>"))
    await slack_app.settle()
    [update] = updates(slack_stub)
    text = all_text(update)
    for bad in ("<!channel>", "@here", "@everyone", "<@U0BADBAD>", "<https://evil.test", "<!subteam"):
        assert bad not in text
    assert "&lt;!channel&gt;" in text


async def test_huge_summary_fits_slack_limits(slack_app: SlackApp, slack_stub: SlackStub, web: WebStub,
                                             openai_stub: OpenAIStub) -> None:
    openai_stub.responder = summary_responder(
        title="T" * 1000,
        tldr="x" * 5000,
        key_points=[f"point {i} " + "y" * 8000 for i in range(5)],
        why_it_matters="z&" * 6000,
    )
    url = article_page(web, title="A" * 400)
    await slack_app.event(mention(f"<@{BOT_USER_ID}> <{url}>"))
    await slack_app.settle()
    [update] = updates(slack_stub)
    blocks = update["blocks"]
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    assert len(update["text"]) <= 40_000
    assert "point 4" in json.dumps(blocks)  # every point is there, shortened


async def test_same_article_shared_twice_costs_one_model_call(slack_app: SlackApp, slack_stub: SlackStub,
                                                             web: WebStub, openai_stub: OpenAIStub) -> None:
    url = article_page(web)
    await slack_app.event(message(f"<{url}>"))
    await slack_app.settle()
    calls = len(openai_stub.requests)
    assert calls >= 1
    # Shared again elsewhere, with a tracking parameter.
    await slack_app.event(message(f"<{url}?utm_source=newsletter>", channel="C0002"))
    await slack_app.settle()
    assert len(openai_stub.requests) == calls
    second = updates(slack_stub)[-1]
    assert second["channel"] == "C0002"
    assert "cached" in json.dumps(second["blocks"][-1])


# --- Socket Mode ----------------------------------------------------------------------------------


async def test_socket_mode_acks_and_answers(slack_stub: SlackStub, make_settings, web: WebStub) -> None:
    from bot import build_slack_app, start_socket_mode

    settings = make_settings(SLACK_API_URL=slack_stub.api_url, SLACK_APP_TOKEN="xapp-1-test",
                             SLACK_SIGNING_SECRET="")
    runtime = await build_slack_app(settings, start_scheduler=False)
    handler = await start_socket_mode(runtime, "xapp-1-test")
    try:
        url = article_page(web)
        event = mention(f"<@{BOT_USER_ID}> <{url}>")
        envelope = {
            "envelope_id": "env-1",
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": json.loads(event_body(event)),
        }
        await slack_stub.socket_send(envelope)
        await slack_stub.wait_for("chat.postMessage", 1, timeout=30)
        assert any(a.get("envelope_id") == "env-1" for a in slack_stub.socket_acks)
        open_calls = slack_stub.calls_to("apps.connections.open")
        assert open_calls and "xapp-1-test" in open_calls[0].headers.get("authorization", "")
        assert "Open-weight model" in all_text(slack_stub.calls_to("chat.postMessage")[0].args)
    finally:
        await handler.close_async()  # type: ignore[attr-defined]
        await runtime.aclose(grace=10)


async def test_mention_in_a_summary_thread_is_a_question_not_help(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub, openai_stub: OpenAIStub
) -> None:
    url = article_page(web)
    root = mention(f"<@{BOT_USER_ID}> <{url}>")
    await slack_app.event(root)
    await slack_app.settle()
    model_calls = len(openai_stub.requests)
    question = mention(f"<@{BOT_USER_ID}> how many parameters does the model have?", thread_ts=root["ts"])
    await slack_app.event(question)
    await slack_app.event(question, retry_num=1)
    await slack_app.settle()
    replies = slack_stub.posted()[1:]
    assert len(replies) == 1  # one answer, even with the redelivery
    assert replies[0]["thread_ts"] == root["ts"]
    assert "Mention me with a link" not in replies[0]["text"]  # not the help message
    assert len(openai_stub.requests) > model_calls  # the question went to the model


def _reactions(stub: SlackStub, ts: str) -> list[tuple[str, str]]:
    return [(c.method, c.args.get("name", "")) for c in stub.calls
            if c.method in {"reactions.add", "reactions.remove"} and c.args.get("timestamp") == ts]


def _status_cleared(stub: SlackStub) -> bool:
    statuses = [c.args.get("status") for c in stub.calls_to("assistant.threads.setStatus")]
    return len(statuses) >= 2 and statuses[-1] == ""


async def test_progress_is_a_thread_status_on_mentions_and_no_placeholder(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub, openai_stub: OpenAIStub
) -> None:
    url = web.add("/slowish", ARTICLE, delay=1)
    event = mention(f"<@{BOT_USER_ID}> <{url}>")
    await slack_app.event(event)
    await slack_app.settle()
    first, *_later = slack_stub.calls_to("assistant.threads.setStatus")
    assert first.args["thread_ts"] == event["ts"] and "Reading 127.0.0.1" in first.args["status"]
    [summary] = updates(slack_stub)  # the only message is the summary itself
    assert summary["text"] in summary_tldrs(openai_stub) and "Open-weight model" in all_text(summary)
    assert _reactions(slack_stub, event["ts"]) == []  # the status was allowed: no reaction needed


async def test_progress_falls_back_to_reactions_where_status_is_refused(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub, openai_stub: OpenAIStub
) -> None:
    slack_stub.overrides["assistant.threads.setStatus"] = lambda args: {"ok": False, "error": "not_allowed"}
    url = web.add("/slowish", ARTICLE, delay=1)
    passive = message(f"look <{url}>")
    await slack_app.event(passive)
    await slack_app.settle()
    assert _reactions(slack_stub, passive["ts"]) == [
        ("reactions.add", "eyes"), ("reactions.remove", "eyes"), ("reactions.add", "white_check_mark")]
    [summary] = updates(slack_stub)
    assert summary["thread_ts"] == passive["ts"] and summary["text"] in summary_tldrs(openai_stub)
    # A failed link ends with ⚠️.
    bad = message(f"and <{web.url('/missing')}>")
    await slack_app.event(bad)
    await slack_app.settle()
    assert _reactions(slack_stub, bad["ts"])[-1:] in ([("reactions.add", "warning")], [])  # [] if quick


async def test_a_cached_summary_appears_at_once_without_progress(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    url = article_page(web)
    await slack_app.event(message(f"<{url}>"))
    await slack_app.settle()
    before = len(slack_stub.calls)
    again = message(f"again: <{url}>")
    await slack_app.event(again)
    await slack_app.settle()
    later = [c.method for c in slack_stub.calls[before:]]
    assert later == ["chat.postMessage"]  # no status, no reaction: straight to the summary
    assert "cached" in all_text(slack_stub.posted()[-1])


# --- review round: hostile inputs, outages, start-up ----------------------------------------------


async def test_slackbot_and_code_block_links_are_not_summarized(slack_app: SlackApp, slack_stub: SlackStub,
                                                               web: WebStub) -> None:
    url = article_page(web)
    await slack_app.event(message(f"Reminder: read <{url}>", user="USLACKBOT"))
    await slack_app.event(message(f"to test:\n```curl -s <{url}>```"))
    await slack_app.event(message(f"run `curl {url}` first"))
    await slack_app.settle()
    assert slack_stub.posted() == []
    assert web.hits["/story"] == 0


async def test_database_outage_delays_links_and_questions_until_it_is_back(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    url = article_page(web)
    other = article_page(web, "/other", title="Another story")
    db = slack_app.runtime.core.db
    working = db.engine
    db.engine = create_async_engine("postgresql+psycopg://postgres@127.0.0.1:9/none",
                                    connect_args={"connect_timeout": 2})
    db.sessions.configure(bind=db.engine)
    try:
        link_mention = mention(f"<@{BOT_USER_ID}> <{url}>")
        assert await slack_app.event(link_mention) == 200
        help_mention = mention(f"<@{BOT_USER_ID}> hello?")
        assert await slack_app.event(help_mention) == 200
        passive = message(f"passive <{other}>")
        assert await slack_app.event(passive) == 200
        await asyncio.sleep(1.0)
        assert slack_stub.posted() == []  # nothing answered (nor an error told) while the database is out
    finally:
        await db.engine.dispose()
        db.engine = working
        db.sessions.configure(bind=working)
    # Everything was recorded once the database was back: the links are summarized, the mention answered.
    await slack_app.settle()
    posted = slack_stub.posted()
    expected = [link_mention["ts"], passive["ts"], help_mention["ts"]]
    assert sorted(p["thread_ts"] for p in posted) == sorted(expected)
    assert not any("went wrong on my side" in p["text"] for p in posted)
    finals = " ".join(all_text(u) for u in updates(slack_stub))
    assert "Open-weight model tops coding benchmark" in finals and "Another story" in finals


async def test_start_checks_the_bot_token_once(make_settings, slack_stub: SlackStub, web: WebStub) -> None:
    import pytest

    from bot import build_slack_app
    from ringkas.errors import ConfigError

    slack_stub.overrides["auth.test"] = lambda args: {"ok": False, "error": "invalid_auth"}
    with pytest.raises(ConfigError) as refused:
        await build_slack_app(make_settings(SLACK_API_URL=slack_stub.api_url), start_scheduler=False)
    assert "SLACK_BOT_TOKEN" in refused.value.user_message and "invalid_auth" in refused.value.user_message
    assert "xoxb-test-token" not in refused.value.user_message

    del slack_stub.overrides["auth.test"]
    app = await SlackApp(make_settings(SLACK_API_URL=slack_stub.api_url), slack_stub).start()
    try:
        url = article_page(web)
        await app.event(mention(f"<@{BOT_USER_ID}> <{url}>"))
        await app.event(message(f"<{url}>", channel="C0002"))
        await app.settle()
        assert len(updates(slack_stub)) == 2
        # The answer from start-up serves every request: none waits for its own auth.test.
        assert len(slack_stub.calls_to("auth.test")) == 2  # the refused start, then this one
    finally:
        await app.stop()


async def test_start_survives_slack_being_unreachable(make_settings, slack_stub: SlackStub) -> None:
    from bot import build_slack_app

    settings = make_settings(SLACK_API_URL="http://127.0.0.1:9/api/")  # nothing listens there
    runtime = await build_slack_app(settings, start_scheduler=False)
    await runtime.aclose(grace=1)


async def test_work_cut_off_by_shutdown_is_finished_by_the_next_start(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    url = web.add("/slow", ARTICLE, delay=2)
    await slack_app.event(mention(f"<@{BOT_USER_ID}> <{url}>"))
    await slack_stub.wait_for("assistant.threads.setStatus", 1)
    await slack_app.deps.jobs.worker.stop(0.2)  # what SIGTERM does, with a grace shorter than the work
    assert updates(slack_stub) == []
    await slack_app.restart()
    await slack_app.settle()
    [update] = updates(slack_stub)  # the summary, posted once, by the next run of the job
    assert "Open-weight model" in all_text(update)
    assert len(slack_stub.posted()) == 1
    [row] = await request_rows(slack_app)
    assert (row.state, row.error_code) == ("done", None)


async def test_a_job_sent_back_by_a_model_outage_leaves_no_eyes_behind(
    make_slack_app: MakeSlackApp, slack_stub: SlackStub, web: WebStub, openai_stub: OpenAIStub
) -> None:
    """The first run shows 👀 and hits an outage; the run that finishes may be quick and show nothing of
    its own: the 👀 of the first run must not stay on the person's message."""
    app = await make_slack_app(OPENAI_MAX_RETRIES="0")
    slack_stub.overrides["assistant.threads.setStatus"] = lambda args: {"ok": False, "error": "not_allowed"}
    openai_stub.delay = 0.6  # slow enough that the first run shows progress
    openai_stub.fail_next(1, status=500)
    passive = message(f"look <{article_page(web)}>")
    await app.event(passive)
    await app.settle()
    assert "Open-weight model" in all_text(updates(slack_stub)[-1])
    marks = _reactions(slack_stub, passive["ts"])
    assert ("reactions.add", "eyes") in marks
    added = [name for method, name in marks if method == "reactions.add"]
    removed = [name for method, name in marks if method == "reactions.remove"]
    assert added.count("eyes") == removed.count("eyes")  # every 👀 taken down again
