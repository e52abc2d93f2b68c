"""What the link flow (handlers/link_jobs.py) shares with the other Slack surfaces: the job of one
message's links, the language and words of a channel, failures in the reader's language, and posting
with a plain-text fallback when Slack refuses blocks.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.webhook.async_client import AsyncWebhookClient

from handlers.deps import Deps
from handlers.render import (
    Message,
    fit,
)
from ringkas.errors import RingkasError
from ringkas.i18n import N_, Translator, translator

log = logging.getLogger("ringkas.slack.summaries")

APOLOGY = N_("Something went wrong on my side. Sorry! Please try again in a little while.")
TOO_SLOW = N_("That took far too long, so I gave up. Please try again later.")
INTERRUPTED = N_("I was restarting and couldn't finish this one. Please share the link again in a minute.")
QUICK = 0.4  # seconds: work done sooner (a cached summary) shows no progress at all
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

    kind: str  # mention | message | dm | command | reaction | shortcut
    team_id: str
    channel_id: str
    message_ts: str  # the message the links came from (for /summarize: the trigger id)
    thread_ts: str | None  # reply in this thread; None = post top-level
    user_id: str | None
    links: list[str]
    skipped: list[str] = field(default_factory=list)
    requested_by: str | None = None  # /summarize, reaction, shortcut: named in the messages
    response_url: str | None = None  # /summarize, shortcut: fallback when the bot cannot post in the channel

    @property
    def has_message(self) -> bool:
        """True when the links came from a real Slack message (something to react to)."""
        return self.kind != "command"


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


def words_for(deps: Deps, language: str | None) -> Translator:
    """The bot's own words: the channel's language, else SUMMARY_LANGUAGE, else English."""
    if language and language != "auto":
        return translator(language)
    default = deps.settings.summary_language
    return translator(default if default != "auto" else "en")


async def channel_words(deps: Deps, team_id: str, channel_id: str) -> Translator:
    """The catalog for a channel's messages (see `words_for`)."""
    return words_for(deps, await summary_language(deps, team_id, channel_id))


async def quick_channel_words(deps: Deps, team_id: str, channel_id: str) -> Translator:
    """`channel_words` for answers given inside a Slack ack: a slow database gets the default language
    rather than delaying the ack (Slack waits at most 3 s)."""
    try:
        async with asyncio.timeout(0.5):
            channel = await deps.state.channel_settings(team_id, channel_id)
        return words_for(deps, channel.language)
    except Exception:
        log.warning("channel settings slow or unreadable; answering in the default language",
                    extra={"channel": channel_id})
        return words_for(deps, None)


def link_deadline(deps: Deps) -> float:
    """A stall guard for one link: far beyond any healthy fetch + model retries."""
    settings = deps.settings
    budget = settings.fetch_timeout * 3 + settings.openai_timeout * (settings.openai_max_retries + 1) * 2 + 60
    return min(budget, 1800.0)


def failure_reason(exc: RingkasError, _: Translator) -> str:
    """A RingkasError in the reader's language: English keeps the pipeline's detailed words; other
    catalogs say what went wrong by the error's kind (and the HTTP status a site answered)."""
    if _.language == "en":
        return exc.user_message
    status = re.search(r"HTTP (\d{3})", exc.detail or "")
    if exc.code == "site_refused" and status:
        return _("The site answered with error {status}.", status=status.group(1))
    message = _ERROR_WORDS.get(exc.code)
    return _(message) if message else _(exc.default_message)


_ERROR_WORDS = {
    "invalid_url": N_("That doesn't look like a web link I can open (only http and https links work)."),
    "blocked_address": N_("That link points to a private or internal address, so I won't open it."),
    "too_many_redirects": N_("That link redirected too many times, so I gave up."),
    "timed_out": N_("The site took too long to answer, so I gave up."),
    "too_large": N_("That page is too large for me to read."),
    "site_refused": N_("The site refused the request or could not be reached."),
    "unsupported_content": N_("That link isn't a web page, PDF or text file, so I can't summarize it."),
    "not_an_article": N_("I couldn't find any article text on that page."),
    "model_unavailable": N_("The language model is unavailable right now, even after several retries. "
                            "Please try again later."),
    "model_output_invalid": N_("The language model gave an answer I couldn't use. Please try again."),
    "not_found": N_("I couldn't find that."),
    "config": N_("The configuration is invalid."),
    "limit": N_("A usage limit was reached. Please try again later."),
    "empty_question": N_("Ask me something about the article, for example: what does it say about pricing?"),
    "prompt_too_small": N_("MAX_INPUT_TOKENS is too small to fit the question with any of the article. "
                           "Ask a shorter question, or raise MAX_INPUT_TOKENS."),
    "no_article": N_("There is no summarized article here to ask about yet. Share a link first."),
    "no_sources": N_("I couldn't reach any of the news sources for the digest. I'll try again later."),
    "post_failed": N_("Slack refused the digest message."),
}


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
