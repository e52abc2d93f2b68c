"""Events API: mentions, messages with links in channels, and direct messages.

Bolt acknowledges events before these listeners run; each listener only parses the event and hands the
slow work to `deps.tasks`. A mention arrives both as `app_mention` and as `message`: the message path
leaves posts that mention the bot to the mention path, and `SlackState.claim` makes sure each link of a
message is summarized once however often Slack delivers it (retries included).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from handlers import questions
from handlers.deps import Deps
from handlers.link_jobs import accept_links
from handlers.links import extract_links, mentions_user, strip_mentions
from handlers.render import failure_text, help_message
from handlers.summaries import APOLOGY, LinkJob, split_links
from ringkas.slack_state import ChannelSettings

log = logging.getLogger("ringkas.slack.events")

# Message subtypes that are a person posting something new; everything else (edits, deletions, joins,
# bot messages, link previews added through message_changed, …) is ignored.
_PERSON_POSTED = frozenset({None, "thread_broadcast", "file_share"})
_NO_LINK = "-"  # claim() key part for mentions and DMs without links (help or a question)
INTERRUPTED_QUESTION = "I was restarting and couldn't finish answering. Please ask again in a minute."


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
    channel_id, ts = str(event["channel"]), str(event["ts"])
    text = event.get("text") or ""
    links = extract_links(text)
    if links:
        await _summarize(deps, client, kind="mention", team_id=team_id, event=event, links=links,
                         thread_ts=str(event.get("thread_ts") or ts))
        return
    deps.tasks.spawn(
        _no_link(deps, client, team_id=team_id, channel_id=channel_id, event=event, text=text,
                 bot_user_id=bot_user_id, reply_thread=str(event.get("thread_ts") or ts)),
        name=f"mention:{channel_id}:{ts}",
    )


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
            deps.tasks.spawn(
                _no_link(deps, client, team_id=team_id, channel_id=channel_id, event=event, text=text,
                         bot_user_id=bot_user_id, reply_thread=thread_ts),
                name=f"dm:{channel_id}:{ts}",
            )
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
    deps: Deps, client: Any, *, team_id: str, channel_id: str, event: dict[str, Any], text: str,
    bot_user_id: str | None, reply_thread: str | None,
) -> None:
    """A mention (or DM) without a link: a question inside a summary thread, otherwise help."""
    ts = str(event["ts"])
    try:
        request_id = await deps.state.claim(
            kind="mention" if event.get("type") == "app_mention" else "dm",
            team_id=team_id, channel_id=channel_id, message_ts=ts, link=_NO_LINK, user_id=event.get("user"),
        )
    except Exception:
        log.exception("could not record the request", extra={"channel": channel_id, "message_ts": ts})
        await _apologise(client, channel_id, reply_thread, ts)
        return
    if request_id is None:
        return  # a redelivery of a message already answered
    state, error_code = "done", None
    try:
        answered = False
        if event.get("thread_ts"):
            answered = await questions.answer_in_thread(
                deps, client, team_id=team_id, channel_id=channel_id, thread_ts=str(event["thread_ts"]),
                message_ts=ts, user_id=event.get("user"), text=text,
            )
        if not answered:
            kwargs: dict[str, Any] = {"channel": channel_id, **help_message(bot_user_id).as_kwargs()}
            if reply_thread:
                kwargs["thread_ts"] = reply_thread
            await client.chat_postMessage(**kwargs)
            words = len(strip_mentions(text).split())
            log.info("help sent", extra={"channel": channel_id, "message_ts": ts, "words": words})
    except Exception:
        state, error_code = "failed", "internal"
        log.exception("answering a mention failed", extra={"channel": channel_id, "message_ts": ts})
        await _apologise(client, channel_id, reply_thread, ts)
    except asyncio.CancelledError:
        # Shutdown ran out of grace mid-answer: say so instead of leaving the question unanswered.
        log.warning("question interrupted by shutdown", extra={"channel": channel_id, "message_ts": ts})
        try:
            async with asyncio.timeout(5):
                await _apologise(client, channel_id, reply_thread, ts, reason=INTERRUPTED_QUESTION)
                await deps.state.finish(request_id, state="failed", error_code="interrupted")
        except Exception:
            log.exception("could not tell about the interrupted question", extra={"channel": channel_id})
        raise
    await deps.state.finish(request_id, state=state, error_code=error_code)


async def _apologise(
    client: Any, channel_id: str, reply_thread: str | None, ts: str, *, reason: str = APOLOGY
) -> None:
    try:
        kwargs: dict[str, Any] = {"channel": channel_id, **failure_text(reason).as_kwargs()}
        if reply_thread:
            kwargs["thread_ts"] = reply_thread
        await client.chat_postMessage(**kwargs)
    except Exception:
        log.exception("could not apologise either", extra={"channel": channel_id, "message_ts": ts})
