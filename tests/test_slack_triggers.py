"""More ways in: a reaction and the "Summarize link" message shortcut, through the one pipeline."""

from __future__ import annotations

from tests.slack_app import MakeSlackApp, SlackApp, message, message_action, reaction
from tests.support.openai_stub import OpenAIStub, summary_tldrs
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_slack_events import all_text, article_page, request_rows


async def test_a_memo_reaction_summarizes_the_message_in_its_thread(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub, openai_stub: OpenAIStub
) -> None:
    await slack_app.command("auto off")  # passive summaries off: only the reaction asks
    await slack_app.settle()
    url = article_page(web)
    shared = message(f"worth a read <{url}>", user="U0002")
    slack_stub.remember(shared)
    assert await slack_app.event(shared) == 200
    await slack_app.settle()
    assert slack_stub.posted() == []
    assert await slack_app.event(reaction("thumbsup", shared)) == 200  # another emoji: nothing
    assert await slack_app.event(reaction("memo", shared, user="U0003")) == 200
    await slack_app.settle()
    [summary] = slack_stub.posted()
    assert summary["thread_ts"] == shared["ts"] and summary["text"] in summary_tldrs(openai_stub)
    assert "<@U0003>" in all_text(summary)  # names who asked
    [row] = await request_rows(slack_app)
    assert (row.kind, row.state, row.message_ts) == ("reaction", "done", shared["ts"])
    # Reacting again (or anyone else) does not summarize it twice: the person is told where it is.
    await slack_app.event(reaction("memo", shared, user="U0004"))
    await slack_app.settle()
    assert len(slack_stub.posted()) == 1
    [note] = [c.args for c in slack_stub.calls_to("chat.postEphemeral")]
    assert note["user"] == "U0004" and "already summarized" in note["text"]


async def test_the_reaction_emoji_is_a_setting_and_reads_thread_replies(
    make_slack_app: MakeSlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    app = await make_slack_app(SUMMARIZE_REACTION=":bookmark:")
    url = article_page(web)
    root = message("a thread")
    reply = message(f"<{url}>", thread_ts=root["ts"])
    slack_stub.remember(root)
    slack_stub.remember(reply)
    await app.event(reaction("memo", reply))
    await app.settle()
    assert slack_stub.posted() == []
    await app.event(reaction("bookmark", reply))
    await app.settle()
    [summary] = slack_stub.posted()
    assert summary["thread_ts"] == root["ts"]  # a reply's summary stays in its thread


async def test_passive_and_reaction_on_one_message_give_one_summary(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub, openai_stub: OpenAIStub
) -> None:
    url = article_page(web)
    shared = message(f"<{url}>")
    slack_stub.remember(shared)
    await slack_app.event(shared)
    await slack_app.event(reaction("memo", shared))
    await slack_app.interaction(message_action(shared))
    await slack_app.settle()
    assert len([p for p in slack_stub.posted() if "Open-weight" in all_text(p)]) == 1


async def test_message_shortcut_summarizes_the_message(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    await slack_app.command("auto off")
    await slack_app.settle()
    url = article_page(web)
    shared = message(f"look: <{url}>")
    reply = await slack_app.interaction(message_action(shared, user="U0005"))
    assert reply.status == 200
    await slack_app.settle()
    [summary] = slack_stub.posted()
    assert summary["thread_ts"] == shared["ts"] and "<@U0005>" in all_text(summary)
    # A message without a link is told privately.
    await slack_app.interaction(message_action(message("no links here"), user="U0005"))
    await slack_app.settle()
    [note] = [c.args for c in slack_stub.calls_to("chat.postEphemeral")]
    assert "no web link" in note["text"]


async def test_reaction_on_a_message_the_bot_cannot_read_is_told(
    slack_app: SlackApp, slack_stub: SlackStub
) -> None:
    unseen = message("<https://example.test/x>")
    await slack_app.event(reaction("memo", unseen))
    await slack_app.settle()
    [note] = [c.args for c in slack_stub.calls_to("chat.postEphemeral")]
    assert "couldn't read that message" in note["text"]
