"""Links -> summaries in Slack: claim each link once, show progress the way Slack shows it (a thread
status or a reaction, never a placeholder), summarize, then post the summary as a NEW message, so the
notification and the channel preview show its TL;DR (Slack does not notify edits).

A message with several links gets one reply per link, each posted as soon as it is ready: a cached
summary is not held back by a slow page, each notification previews its own TL;DR, each reply carries
its own feedback buttons and its own follow-up thread context, and one reply per link stays far inside
Slack's 50-block limit (three full summaries in one message would not).

Runs after Slack has been acknowledged, inside `deps.tasks`. One link failing never affects the others.
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
from handlers.progress import Progress
from handlers.render import (
    Message,
    failure_message,
    failure_text,
    fit,
    skipped_links_message,
    status_text,
    summary_message,
)
from ringkas.documents import SummaryResult, UsageContext
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


async def _respond(response_url: str, message: Message, *, visible: bool) -> None:
    webhook = AsyncWebhookClient(response_url, timeout=30)
    response = await webhook.send(
        response_type="in_channel" if visible else "ephemeral",
        replace_original=False,
        unfurl_links=False,
        unfurl_media=False,
        **message.as_kwargs(),
    )
    if response.status_code != 200:
        raise ResponseUrlFailed(response.status_code, response.body or "")


async def post_summary(client: Any, job: LinkJob, message: Message) -> str | None:
    """THE one place a summary reply (or a link's failure, or a note about the links) is posted: a new
    message in the job's thread; returns its ts. When the bot may not post in the channel and the request
    came with a response_url (slash command, shortcut), it goes there (visible to the channel) instead and
    None is returned. When Slack refuses the blocks (or the size), the same words go out as plain text."""
    try:
        return await _post_once(client, job, message)
    except (SlackApiError, ResponseUrlFailed) as exc:
        if slack_error(exc) not in CONTENT_REFUSED:
            raise
        log.warning("Slack refused the message; sending it as plain text",
                    extra={"channel": job.channel_id, "error": slack_error(exc)})
        return await _post_once(client, job, plain_version(message))


async def _post_once(client: Any, job: LinkJob, message: Message) -> str | None:
    kwargs: dict[str, Any] = {"channel": job.channel_id, "unfurl_links": False, "unfurl_media": False}
    if job.thread_ts:
        kwargs["thread_ts"] = job.thread_ts
    try:
        response = await client.chat_postMessage(**kwargs, **message.as_kwargs())
    except SlackApiError as exc:
        if slack_error(exc) in CANNOT_POST and job.response_url:
            await _respond(job.response_url, message, visible=True)
            return None
        raise
    return str(response["ts"])


async def summarize_links(deps: Deps, client: Any, job: LinkJob) -> bool:
    """Summarize every link of `job` that no earlier delivery of the same message already took (however
    the link arrived: passive, mention, reaction, shortcut — one message's link gets one summary).
    Returns False when every link was already taken (nothing new started)."""
    claimed: list[tuple[str, int]] = []
    try:
        for url in job.links:
            request_id = await deps.state.claim(
                kind=job.kind, team_id=job.team_id, channel_id=job.channel_id, message_ts=job.message_ts,
                link=url, user_id=job.user_id, reclaim_after=link_deadline(deps) + 300,
            )
            if request_id is not None:
                claimed.append((url, request_id))
    except Exception:
        # The database is down or locked for too long: nothing can be recorded, so nothing is started.
        log.exception("could not record the request", extra={"channel": job.channel_id, "kind": job.kind})
        if job.kind != "message":  # someone asked explicitly: say so rather than stay silent
            await apologise(client, job, translator(None))
        return True
    if not claimed:
        log.info("links already handled", extra={"channel": job.channel_id, "message_ts": job.message_ts})
        return False
    language = await summary_language(deps, job.team_id, job.channel_id)
    _ = words_for(deps, language)

    work = [
        asyncio.get_running_loop().create_task(_summarize_one(deps, job, url, language))
        for url, _request_id in claimed
    ]
    _done, pending = await asyncio.wait(work, timeout=QUICK)
    progress = Progress(
        client, channel_id=job.channel_id, message_ts=job.message_ts if job.has_message else None,
        thread_ts=job.thread_ts, status=status_text(claimed[0][0], _), try_status=job.kind == "mention",
        response_url=job.response_url,
    )
    if pending:
        await progress.start()
    # Only the delivery that won the message's first link tells about skipped ones (said once).
    if job.skipped and claimed[0][0] == job.links[0]:
        try:
            await post_summary(client, job, skipped_links_message(job.skipped,
                                                                  deps.settings.max_links_per_message, _))
        except Exception:
            log.exception("could not post the skipped-links note", extra={"channel": job.channel_id})

    outcomes = await asyncio.gather(
        *(_deliver(deps, client, job, url, request_id, task, _)
          for (url, request_id), task in zip(claimed, work, strict=True))
    )
    await progress.finish(all(outcomes))
    return True


async def _summarize_one(deps: Deps, job: LinkJob, url: str, language: str) -> SummaryResult:
    user, channel = (job.team_id, job.user_id or job.channel_id), (job.team_id, job.channel_id)
    async with deps.slots.slot(user=user, channel=channel), asyncio.timeout(link_deadline(deps)):
        return await deps.ringkas.summarize(
            url,
            language=language,
            context=UsageContext(team_id=job.team_id, channel_id=job.channel_id, user_id=job.user_id),
        )


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


async def apologise(client: Any, job: LinkJob, _: Translator, reason: str = APOLOGY) -> None:
    """Tell the person, where the answer would have gone, that their request failed on our side."""
    try:
        await post_summary(client, job, failure_text(_(reason)))
    except Exception:
        log.exception("could not apologise either", extra={"channel": job.channel_id, "kind": job.kind})


async def _deliver(
    deps: Deps, client: Any, job: LinkJob, url: str, request_id: int, task: asyncio.Task[SummaryResult],
    _: Translator,
) -> bool:
    """Wait for one link's summary and post it (or its failure); True when it was summarized."""
    extra = {"channel": job.channel_id, "message_ts": job.message_ts, "link": url, "kind": job.kind}
    result: SummaryResult | None = None
    error_code: str | None = None
    try:
        result = await task
        message = summary_message(result, shared_url=url, requested_by=job.requested_by)
    except RingkasError as exc:
        error_code = exc.code
        log.info("link not summarized", extra={**extra, "error": exc.code, "detail": exc.detail})
        message = failure_message(url, failure_reason(exc, _), requested_by=job.requested_by, _=_)
    except TimeoutError:
        error_code = "deadline"
        log.warning("link took too long", extra=extra)
        message = failure_message(url, _(TOO_SLOW), requested_by=job.requested_by, _=_)
    except Exception:
        error_code = "internal"
        log.exception("summarizing a link failed unexpectedly", extra=extra)
        message = failure_message(url, _(APOLOGY), requested_by=job.requested_by, _=_)
    except asyncio.CancelledError:
        # Shutdown ran out of grace: say so, so nobody waits for a summary that will not come.
        log.warning("link interrupted by shutdown", extra=extra)
        task.cancel()
        await _interrupted(deps, client, job, url, request_id, _)
        raise

    reply_ts: str | None = None
    try:
        reply_ts = await post_summary(client, job, message)
    except Exception:
        log.exception("could not deliver the result to Slack", extra=extra)
        error_code = error_code or "slack_error"

    article_id = result.article.id if result is not None else None
    try:
        thread_ts = job.thread_ts or reply_ts
        if article_id is not None and thread_ts:
            await deps.state.link_thread(
                team_id=job.team_id, channel_id=job.channel_id, thread_ts=thread_ts, article_id=article_id,
                message_ts=job.message_ts, shared_by=job.user_id,
            )
        await deps.state.finish(
            request_id,
            state="failed" if error_code else "done",
            error_code=error_code,
            article_id=article_id,
            reply_ts=reply_ts,
        )
    except Exception:
        log.exception("could not record the outcome", extra=extra)
    log.info("link handled", extra={**extra, "state": "failed" if error_code else "done",
                                    "cached": bool(result and result.cached)})
    return error_code is None


async def _interrupted(
    deps: Deps, client: Any, job: LinkJob, url: str, request_id: int, _: Translator
) -> None:
    try:
        async with asyncio.timeout(5):
            reply_ts = await post_summary(client, job, failure_message(url, _(INTERRUPTED),
                                                                       requested_by=job.requested_by, _=_))
            await deps.state.finish(request_id, state="failed", error_code="interrupted", reply_ts=reply_ts)
    except Exception:
        log.exception("could not tell about the interrupted link", extra={"channel": job.channel_id})
