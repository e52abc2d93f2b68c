"""Events API: mentions, messages with links in channels, and direct messages.

Bolt acknowledges events before these listeners run; each listener only parses the event and hands the
slow work to durable jobs. A mention arrives both as `app_mention` and as `message`: the message path
leaves posts that mention the bot to the mention path, and `SlackState.claim` makes sure each link of a
message is summarized once however often Slack delivers it (retries included).
"""

from __future__ import annotations

import logging
from typing import Any

from handlers.deps import Deps
from handlers.link_jobs import accept_links
from handlers.links import extract_links, mentions_user
from handlers.question_jobs import QUESTION_JOB, accept_question
from handlers.summaries import LinkJob, split_links
from ringkas.slack_state import ChannelSettings

log = logging.getLogger("ringkas.slack.events")

# Message subtypes that are a person posting something new; everything else (edits, deletions, joins,
# bot messages, link previews added through message_changed, …) is ignored.
_PERSON_POSTED = frozenset({None, "thread_broadcast", "file_share"})


def _team_id(body: dict[str, Any], event: dict[str, Any], context: Any) -> str:
    return str(context.get("team_id") or body.get("team_id") or event.get("team") or "")


def _from_bot(event: dict[str, Any], bot_user_id: str | None) -> bool:
    return bool(
        event.get("bot_id")
        or event.get("bot_profile")
        or event.get("subtype") == "bot_message"
        or not event.get("user")
        or event.get("user") == "USLACKBOT"  # Slackbot: reminders, auto-responses
        or (bot_user_id and event.get("user") == bot_user_id)
    )


def register(app: Any, deps: Deps) -> None:
    @app.event("app_mention")
    async def on_mention(body: dict[str, Any], event: dict[str, Any], context: Any, client: Any) -> None:
        if deps.tasks.closing:
            return
        team_id = _team_id(body, event, context)
        bot_user_id = context.get("bot_user_id")
        # Awaited before the ack goes out (process_before_response): links become jobs in the database
        # first; anything slow is handed to `deps.tasks`.
        await handle_mention(deps, client, team_id=team_id, event=event, bot_user_id=bot_user_id)

    @app.event("message")
    async def on_message(body: dict[str, Any], event: dict[str, Any], context: Any, client: Any) -> None:
        if deps.tasks.closing or event.get("subtype") not in _PERSON_POSTED:
            return
        team_id = _team_id(body, event, context)
        bot_user_id = context.get("bot_user_id")
        await handle_message(deps, client, team_id=team_id, event=event, bot_user_id=bot_user_id)


async def handle_mention(
    deps: Deps, client: Any, *, team_id: str, event: dict[str, Any], bot_user_id: str | None
) -> None:
    if _from_bot(event, bot_user_id) or event.get("subtype") not in _PERSON_POSTED:
        return
    ts = str(event["ts"])
    text = event.get("text") or ""
    links = extract_links(text)
    if links:
        await _summarize(deps, client, kind="mention", team_id=team_id, event=event, links=links,
                         thread_ts=str(event.get("thread_ts") or ts))
        return
    await _no_link(deps, team_id=team_id, event=event, text=text, bot_user_id=bot_user_id,
                   reply_thread=str(event.get("thread_ts") or ts))


async def handle_message(
    deps: Deps, client: Any, *, team_id: str, event: dict[str, Any], bot_user_id: str | None
) -> None:
    if _from_bot(event, bot_user_id) or event.get("subtype") not in _PERSON_POSTED or event.get("hidden"):
        return
    channel_id, ts = str(event["channel"]), str(event["ts"])
    text = event.get("text") or ""
    links = extract_links(text)
    if event.get("channel_type") == "im":
        # A DM: answer top-level (threads in a one-to-one chat read worse), or inside the thread it came from.
        thread_ts = str(event["thread_ts"]) if event.get("thread_ts") else None
        if links:
            await _summarize(deps, client, kind="dm", team_id=team_id, event=event, links=links,
                             thread_ts=thread_ts)
        else:
            await _no_link(deps, team_id=team_id, event=event, text=text, bot_user_id=bot_user_id,
                           reply_thread=thread_ts)
        return
    if not links or mentions_user(text, bot_user_id):
        return  # nothing to do, or the app_mention event handles it
    try:
        channel = await deps.state.channel_settings(team_id, channel_id)
    except Exception as exc:
        # The database is out: the links are recorded when it is back (passive summaries are on unless a
        # channel turned them off).
        log.warning("could not read the channel's settings", extra={"channel": channel_id,
                                                                   "error": type(exc).__name__})
        channel = ChannelSettings()
    if not channel.passive_summaries:
        return
    await _summarize(deps, client, kind="message", team_id=team_id, event=event, links=links,
                     thread_ts=str(event.get("thread_ts") or ts))


async def _summarize(
    deps: Deps, client: Any, *, kind: str, team_id: str, event: dict[str, Any], links: list[str],
    thread_ts: str | None,
) -> None:
    accepted, skipped = split_links(links, deps.settings.max_links_per_message)
    job = LinkJob(
        kind=kind,
        team_id=team_id,
        channel_id=str(event["channel"]),
        message_ts=str(event["ts"]),
        thread_ts=thread_ts,
        user_id=event.get("user"),
        links=accepted,
        skipped=skipped,
    )
    await accept_links(deps, client, job)


async def _no_link(
    deps: Deps, *, team_id: str, event: dict[str, Any], text: str, bot_user_id: str | None,
    reply_thread: str | None,
) -> None:
    """A mention (or DM) without a link: a question inside a summary thread, otherwise help. Recorded as a
    job before the ack (handlers/question_jobs.py), so a crash or a redelivery loses or doubles nothing."""
    kind = "mention" if event.get("type") == "app_mention" else "dm"
    payload = {"kind": kind, "team_id": team_id, "channel_id": str(event["channel"]),
               "message_ts": str(event["ts"]), "thread_ts": event.get("thread_ts"),
               "reply_thread": reply_thread, "user_id": event.get("user"), "text": text,
               "bot_user_id": bot_user_id}
    await accept_question(deps, kind=kind, team_id=team_id, channel_id=payload["channel_id"],
                          message_ts=payload["message_ts"], user_id=event.get("user"), job_kind=QUESTION_JOB,
                          payload=payload)
