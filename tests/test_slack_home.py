"""App Home: signed app_home_opened, block_actions and view_submission requests to the running app."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.slack_app import SlackApp, message, next_ts
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub
from tests.test_slack_events import article_page


def home_opened(user: str = "U0001") -> dict[str, Any]:
    return {
        "type": "app_home_opened",
        "user": user,
        "channel": "D0HOME",
        "tab": "home",
        "event_ts": next_ts(),
    }


def home_text(call_args: dict[str, Any]) -> str:
    view = call_args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["type"] == "home"
    return json.dumps(view, ensure_ascii=False)


def button(action_id: str, value: str, user: str = "U0001") -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": user},
        "view": {"id": "V1", "type": "home"},
        "container": {"type": "view", "view_id": "V1"},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "value": value,
                "block_id": "b",
                "action_ts": next_ts(),
            }
        ],
    }


async def test_home_shows_channels_digests_usage_cost_and_feedback(
    slack_app: SlackApp, slack_stub: SlackStub, web: WebStub
) -> None:
    await slack_app.command("language id", channel_id="C0002")
    await slack_app.command("subscribe 07:30 Asia/Jakarta", command="/digest", channel_id="C0002")
    await slack_app.event(message(f"<{article_page(web)}>"))
    await slack_app.settle()
    await slack_app.deps.feedback.vote(
        team_id="T0001",
        channel_id="C0001",
        message_ts="1.1",
        user_id="U0001",
        kind="summary",
        target="1",
        vote=-1,
    )
    assert await slack_app.event(home_opened()) == 200
    await slack_app.settle()
    [publish] = [c.args for c in slack_stub.calls_to("views.publish")]
    assert publish["user_id"] == "U0001"
    text = home_text(publish)
    assert "<#C0002>" in text and "Indonesian (id)" in text  # its language
    assert "every day at 07:30 (Asia/Jakarta)" in text and "next:" in text  # digest with next run
    # usage and its cost (the stand-in's few tokens cost under a cent at gpt-4.1-mini's price)
    assert re.search(r"Last 7 days: [1-9]\d* model calls · [\d,]+ tokens · about < \$0\.01", text), text
    assert "👎" in text and "<#C0001>" in text  # recent feedback


async def test_home_buttons_change_settings_only_for_channel_members(
    slack_app: SlackApp, slack_stub: SlackStub
) -> None:
    await slack_app.command("auto on", channel_id="C0003")
    await slack_app.settle()
    slack_stub.members["C0003"] = ["U0001"]
    # Someone outside the channel cannot turn it off; they are told why.
    await slack_app.interaction(button("home_toggle_passive", "C0003|off", user="U0777"))
    await slack_app.settle()
    assert (await slack_app.deps.state.channel_settings("T0001", "C0003")).passive_summaries is True
    assert "Only members of that channel" in home_text(slack_stub.calls_to("views.publish")[-1].args)
    await slack_app.interaction(button("home_toggle_passive", "C0003|off"))
    await slack_app.settle()
    assert (await slack_app.deps.state.channel_settings("T0001", "C0003")).passive_summaries is False
    assert "automatic summaries off" in home_text(slack_stub.calls_to("views.publish")[-1].args)
    # Hostile values are ignored.
    await slack_app.interaction(button("home_toggle_passive", "<!channel>|maybe"))
    await slack_app.settle()


async def test_language_modal_is_validated_like_the_command(
    slack_app: SlackApp, slack_stub: SlackStub
) -> None:
    slack_stub.members["C0004"] = ["U0001"]
    await slack_app.interaction(button("home_language", "C0004"))
    await slack_app.settle()
    [opened] = [c.args for c in slack_stub.calls_to("views.open")]
    view = opened["view"] if isinstance(opened["view"], dict) else json.loads(opened["view"])
    assert view["callback_id"] == "home_language_modal" and view["private_metadata"] == "C0004"

    def submission(word: str, user: str = "U0001") -> dict[str, Any]:
        return {
            "type": "view_submission",
            "user": {"id": user},
            "view": {
                "id": "V2",
                "type": "modal",
                "callback_id": "home_language_modal",
                "private_metadata": "C0004",
                "state": {"values": {"language": {"code": {"type": "plain_text_input", "value": word}}}},
            },
        }

    refused = await slack_app.interaction(submission("klingon!!"))
    assert refused.json()["response_action"] == "errors"
    assert "I don't know the language" in refused.json()["errors"]["language"]
    outsider = await slack_app.interaction(submission("id", user="U0999"))
    assert "Only members" in outsider.json()["errors"]["language"]
    accepted = await slack_app.interaction(submission("Indonesian"))
    assert accepted.status == 200 and not accepted.text.strip().startswith('{"response_action"')
    await slack_app.settle()
    assert (await slack_app.deps.state.channel_settings("T0001", "C0004")).language == "id"


def test_cost_estimate_from_the_price_table() -> None:
    from ringkas.home import cost_of

    assert cost_of("gpt-4.1-mini", 1_000_000, 1_000_000) == 0.4 + 1.6
    assert cost_of("gpt-4.1-mini-2025-04-14", 1_000_000, 0) == 0.4  # dated snapshot: its family's price
    assert cost_of("gpt-4.1", 1_000_000, 0) == 2.0  # not mistaken for gpt-4.1-mini
    assert cost_of("openai/gpt-4o-mini", 0, 1_000_000) == 0.6
    assert cost_of("llama3.1:8b", 10, 10) is None  # local models: no price known
