"""Links -> summaries in Slack: claim each link once, show progress at once, summarize, then replace the
progress message with the summary (or a plain-words failure).

Runs after Slack has been acknowledged, inside `deps.tasks`. One link failing never affects the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.webhook.async_client import AsyncWebhookClient

from handlers.deps import Deps
from handlers.render import (
    Message,
    fit,
)

log = logging.getLogger("ringkas.slack.summaries")

APOLOGY = "Something went wrong on my side. Sorry! Please try again in a little while."
TOO_SLOW = "That took far too long, so I gave up. Please try again later."
INTERRUPTED = "I was restarting and couldn't finish this one. Please share the link again in a minute."
# Slack errors meaning "the bot cannot post here", e.g. /summarize in a channel the bot is not in.
CANNOT_POST = frozenset({"not_in_channel", "channel_not_found", "is_archived", "restricted_action"})
# Slack errors about the message itself (its blocks or size): the same words as plain text get through.
CONTENT_REFUSED = frozenset({
    "invalid_blocks", "invalid_blocks_format", "msg_too_long", "msg_blocks_too_long", "too_many_blocks",
    "invalid_attachments", "invalid_arguments",
})
PLAIN_LIMIT = 3900  # Slack's advice for a message's text; far below its 40k hard cut


class ResponseUrlFailed(Exception):
    """A slash command's response_url did not take the message (Slack answers such posts with a status,
    not an exception)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"response_url answered {status}: {body[:200]}")
        self.error = body.strip()[:100] or str(status)


def slack_error(exc: BaseException) -> str | None:
    """Slack's error code (`not_in_channel`, `invalid_blocks`, …) of a failed Web API or response_url call."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error")) if exc.response is not None else None
    if isinstance(exc, ResponseUrlFailed):
        return exc.error
    return None


def plain_version(message: Message) -> Message:
    """`message` as mrkdwn text without blocks, for when Slack refuses the blocks."""
    lines: list[str] = []
    for block in message.blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"*{(block.get('text') or {}).get('text', '')}*")
        elif kind == "section":
            lines.append((block.get("text") or {}).get("text", ""))
            lines.extend(field.get("text", "") for field in block.get("fields") or [])
        elif kind == "context":
            lines.append(" · ".join(e.get("text", "") for e in block.get("elements") or [] if "text" in e))
        elif kind == "divider":
            lines.append("───")
    text = "\n".join(line for line in lines if line.strip()) or message.text
    return Message(text=fit(text, PLAIN_LIMIT), blocks=[])


async def post_message(client: Any, message: Message, **where: Any) -> Any:
    """chat.postMessage of `message` at `where` (channel, thread_ts, …); if Slack refuses the blocks,
    the same content again as plain text, so a reply is never lost to a rendering problem."""
    try:
        return await client.chat_postMessage(**where, **message.as_kwargs())
    except SlackApiError as exc:
        error = slack_error(exc)
        if error not in CONTENT_REFUSED:
            raise
        log.warning("Slack refused the message; sending it as plain text",
                    extra={"channel": where.get("channel"), "error": error})
        return await client.chat_postMessage(**where, **plain_version(message).as_kwargs())


@dataclass(frozen=True)
class LinkJob:
    """Links from one Slack message (or one /summarize) and where the answers go."""

    kind: str  # mention | message | dm | command
    team_id: str
    channel_id: str
    message_ts: str  # the message the links came from (for /summarize: the trigger id)
    thread_ts: str | None  # reply in this thread; None = post top-level
    user_id: str | None
    links: list[str]
    skipped: list[str] = field(default_factory=list)
    requested_by: str | None = None  # /summarize: named in the messages
    response_url: str | None = None  # /summarize: fallback when the bot cannot post in the channel


def split_links(links: list[str], cap: int) -> tuple[list[str], list[str]]:
    return links[:cap], links[cap:]


async def summary_language(deps: Deps, team_id: str, channel_id: str) -> str:
    """The channel's language if set there, else SUMMARY_LANGUAGE ("auto" = the article's language)."""
    try:
        channel = await deps.state.channel_settings(team_id, channel_id)
    except Exception:
        log.exception("could not read the channel's settings; using the default language",
                      extra={"channel": channel_id})
        return deps.settings.summary_language
    return channel.language or deps.settings.summary_language


def link_deadline(deps: Deps) -> float:
    """A stall guard for one link: far beyond any healthy fetch + model retries."""
    settings = deps.settings
    budget = settings.fetch_timeout * 3 + settings.openai_timeout * (settings.openai_max_retries + 1) * 2 + 60
    return min(budget, 1800.0)


class Reply:
    """Where one link's messages go: a progress message later edited into the result.

    Posts as the bot with chat.postMessage; when the bot may not post in the channel and a response_url
    exists (slash commands), falls back to response_url (progress ephemeral, result in_channel).
    """

    def __init__(self, client: Any, job: LinkJob) -> None:
        self.client = client
        self.job = job
        self.ts: str | None = None
        self.via_response_url = False

    async def _post(self, message: Message) -> str:
        kwargs: dict[str, Any] = {"channel": self.job.channel_id, "unfurl_links": False}
        kwargs["unfurl_media"] = False
        if self.job.thread_ts:
            kwargs["thread_ts"] = self.job.thread_ts
        response = await self.client.chat_postMessage(**kwargs, **message.as_kwargs())
        return str(response["ts"])

    async def _respond(self, message: Message, *, visible: bool) -> None:
        assert self.job.response_url
        webhook = AsyncWebhookClient(self.job.response_url, timeout=30)
        response = await webhook.send(
            response_type="in_channel" if visible else "ephemeral",
            replace_original=False,
            unfurl_links=False,
            unfurl_media=False,
            **message.as_kwargs(),
        )
        if response.status_code != 200:
            raise ResponseUrlFailed(response.status_code, response.body or "")

    async def start(self, message: Message) -> None:
        try:
            self.ts = await self._post(message)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            if error in CANNOT_POST and self.job.response_url:
                self.via_response_url = True
                await self._respond(message, visible=False)
                return
            raise

    async def finish(self, message: Message) -> str | None:
        """Replace the progress message with `message`; returns the ts of the message holding it.
        When Slack refuses the message's blocks (or size), the same content goes out as plain text."""
        try:
            return await self._finish(message)
        except (SlackApiError, ResponseUrlFailed) as exc:
            error = slack_error(exc)
            if error not in CONTENT_REFUSED:
                raise
            log.warning("Slack refused the message; sending it as plain text",
                        extra={"channel": self.job.channel_id, "error": error})
            return await self._finish(plain_version(message))

    async def _finish(self, message: Message) -> str | None:
        if self.via_response_url:
            await self._respond(message, visible=True)
            return None
        if self.ts is not None:
            try:
                # blocks=[] (a plain-text version) clears the progress message's blocks
                await self.client.chat_update(channel=self.job.channel_id, ts=self.ts, **message.as_kwargs())
                return self.ts
            except SlackApiError as exc:
                if slack_error(exc) in CONTENT_REFUSED:
                    raise  # posting anew would be refused alike
                # The progress message was deleted or cannot be edited: post the result as a new message.
                log.warning("chat.update failed, posting anew", extra={"error": slack_error(exc)})
        self.ts = await self._post(message)
        return self.ts
