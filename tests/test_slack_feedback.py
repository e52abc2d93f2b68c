"""👍/👎 on summaries, digests and answers: signed block_actions to the running app, votes stored, a 👎
asks privately what was wrong, and `bot.py usage` shows the votes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.digest import digest_messages
from tests.slack_app import SlackApp, message, next_ts
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_digest_slack import _digest
from tests.test_slack_events import article_page


def feedback_values(blocks: list[dict[str, Any]]) -> tuple[str, str]:
    [block] = [b for b in blocks if b["type"] == "context_actions"]
    [element] = block["elements"]
    assert element["type"] == "feedback_buttons" and element["action_id"] == "ringkas_feedback"
    return element["positive_button"]["value"], element["negative_button"]["value"]


def vote(value: str, *, message_ts: str, user: str = "U0001", thread_ts: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"type": "message", "ts": message_ts, "text": "summary"}
    if thread_ts:
        found["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "user": {"id": user, "name": "someone"},
        "channel": {"id": "C0001"},
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": "C0001",
            "is_ephemeral": False,
        },
        "message": found,
        "actions": [
            {
                "type": "feedback_buttons",
                "action_id": "ringkas_feedback",
                "block_id": "fb",
                "value": value,
                "action_ts": next_ts(),
            }
        ],
    }


async def test_votes_on_a_summary_are_stored_and_a_thumbs_down_asks_why(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = message(f"<{article_page(web)}>")
    await slack_app.event(shared)
    await slack_app.settle()
    [summary] = slack_stub.posted()
    up, down = feedback_values(summary["blocks"])
    assert up.startswith("up|summary|") and down.startswith("down|summary|")
    summary_ts = slack_stub.posted_ts(0)

    assert (
        await slack_app.interaction(vote(up, message_ts=summary_ts, thread_ts=shared["ts"]))
    ).status == 200
    await slack_app.settle()
    assert slack_stub.calls_to("chat.postEphemeral") == []  # a 👍 asks nothing
    # Changing one's mind replaces the vote; a 👎 asks privately what was wrong.
    await slack_app.interaction(vote(down, message_ts=summary_ts, thread_ts=shared["ts"]))
    await slack_app.settle()
    [ask] = [c.args for c in slack_stub.calls_to("chat.postEphemeral")]
    assert ask["user"] == "U0001" and ask["thread_ts"] == shared["ts"] and "What was wrong" in ask["text"]
    blocks = ask["blocks"] if isinstance(ask["blocks"], list) else json.loads(ask["blocks"])
    buttons = blocks[1]["elements"]
    [inaccurate] = [b for b in buttons if b["action_id"] == "ringkas_feedback_reason_inaccurate"]

    reason = {
        "type": "block_actions",
        "user": {"id": "U0001"},
        "channel": {"id": "C0001"},
        "container": {"type": "message", "message_ts": next_ts(), "is_ephemeral": True},
        "actions": [
            {
                "type": "button",
                "action_id": inaccurate["action_id"],
                "value": inaccurate["value"],
                "block_id": "r",
                "action_ts": next_ts(),
            }
        ],
    }
    stranger = {**reason, "user": {"id": "U0666"}}
    await slack_app.interaction(stranger)  # only the voter can say why
    await slack_app.interaction(reason)
    await slack_app.settle()
    texts = [body.get("text", "") for _, body in slack_stub.responses]
    assert any("Noted: Not accurate" in t for t in texts) and any("couldn't save" in t for t in texts)

    report = await slack_app.deps.feedback.report(days=7)
    assert (report.up, report.down) == (0, 1) and report.reasons == (("inaccurate", 1),)
    from bot import cmd_usage

    assert await cmd_usage(slack_app.settings, 30) == 0
    shown = capsys.readouterr().out
    assert "Feedback since" in shown and "0 👍 · 1 👎" in shown and "Not accurate (1)" in shown


async def test_malformed_feedback_is_ignored(slack_app: SlackApp, slack_stub: SlackStub) -> None:
    for value in ("sideways|summary|1", "up|poem|1", "up|summary|" + "9" * 200, ""):
        assert (await slack_app.interaction(vote(value, message_ts=next_ts()))).status == 200
    await slack_app.settle()
    assert (await slack_app.deps.feedback.report(days=1)).by_kind == ()


def test_digests_and_answers_carry_feedback_buttons() -> None:
    main, *_rest = digest_messages(_digest(3))
    up, down = feedback_values(main.blocks)
    assert up.startswith("up|digest|20") and down.startswith("down|digest|")
    assert len(main.blocks) <= 50
