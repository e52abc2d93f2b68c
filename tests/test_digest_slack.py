"""/digest through the running Slack app (signed slash commands), and posting digests to Slack."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from handlers.digest import digest_messages, make_poster
from ringkas.digest.models import Digest, FeedFailure, SourceLink, Story
from ringkas.digest.service import PostFailed
from tests.test_digest_support import digest_responder, recent_feed

CHANNEL = "C0001"


def usage_text(reply) -> str:  # type: ignore[no-untyped-def]
    """The text of a slash command's ack (Bolt sends a bare string as text/plain, a dict as JSON)."""
    assert reply.status == 200
    return reply.json()["text"] if reply.text.startswith("{") else reply.text


async def test_usage_and_bad_input_answer_privately(slack_app) -> None:
    for text in ("", "help"):
        assert "/digest subscribe [HH:MM] [Area/City]" in usage_text(
            await slack_app.command(text, command="/digest")
        )
    reply = usage_text(await slack_app.command("subscribe 25:00", command="/digest"))
    assert "isn't a time I understand" in reply and "/digest subscribe" in reply
    reply = usage_text(await slack_app.command("subscribe 07:30 Mars/Olympus_Mons", command="/digest"))
    assert "isn't a time zone I know" in reply and "Asia/Jakarta" in reply
    assert "I don't know `/digest frobnicate`" in usage_text(
        await slack_app.command("frobnicate", command="/digest")
    )
    assert "takes no arguments" in usage_text(await slack_app.command("status now", command="/digest"))
    await slack_app.settle()
    assert slack_app.stub.responses == [] and slack_app.stub.posted() == []


async def test_subscribe_status_unsubscribe(slack_app, slack_stub) -> None:
    reply = await slack_app.command("subscribe 07:30 asia/jakarta", command="/digest")
    assert reply.status == 200
    await slack_app.settle()
    _name, body = slack_stub.responses[-1]
    assert body["response_type"] == "in_channel"
    assert "*07:30* (Asia/Jakarta)" in body["text"] and "<@U0001>" in body["text"]
    assert "Next digest:" in body["text"] and "(Asia/Jakarta)" in body["text"]
    subscription = await slack_app.deps.digests.store.subscription("T0001", CHANNEL)
    assert (subscription.time, subscription.timezone, subscription.created_by) == (
        "07:30",
        "Asia/Jakarta",
        "U0001",
    )

    await slack_app.deps.state.set_language("T0001", CHANNEL, "id")
    await slack_app.command("status", command="/digest")
    await slack_app.settle()
    _, body = slack_stub.responses[-1]
    assert body["response_type"] == "ephemeral"
    assert "*07:30* (Asia/Jakarta)" in body["text"] and "Indonesian (id)" in body["text"]
    assert "Next digest:" in body["text"]

    await slack_app.command("unsubscribe", command="/digest")
    await slack_app.settle()
    assert slack_stub.responses[-1][1]["response_type"] == "in_channel"
    assert "unsubscribed" in slack_stub.responses[-1][1]["text"]
    assert await slack_app.deps.digests.store.subscription("T0001", CHANNEL) is None
    await slack_app.command("unsubscribe", command="/digest")
    await slack_app.command("status", command="/digest")
    await slack_app.settle()
    texts = [body["text"] for _, body in slack_stub.responses[-2:]]
    assert "isn't subscribed" in texts[0] and "isn't subscribed" in texts[1]


async def test_subscribe_defaults_come_from_settings(make_slack_app, slack_stub) -> None:
    app = await make_slack_app(DIGEST_TIME="06:45", DIGEST_TIMEZONE="Asia/Makassar")
    await app.command("subscribe", command="/digest")
    await app.settle()
    subscription = await app.deps.digests.store.subscription("T0001", CHANNEL)
    assert (subscription.time, subscription.timezone) == ("06:45", "Asia/Makassar")
    await app.command("subscribe WIB 8.15", command="/digest")  # any order, Indonesian zone name and style
    await app.settle()
    subscription = await app.deps.digests.store.subscription("T0001", CHANNEL)
    assert (subscription.time, subscription.timezone) == ("08:15", "Asia/Jakarta")
    # the subscription survives a restart
    await app.restart()
    assert await app.deps.digests.store.subscription("T0001", CHANNEL) is not None


async def test_digest_now_posts_an_escaped_digest_for_everyone(
    make_slack_app, slack_stub, openai_stub, web
) -> None:
    def hostile_model(body):  # type: ignore[no-untyped-def]
        return digest_responder(body).replace("Summary of", "<!everyone> <@U999> Summary of")

    openai_stub.responder = hostile_model
    feed_a = recent_feed(
        web, "/a.xml", "Alpha AI", ["OpenAI releases GPT-6 preview", "<!channel> AI bot leaks @here"]
    )
    feed_b = recent_feed(
        web, "/b.xml", "Beta Tech", ["OpenAI releases GPT-6 preview for developers", "Phone prices rise"]
    )
    app = await make_slack_app(DIGEST_FEEDS=f"{feed_a},{feed_b}")
    reply = await app.command("now", command="/digest")
    assert "Putting together a digest" in usage_text(reply)
    await app.settle()
    posts = slack_stub.posted()
    assert len(posts) == 1
    post = posts[0]
    assert post["channel"] == CHANNEL and "thread_ts" not in post
    blocks = post["blocks"]
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["text"].startswith("AI news digest · ")
    rendered = json.dumps(blocks, ensure_ascii=False) + post["text"]
    for ping in ("<!channel>", "<!everyone>", "<@U999>", "@here"):
        assert ping not in rendered
    assert "&lt;!everyone&gt; &lt;@U999&gt;" in rendered and "leaks @\u2060here" in rendered
    stories = [b for b in blocks if b["type"] == "section" and "Summary of" in b["text"]["text"]]
    assert len(stories) == 2  # GPT-6 from both feeds once; the phone story is not AI news
    gpt = next(b["text"]["text"] for b in stories if "GPT-6" in b["text"]["text"])
    assert "|Alpha AI>" in gpt and "|Beta Tech>" in gpt
    footer = blocks[-1]
    assert footer["type"] == "context" and "from 2 of 2 sources" in footer["elements"][0]["text"]
    assert slack_stub.responses == []  # nothing went wrong, nothing to tell privately


async def test_digest_now_failure_is_told_privately(make_slack_app, slack_stub, web) -> None:
    app = await make_slack_app(DIGEST_FEEDS=web.url("/down.xml"))
    await app.command("now", command="/digest")
    await app.settle()
    assert slack_stub.posted() == []
    _, body = slack_stub.responses[-1]
    assert body["response_type"] == "ephemeral" and "couldn't reach any of the news sources" in body["text"]


def _digest(stories: int, *, long: bool = False) -> Digest:
    now = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    return Digest(
        local_date=date(2026, 3, 10),
        timezone="Asia/Jakarta",
        language="id",
        window_start=now - timedelta(hours=24),
        window_end=now,
        opening="Hari yang sibuk.",
        stories=tuple(
            Story(
                title=f"Story {i} " + ("x" * 400 if long else ""),
                url=f"https://n.example/{i}",
                sources=[SourceLink(f"Source {j}", f"https://s{j}.example/{i}") for j in range(3)],
                excerpt="",
                timestamp=now,
                summary=("Ringkasan. " * (400 if long else 2)).strip(),
                theme=f"Tema {i % 3}",
                team_shared=i == 0,
            )
            for i in range(stories)
        ),
        items_read=120,
        sources_read=12,
        sources_total=14,
        feeds_failed=(FeedFailure("https://a.example/rss", "HTTP 404", "Alpha"),
                      FeedFailure("https://b.example/feed", "no answer within 20 s")),
        shared_count=1,
    )


@pytest.mark.parametrize(("count", "long"), [(0, False), (8, False), (40, False), (60, True)])
def test_rendering_respects_slack_limits(count: int, long: bool) -> None:
    messages = digest_messages(_digest(count, long=long))
    assert messages[0].blocks[0]["text"]["text"] == "Ringkasan berita AI · Selasa, 10 Maret 2026"
    seen = 0
    for message in messages:
        assert 0 < len(message.blocks) <= 50 and message.text
        for block in message.blocks:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= 3000
                seen += block["text"]["text"].count("|Source 0>")
    assert seen == count  # every story is posted exactly once, in the message or its thread
    footer = messages[0].blocks[-1]["elements"][0]["text"]
    assert (
        "Membaca 120 item baru dari 12/14 sumber" in footer and "2 sumber tidak dapat diakses" in footer
    )
    assert "Alpha (HTTP 404), https://b.example/feed (no answer within 20 s)" in footer
    if count == 0:
        assert "Tidak ada berita industri AI" in str(messages[0].blocks)
    if count > 12:
        assert len(messages) > 1 and "Berita lainnya ada di utas." in str(messages[0].blocks)
    else:
        assert len(messages) == 1
    if count:
        assert "_dibagikan tim_" in str(messages[0].blocks)


async def test_poster_threads_long_digests_and_reports_refusals(slack_stub) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack_stub.api_url)
    post = make_poster(client, None)
    ts = await post("T0001", CHANNEL, _digest(30))
    calls = slack_stub.posted()
    assert calls[0]["channel"] == CHANNEL and "thread_ts" not in calls[0]
    assert len(calls) >= 2 and all(c["thread_ts"] == ts for c in calls[1:])
    assert all(c["unfurl_links"] in (False, "0", "false", "False") for c in calls)
    slack_stub.overrides["chat.postMessage"] = lambda args: {"ok": False, "error": "channel_not_found"}
    with pytest.raises(PostFailed) as refused:
        await post("T0001", "C-gone", _digest(3))
    assert refused.value.detail == "channel_not_found"
