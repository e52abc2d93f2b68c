"""👍/👎 on summaries, digests and answers (a `context_actions` block with `feedback_buttons`), stored per
person and message; a 👎 asks, privately, what was wrong.

The button's value carries what was voted on (`up|summary|<article id>`); a vote is validated like a
command: unknown values, kinds or reasons are ignored, and only the person who voted can say why.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ActionsBlock, ButtonElement, MarkdownTextObject, SectionBlock

from handlers.deps import Deps
from handlers.render import FEEDBACK_ACTION as VOTE_ACTION
from handlers.summaries import channel_words
from ringkas.feedback import KINDS, REASONS
from ringkas.i18n import Translator

log = logging.getLogger("ringkas.slack.feedback")

REASON_ACTION = re.compile(r"^ringkas_feedback_reason_[a-z_]+$")
_VALUE = re.compile(r"^(up|down)\|([a-z]+)\|([\w.:-]{0,64})$")
_REASON_VALUE = re.compile(r"^(\d{1,18})\|([a-z_]+)$")


def reasons_message(feedback_id: int, _: Translator) -> dict[str, Any]:
    """The private question after a 👎: what was wrong?"""
    buttons = [ButtonElement(text=_(words), action_id=f"ringkas_feedback_reason_{code}",
                             value=f"{feedback_id}|{code}") for code, words in REASONS.items()]
    text = _("Thanks for telling me. What was wrong?")
    return {"text": text, "blocks": [
        SectionBlock(text=MarkdownTextObject(text=text)).to_dict(),
        ActionsBlock(elements=buttons).to_dict(),
    ]}


def register(app: Any, deps: Deps) -> None:
    @app.action(VOTE_ACTION)
    async def on_vote(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any) -> None:
        await ack()
        if deps.feedback is None:
            return
        match = _VALUE.match(str(action.get("value") or ""))
        user_id = str((body.get("user") or {}).get("id") or "")
        container = body.get("container") or {}
        channel_id = str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")
        message = body.get("message") or {}
        message_ts = str((body.get("container") or {}).get("message_ts") or message.get("ts") or "")
        team_id = str((body.get("team") or {}).get("id") or body.get("team_id") or "")
        if match is None or match.group(2) not in KINDS or not (user_id and channel_id and message_ts):
            log.info("ignored a malformed feedback action")
            return
        direction, kind, target = match.groups()
        deps.tasks.spawn(
            _vote(deps, client, team_id=team_id, channel_id=channel_id, message_ts=message_ts,
                  thread_ts=message.get("thread_ts"), user_id=user_id, kind=kind, target=target or None,
                  vote=1 if direction == "up" else -1),
            name=f"feedback:{channel_id}:{message_ts}",
        )

    @app.action(REASON_ACTION)
    async def on_reason(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        if deps.feedback is None:
            return
        match = _REASON_VALUE.match(str(action.get("value") or ""))
        user_id = str((body.get("user") or {}).get("id") or "")
        if match is None or match.group(2) not in REASONS or not user_id:
            return
        feedback_id, reason = int(match.group(1)), match.group(2)
        channel_id = str((body.get("channel") or {}).get("id") or "")
        team_id = str((body.get("team") or {}).get("id") or "")
        deps.tasks.spawn(_reason(deps, respond, feedback_id=feedback_id, user_id=user_id, reason=reason,
                                 team_id=team_id, channel_id=channel_id),
                         name=f"feedback-reason:{feedback_id}")


async def _vote(deps: Deps, client: Any, *, team_id: str, channel_id: str, message_ts: str,
                thread_ts: str | None, user_id: str, kind: str, target: str | None, vote: int) -> None:
    assert deps.feedback is not None
    try:
        feedback_id = await deps.feedback.vote(team_id=team_id, channel_id=channel_id, message_ts=message_ts,
                                               user_id=user_id, kind=kind, target=target, vote=vote)
    except Exception:
        log.exception("could not store a vote", extra={"channel": channel_id})
        return
    log.info("feedback", extra={"channel": channel_id, "kind": kind, "vote": vote})
    if vote > 0:
        return
    _ = await channel_words(deps, team_id, channel_id)
    where: dict[str, Any] = {"channel": channel_id, "user": user_id}
    if thread_ts:
        where["thread_ts"] = thread_ts
    try:
        await client.chat_postEphemeral(**where, **reasons_message(feedback_id, _))
    except SlackApiError as exc:
        log.info("could not ask what was wrong", extra={"error": exc.response.get("error")})


async def _reason(deps: Deps, respond: Any, *, feedback_id: int, user_id: str, reason: str, team_id: str,
                  channel_id: str) -> None:
    assert deps.feedback is not None
    _ = await channel_words(deps, team_id, channel_id)
    try:
        stored = await deps.feedback.set_reason(feedback_id, user_id=user_id, reason=reason)
    except Exception:
        log.exception("could not store a feedback reason")
        stored = False
    text = _("Noted: {reason}. Thank you!", reason=_(REASONS[reason])) if stored else _(
        "Sorry, I couldn't save that. Please try again.")
    try:
        await respond(text=text, replace_original=True, response_type="ephemeral")
    except Exception:
        log.warning("could not confirm the feedback reason", exc_info=True)
