"""`/summarize` through signed slash-command requests to the running app."""

from __future__ import annotations

import json
from typing import Any

from tests.slack_app import MakeSlackApp, SlackApp
from tests.support.openai_stub import OpenAIStub, request_text
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_slack_events import all_text, article_page, updates


def ack_text(reply: Any) -> str:
    """What the person sees privately: Bolt acks with plain text, or JSON with `text`."""
    try:
        data = reply.json()
    except json.JSONDecodeError:
        return reply.text
    return data.get("text", "") if isinstance(data, dict) else ""


async def test_summarize_url_posts_in_channel_naming_who_asked(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    url = article_page(web)
    reply = await slack_app.command(url, user_id="U0042")
    assert reply.status == 200 and ack_text(reply) == ""  # acked at once, silently
    await slack_app.settle()
    [update] = updates(slack_stub)  # no placeholder: the summary is the one message
    assert update["channel"] == "C0001" and "thread_ts" not in update
    assert "<@U0042>" in json.dumps(update["blocks"])
    text = all_text(update)
    assert "Open-weight model" in text and "Requested by <@U0042>" in text
    # The summary message starts a thread for follow-up questions.
    assert await slack_app.deps.state.latest_article("T0001", "C0001") is not None


async def test_summarize_url_with_slack_link_markup(slack_app: SlackApp, slack_stub: SlackStub,
                                                   web: WebStub) -> None:
    url = article_page(web)
    await slack_app.command(f"<{url}>")
    await slack_app.settle()
    assert "Open-weight model" in all_text(updates(slack_stub)[0])


async def test_summarize_falls_back_to_response_url_when_not_in_channel(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    slack_stub.overrides["chat.postMessage"] = lambda args: {"ok": False, "error": "not_in_channel"}
    url = article_page(web)
    await slack_app.command(url, channel_id="C0PRIVATE", response_name="fallback")
    await slack_app.settle()
    responses = [body for name, body in slack_stub.responses if name == "fallback"]
    *progress, final = responses
    # A private progress note only when the work is not done at once.
    assert all(p["response_type"] == "ephemeral" and "Reading" in p["text"] for p in progress)
    assert len(progress) <= 1 and final["response_type"] == "in_channel"
    assert "Open-weight model" in json.dumps(final["blocks"])
    assert slack_stub.calls_to("chat.update") == []


async def test_usage_for_no_or_bad_arguments(slack_app: SlackApp, slack_stub: SlackStub) -> None:
    for text in ("", "   ", "please summarize something", "auto maybe", "language", "language klingon!!",
                 "language en id"):
        reply = await slack_app.command(text)
        assert reply.status == 200
        assert "Usage: `/summarize URL`" in ack_text(reply), text
    help_reply = await slack_app.command("help")
    assert "/summarize auto on" in ack_text(help_reply) and "/summarize language" in ack_text(help_reply)
    await slack_app.settle()
    assert slack_stub.posted() == [] and slack_stub.responses == []


async def test_usage_echoes_the_text_escaped_exactly_once(slack_app: SlackApp) -> None:
    # Slack escapes &, < and > in command text; the echo must show what the person typed, and stay inert.
    reply = await slack_app.command("tom &amp; jerry &lt;!channel&gt;")
    shown = ack_text(reply)
    assert "“tom &amp; jerry &lt;!channel&gt;”" in shown
    assert "&amp;amp;" not in shown and "&amp;lt;" not in shown and "<!channel>" not in shown


async def test_language_setting_changes_summary_language_and_survives_restart(
    make_slack_app: MakeSlackApp, database_url: str, slack_stub: SlackStub, web: WebStub,
    openai_stub: OpenAIStub,
) -> None:
    app = await make_slack_app(DATABASE_URL=database_url)
    reply = await app.command("language id")
    assert reply.status == 200
    await app.settle()
    [(_, confirmation)] = slack_stub.responses
    # Told in the language just chosen.
    assert confirmation["response_type"] == "in_channel" and "Indonesia (id)" in confirmation["text"]
    assert "mengatur bahasa ringkasan" in confirmation["text"]
    await app.command("auto off", channel_id="C0002")
    await app.settle()

    await app.restart()
    state = app.deps.state
    assert (await state.channel_settings("T0001", "C0001")).language == "id"
    assert (await state.channel_settings("T0001", "C0002")).passive_summaries is False

    url = article_page(web)
    await app.command(url)
    await app.settle()
    assert any("Indonesian" in request_text(body) for body in openai_stub.requests)
    assert "id" in json.dumps(updates(slack_stub)[-1]["blocks"][-1])
    assert "Ringkasnya" in all_text(updates(slack_stub)[-1])  # the summary's own labels
    # Everything else the bot says in this channel is Indonesian too.
    assert "Cara pakai" in ack_text(await app.command("halo"))
    help_reply = ack_text(await app.command("bantuan"))
    assert "/summarize bantuan" in help_reply and "ringkas" in help_reply.lower()
    await app.command(web.url("/not-there"))
    await app.settle()
    failure = updates(slack_stub)[-1]
    assert "Saya tidak bisa meringkas" in failure["text"] and "galat 404" in failure["text"]

    # Passive summaries stay off in C0002 after the restart.
    from tests.slack_app import message

    await app.event(message(f"<{url}>", channel="C0002"))
    await app.settle()
    assert "C0002" not in [p["channel"] for p in slack_stub.posted()]

    await app.command("language auto")
    await app.settle()
    assert (await state.channel_settings("T0001", "C0001")).language is None
    assert "article's own language" in slack_stub.responses[-1][1]["text"]


async def test_auto_on_off_confirmations(slack_app: SlackApp, slack_stub: SlackStub) -> None:
    await slack_app.command("auto off", user_id="U0007")
    await slack_app.settle()
    off = slack_stub.responses[-1][1]
    assert off["response_type"] == "in_channel" and "<@U0007> turned off" in off["text"]
    assert (await slack_app.deps.state.channel_settings("T0001", "C0001")).passive_summaries is False
    await slack_app.command("AUTO ON")
    await slack_app.settle()
    assert "turned on" in slack_stub.responses[-1][1]["text"]
    assert (await slack_app.deps.state.channel_settings("T0001", "C0001")).passive_summaries is True


async def test_summarize_failure_is_told_plainly(slack_app: SlackApp, slack_stub: SlackStub,
                                                web: WebStub) -> None:
    await slack_app.command(web.url("/nothing-here"), user_id="U0042")
    await slack_app.settle()
    [update] = updates(slack_stub)
    assert "couldn't summarize" in update["text"] and "<@U0042>" in json.dumps(update["blocks"])


async def test_summarize_twice_with_slack_length_trigger_ids(
    make_slack_app: MakeSlackApp, database_url: str, slack_stub: SlackStub, web: WebStub
) -> None:
    # Each /summarize has its own trigger id (41 characters, longer than a message ts): asking twice gives
    # two summaries, each recorded, on SQLite and PostgreSQL alike.
    app = await make_slack_app(DATABASE_URL=database_url)
    url = article_page(web)
    await app.command(url)
    await app.command(url)
    await app.settle()
    assert len(updates(slack_stub)) == 2
    from tests.test_slack_events import request_rows

    rows = await request_rows(app)
    assert [(r.kind, r.state) for r in rows] == [("command", "done"), ("command", "done")]
    assert await app.deps.state.latest_article("T0001", "C0001") is not None


async def test_summarize_bare_host_without_scheme(slack_app: SlackApp, slack_stub: SlackStub,
                                                 web: WebStub) -> None:
    article_page(web)
    reply = await slack_app.command(f"127.0.0.1:{web.port}/story")
    assert reply.status == 200 and ack_text(reply) == ""
    await slack_app.settle()
    assert "Open-weight model" in all_text(updates(slack_stub)[0])


async def test_language_by_name_and_unknown_codes(slack_app: SlackApp, slack_stub: SlackStub) -> None:
    await slack_app.command("language Indonesian")
    await slack_app.settle()
    assert (await slack_app.deps.state.channel_settings("T0001", "C0001")).language == "id"
    await slack_app.command("language pt-BR")
    await slack_app.settle()
    assert (await slack_app.deps.state.channel_settings("T0001", "C0001")).language == "pt-br"
    reply = await slack_app.command("language ed")  # a typo, not a language
    assert "I don't know the language" in ack_text(reply) and "Usage" in ack_text(reply)
    await slack_app.settle()
    assert (await slack_app.deps.state.channel_settings("T0001", "C0001")).language == "pt-br"
