"""More ways in, one pipeline: a reaction with SUMMARIZE_REACTION (`:memo:` by default) on a message, and
the message shortcut "Summarize link", summarize that message's links in its thread.

Both end in `accept_links` (the durable link job) with the message's own channel and ts, so
`SlackState.claim` makes one
message's link get one summary however it arrives (shared passively, mentioned, reacted to, shortcut):
asking again for a message already summarized only tells the person, privately, where the summary is.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from handlers.deps import Deps
from handlers.link_jobs import accept_links
from handlers.links import extract_links
from handlers.summaries import LinkJob, channel_words, split_links
from ringkas.i18n import Translator

log = logging.getLogger("ringkas.slack.triggers")

SHORTCUT_ID = "summarize_link"  # the callback id of the message shortcut in manifest.json


def register(app: Any, deps: Deps) -> None:
    @app.event("reaction_added")
    async def on_reaction(body: dict[str, Any], event: dict[str, Any], context: Any, client: Any) -> None:
        item = event.get("item") or {}
        if (deps.tasks.closing or event.get("reaction") != deps.settings.summarize_reaction
                or item.get("type") != "message" or not item.get("channel") or not item.get("ts")):
            return
        if event.get("user") in {None, context.get("bot_user_id")}:
            return  # the bot's own progress reactions, or no person
        team_id = str(context.get("team_id") or body.get("team_id") or "")
        deps.tasks.spawn(
            _from_reaction(deps, client, team_id=team_id, channel_id=str(item["channel"]),
                           ts=str(item["ts"]), user_id=str(event["user"])),
            name=f"reaction:{item['channel']}:{item['ts']}",
        )

    @app.shortcut(SHORTCUT_ID)
    async def on_shortcut(ack: Any, shortcut: dict[str, Any], client: Any, context: Any) -> None:
        await ack()
        if deps.tasks.closing:
            return
        found = shortcut.get("message") or {}
        channel_id = str((shortcut.get("channel") or {}).get("id") or "")
        team_id = str(context.get("team_id") or (shortcut.get("team") or {}).get("id") or "")
        user_id = str((shortcut.get("user") or {}).get("id") or "")
        if not channel_id or not found.get("ts"):
            return
        deps.tasks.spawn(
            _summarize_message(deps, client, kind="shortcut", team_id=team_id, channel_id=channel_id,
                               found=found, user_id=user_id, response_url=shortcut.get("response_url")),
            name=f"shortcut:{channel_id}:{found.get('ts')}",
        )


async def _from_reaction(deps: Deps, client: Any, *, team_id: str, channel_id: str, ts: str,
                         user_id: str) -> None:
    found = await _find_message(client, channel_id, ts)
    if found is None:
        _ = await channel_words(deps, team_id, channel_id)
        await _tell(client, channel_id, user_id, _("I couldn't read that message, so I can't summarize it. "
                                                   "Is the app in this channel?"))
        return
    await _summarize_message(deps, client, kind="reaction", team_id=team_id, channel_id=channel_id,
                             found=found, user_id=user_id, response_url=None)


async def _find_message(client: Any, channel_id: str, ts: str) -> dict[str, Any] | None:
    """The message at `ts`: a channel message via conversations.history, a thread reply via
    conversations.replies (history lists only a thread's parent)."""
    try:
        history = await client.conversations_history(channel=channel_id, latest=ts, oldest=ts, inclusive=True,
                                                     limit=1)
        for found in history.get("messages") or []:
            if found.get("ts") == ts:
                return dict(found)
        replies = await client.conversations_replies(channel=channel_id, ts=ts, limit=1, inclusive=True)
        for found in replies.get("messages") or []:
            if found.get("ts") == ts:
                return dict(found)
    except SlackApiError as exc:
        log.info("could not read the reacted message",
                 extra={"channel": channel_id, "error": exc.response.get("error") if exc.response else None})
    return None


async def _summarize_message(
    deps: Deps, client: Any, *, kind: str, team_id: str, channel_id: str, found: dict[str, Any],
    user_id: str, response_url: str | None,
) -> None:
    _ = await channel_words(deps, team_id, channel_id)
    links = extract_links(found.get("text") or "")
    if not links:
        await _tell(client, channel_id, user_id, _("That message has no web link to summarize."))
        return
    accepted, skipped = split_links(links, deps.settings.max_links_per_message)
    ts = str(found["ts"])
    job = LinkJob(
        kind=kind, team_id=team_id, channel_id=channel_id, message_ts=ts,
        thread_ts=str(found.get("thread_ts") or ts), user_id=user_id, links=accepted, skipped=skipped,
        requested_by=user_id, response_url=response_url,
    )
    if await accept_links(deps, client, job):
        return
    try:  # nothing new: already summarized (rather than a database hiccup, retried in the background)
        done = await deps.state.is_claimed(team_id=team_id, channel_id=channel_id, message_ts=ts,
                                           link=accepted[0])
    except Exception:
        done = False
    if done:
        await _already(client, channel_id, ts, user_id, _)


async def _already(client: Any, channel_id: str, ts: str, user_id: str, _: Translator) -> None:
    where = _("in its thread")
    try:
        found = await client.chat_getPermalink(channel=channel_id, message_ts=ts)
        if found.get("permalink"):
            where = f"<{found['permalink']}|{where}>"
    except SlackApiError:
        pass
    await _tell(client, channel_id, user_id, _("That message's links are already summarized {where}.",
                                               where=where))


async def _tell(client: Any, channel_id: str, user_id: str, text: str) -> None:
    """A private note to the person who asked (only they see it)."""
    try:
        await client.chat_postEphemeral(channel=channel_id, user=user_id, text=text)
    except SlackApiError as exc:
        log.info("could not send a private note", extra={"channel": channel_id,
                                                         "error": exc.response.get("error")})
