"""Follow-up questions in Slack: `@Ringkas question` in a summary's thread, and `/ask`.

`/ask QUESTION` asks about the article most recently summarized in the channel; `/ask QUESTION LINK`
about that link's article. Answers are posted for everyone (in the article's thread when it has one)
and name the article and who asked. Usage problems are answered privately.

Both are durable jobs (handlers/question_jobs.py: accepted before the ack, answered by a worker, posted
through the outbox). This module is what they show: the question's text, the answer as a message, and the
footer under a streamed answer (handlers/streaming.py).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject, SectionBlock

from handlers.deps import Deps
from handlers.links import display_host, slack_unescape
from handlers.render import (
    CONTEXT_LIMIT,
    FALLBACK_LIMIT,
    SECTION_LIMIT,
    Message,
    escape,
    feedback_block,
    fit,
    link,
    user_mention,
)
from handlers.summaries import quick_channel_words
from ringkas.i18n import N_, Translator, translator
from ringkas.qa import Answer, EmptyQuestion
from ringkas.reading.markdown import bold_to_slack

log = logging.getLogger("ringkas.handlers.questions")

THINKING = "thinking_face"
FAILED = "warning"
QUESTION_SHOWN_CHARS = 600
_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")
_LINK_MARKUP = re.compile(r"<(?:https?|mailto):[^<>]*>", re.I)
_BARE_LINK = re.compile(r"(?<![\w/])https?://[^\s<>]+", re.I)
_NOT_IN_CHANNEL = {"not_in_channel", "channel_not_found", "is_archived"}
_HELP_WORDS = frozenset({"help", "bantuan", "usage", "-h", "--help"})
_WORD = re.compile(r"\w")

ASK_USAGE = N_(
    "Ask about the article most recently summarized in this channel: `/ask what does it say about pricing?`\n"
    "Or about any article: `/ask who is behind this? https://example.com/news/story`\n"
    "In a summary's thread you can also mention me with your question: `@Ringkas and what about Bing?`"
)
NO_ARTICLE_YET = N_(
    "No article has been summarized in this channel yet, so there is nothing to ask about. "
    "Share a link first, or add one to your question: `/ask what is new here? https://example.com/news/story`"
)
THREAD_HINT = N_(
    "Ask me anything about the article above: mention me with your question in this thread, "
    "e.g. `@Ringkas what does it say about pricing?` I answer from the article itself."
)


def register(app: Any, deps: Deps) -> None:
    """Registers /ask: the question becomes a durable job before the ack (handlers/question_jobs.py)."""
    from handlers.question_jobs import ASK_JOB, accept_question, ask_progress

    @app.command("/ask")
    async def ask_command(ack: Any, command: dict[str, Any], respond: Any, context: Any) -> None:
        text = command.get("text") or ""
        team_id = str(context.get("team_id") or command.get("team_id") or "")
        channel_id = str(command.get("channel_id") or "")
        user_id = command.get("user_id")
        _ = await quick_channel_words(deps, team_id, channel_id)
        question = question_text(text)
        if not question or question.casefold() in _HELP_WORDS:
            await ack()
            deps.tasks.spawn(_private(respond, _(ASK_USAGE)), name=f"ask:usage:{channel_id}")
            return
        if deps.questions is None:
            await ack(text=_("Questions are not available in this app right now."))
            return
        payload = {"team_id": team_id, "channel_id": channel_id, "user_id": user_id, "text": text,
                   "response_url": command.get("response_url")}
        # Slash commands have no message ts; the trigger id is unique per invocation.
        await accept_question(deps, kind="ask", team_id=team_id, channel_id=channel_id,
                              message_ts=str(command.get("trigger_id") or command.get("response_url") or ""),
                              user_id=user_id, job_kind=ASK_JOB, payload=payload)
        await ack(text=ask_progress(text, _))


def _shown(question: str) -> str:
    """The question as shown under its answer: cut at QUESTION_SHOWN_CHARS."""
    if len(question) > QUESTION_SHOWN_CHARS:
        return question[: QUESTION_SHOWN_CHARS - 1] + "…"
    return question


def _asked(_: Any, asked_by: str | None) -> str:
    return _("{user} asked", user=user_mention(asked_by) or _("Someone"))


def stream_footer(answer: Answer, *, question: str | None, asked_by: str | None) -> list[dict[str, Any]]:
    """Blocks under a streamed answer: who asked what (for /ask) and the article(s) it rests on."""
    _ = translator(answer.language)
    parts: list[str] = []
    if question:
        parts.append(f"{_asked(_, asked_by)}: {escape(' '.join(_shown(question).split()))}")
    parts.append(_("About: {articles}", articles=article_links(answer)))
    return [ContextBlock(elements=[MarkdownTextObject(text=fit(p, CONTEXT_LIMIT)) for p in parts]).to_dict(),
            feedback_block("answer", answer.question_id, _)]


# --- text in, text out ---------------------------------------------------------------------------


def question_text(text: str | None, *, strip_links: bool = True) -> str:
    """The question without user mentions (the bot's own included) and, for /ask, without its link."""
    if not text:
        return ""
    cleaned = _MENTION.sub(" ", text)
    if strip_links:
        cleaned = _BARE_LINK.sub(" ", _LINK_MARKUP.sub(" ", cleaned))
    cleaned = slack_unescape(cleaned)
    lines = [" ".join(line.split()) for line in cleaned.splitlines()]
    question = "\n".join(line for line in lines if line).strip()
    # Nothing to ask without a single letter or digit ("?", a stray zero-width space).
    return question if _WORD.search(question) else ""


def slack_answer_text(text: str) -> str:
    """Model text (light markdown) as safe Slack mrkdwn: escaped, no pings, **bold** -> *bold*.

    Linear time (no backtracking regex over model text): `x **a` repeated froze the event loop."""
    safe = escape(text.strip())
    lines = []
    for line in safe.split("\n"):
        heading = line.lstrip("#")
        if 1 <= len(line) - len(heading) <= 6 and heading[:1] in {" ", "\t"} and heading.strip():
            line = f"*{heading.strip()}*"
        elif line.startswith("&gt;"):
            line = "> " + line[4:].removeprefix(" ")  # keep the model's block quotes
        lines.append(line)
    return bold_to_slack("\n".join(lines))


def article_links(answer: Answer) -> str:
    links = []
    for article in answer.articles:
        url = article.canonical_url
        if not url.startswith(("http://", "https://")):
            url = article.url
        title = " ".join((article.title or display_host(url)).split())
        links.append(link(url, title[:150]))
    return ", ".join(links)


def answer_message(
    answer: Answer, *, question: str | None = None, asked_by: str | None = None
) -> dict[str, Any]:
    """chat.postMessage arguments for an answer; `question`/`asked_by` are shown for /ask."""
    _ = translator(answer.language)
    blocks: list[dict[str, Any]] = []
    fallback: list[str] = []
    if question:
        shown, asked = _shown(question), _asked(_, asked_by)
        quoted = "\n".join("> " + escape(line) for line in shown.splitlines())
        blocks.append(_section(f"*{asked}:*\n{quoted}"))
        fallback.append(f"{asked}: {escape(shown)}")
    body = slack_answer_text(answer.text)
    for part in _paragraph_chunks(body, SECTION_LIMIT - 100)[:20]:
        blocks.append(_section(part))
    fallback.append(body)
    about = _("About: {articles}", articles=article_links(answer))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=fit(about, CONTEXT_LIMIT))]).to_dict())
    blocks.append(feedback_block("answer", answer.question_id, _))
    return {"text": fit("\n".join(fallback), FALLBACK_LIMIT), "blocks": blocks, "unfurl_links": False}


def _as_message(kwargs: dict[str, Any]) -> Message:
    return Message(text=kwargs["text"], blocks=kwargs["blocks"])


def _section(text: str) -> dict[str, Any]:
    return SectionBlock(text=MarkdownTextObject(text=fit(text, SECTION_LIMIT))).to_dict()


def _paragraph_chunks(text: str, limit: int) -> list[str]:
    """Split escaped text at paragraph (then line) boundaries into pieces of at most `limit` chars."""
    chunks: list[str] = []
    current = ""
    for paragraph in re.split(r"(\n\s*\n)", text):
        if len(current) + len(paragraph) <= limit:
            current += paragraph
            continue
        if current.strip():
            chunks.append(current.strip())
        current = paragraph
        while len(current) > limit:
            cut = current.rfind("\n", 0, limit)
            if cut <= 0:
                cut = current.rfind(" ", 0, limit)
            if cut <= 0:
                cut = limit
            cut = _entity_safe(current, cut)
            chunks.append(current[:cut].strip())
            current = current[cut:]
    if current.strip():
        chunks.append(current.strip())
    return chunks or [""]


def _entity_safe(text: str, cut: int) -> int:
    amp = text.rfind("&", 0, cut)
    if amp != -1 and ";" not in text[amp:cut]:
        return amp or cut
    return cut


async def answered_in_thread_note(
    client: Any, channel_id: str, reply_ts: str | None, articles: str, _: Translator
) -> str:
    """The asker's private note: where the answer is (a permalink when Slack gives one), about what."""
    where = _("in the article's thread")
    if reply_ts:
        try:
            found = await client.chat_getPermalink(channel=channel_id, message_ts=reply_ts)
            permalink = found.get("permalink")
            if permalink:
                where = f"<{permalink}|{where}>"
        except Exception:
            log.info("no permalink for the answer", extra={"channel": channel_id})
    return _("I answered {where}: {articles}", where=where, articles=articles)


async def _private(respond: Any, text: str) -> None:
    try:
        await respond(text=text, response_type="ephemeral", replace_original=False)
    except Exception:
        log.warning("could not send a private reply", exc_info=True)


async def _react(client: Any, method: str, channel_id: str, ts: str, name: str) -> None:
    """Progress reactions are a nicety: a missing scope or a duplicate must not stop the answer."""
    try:
        await getattr(client, method)(channel=channel_id, timestamp=ts, name=name)
    except SlackApiError as exc:
        log.debug("reaction failed", extra={"method": method, "error": exc.response.get("error")})


__all__ = ["EmptyQuestion", "answer_message", "question_text", "register"]
