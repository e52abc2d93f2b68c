"""Follow-up questions in Slack: `@Ringkas question` in a summary's thread, and `/ask`.

`/ask QUESTION` asks about the article most recently summarized in the channel; `/ask QUESTION LINK`
about that link's article. Answers are posted for everyone (in the article's thread when it has one)
and name the article and who asked. Usage problems are answered privately.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject, SectionBlock

from handlers.deps import Deps
from handlers.links import display_host, extract_links, slack_unescape
from handlers.render import (
    CONTEXT_LIMIT,
    FALLBACK_LIMIT,
    SECTION_LIMIT,
    Message,
    escape,
    fit,
    link,
    user_mention,
)
from handlers.summaries import post_message
from ringkas.errors import RingkasError
from ringkas.qa import Answer, EmptyQuestion, NoArticle
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

ASK_USAGE = (
    "Ask about the article most recently summarized in this channel: `/ask what does it say about pricing?`\n"
    "Or about any article: `/ask who is behind this? https://example.com/news/story`\n"
    "In a summary's thread you can also mention me with your question: `@Ringkas and what about Bing?`"
)
NO_ARTICLE_YET = (
    "No article has been summarized in this channel yet, so there is nothing to ask about. "
    "Share a link first, or add one to your question: `/ask what is new here? https://example.com/news/story`"
)
THREAD_HINT = (
    "Ask me anything about the article above: mention me with your question in this thread, "
    "e.g. `@Ringkas what does it say about pricing?` I answer from the article itself."
)

_WORDS = {
    "en": {"asked": "{user} asked", "about": "About", "not_covered": "The article does not say."},
    "id": {"asked": "{user} bertanya", "about": "Tentang", "not_covered": "Artikel tidak membahasnya."},
}


def register(app: Any, deps: Deps) -> None:
    """Registers /ask."""

    @app.command("/ask")
    async def ask_command(ack: Any, command: dict[str, Any], respond: Any, client: Any) -> None:
        await ack()
        text = command.get("text") or ""
        team_id = command.get("team_id") or ""
        channel_id = command.get("channel_id") or ""
        user_id = command.get("user_id")
        deps.tasks.spawn(
            _ask(deps, client, respond, team_id=team_id, channel_id=channel_id, user_id=user_id, text=text),
            name=f"ask:{channel_id}",
        )


async def _ask(
    deps: Deps, client: Any, respond: Any, *, team_id: str, channel_id: str, user_id: str | None, text: str
) -> None:
    question = question_text(text)
    links = extract_links(text)
    if not question or question.casefold() in _HELP_WORDS:
        await _private(respond, ASK_USAGE)
        return
    if deps.questions is None:
        await _private(respond, "Questions are not available in this app right now.")
        return
    try:
        if links:
            reading = link(links[0], display_host(links[0]))
            await _private(respond, f":hourglass_flowing_sand: Reading {reading}…")
            async with deps.slots:  # fetches share the link summaries' bound (memory, sockets)
                article = await deps.ringkas.get_article(links[0])
            if article.id is None:
                raise NoArticle("I couldn't store that article, so I can't answer questions about it.")
            article_id = article.id
            thread_ts = await deps.questions.store.article_thread(team_id, channel_id, article_id)
        else:
            latest = await deps.state.latest_article(team_id, channel_id)
            if latest is None:
                await _private(respond, NO_ARTICLE_YET)
                return
            article_id, thread_ts = latest
            await _private(respond, ":thinking_face: Looking for the answer in the article…")
        settings = await deps.state.channel_settings(team_id, channel_id)
        answer = await deps.questions.answer(
            question,
            [article_id],
            team_id=team_id,
            channel_id=channel_id,
            thread_ts=thread_ts,
            user_id=user_id,
            asked_via="ask",
            language_hint=settings.language,
        )
    except RingkasError as exc:
        await _private(respond, f":warning: {exc.user_message}")
        return
    except Exception:
        log.exception("answering /ask failed", extra={"team_id": team_id, "channel_id": channel_id})
        await _private(respond, ":warning: Something went wrong while answering. Please try again.")
        return
    except asyncio.CancelledError:
        log.warning("/ask interrupted by shutdown", extra={"team_id": team_id, "channel_id": channel_id})
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await _private(respond, ":warning: I was restarting and couldn't finish answering. "
                                        "Please ask again in a minute.")
        raise

    message = answer_message(answer, question=question, asked_by=user_id)
    try:
        posted = await post_message(client, _as_message(message), channel=channel_id, thread_ts=thread_ts,
                                    unfurl_links=False)
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in _NOT_IN_CHANNEL:
            # Not a member: the command's response_url can still post for everyone, without a thread.
            await respond(response_type="in_channel", **message)
            return
        log.warning("posting an answer failed", extra={"channel": channel_id, "error": error})
        reason = f"Slack said: {escape(str(error))}"
        await _private(respond, f":warning: I couldn't post the answer in this channel ({reason}).")
        return
    reply_ts = posted.get("ts")
    if thread_ts is None and reply_ts:
        # The answer starts a thread about the article: follow-ups there work like in a summary thread,
        # and the stored question belongs to it.
        await deps.state.link_thread(
            team_id=team_id, channel_id=channel_id, thread_ts=reply_ts, article_id=answer.article_ids[0],
            message_ts=reply_ts, shared_by=user_id,
        )
        await deps.questions.store.move_to_thread(answer.question_id, reply_ts)
    elif thread_ts:
        await _private(respond, await _answered_in_thread_note(client, channel_id, reply_ts, answer))


async def answer_in_thread(
    deps: Deps, client: Any, *, team_id: str, channel_id: str, thread_ts: str, message_ts: str,
    user_id: str | None, text: str,
) -> bool:
    """Answer a question asked by mentioning the bot in a summary's thread.

    Returns False when the thread holds no summarized article (the caller then posts help). The caller
    has claimed the message (so a redelivered event is not answered twice); unexpected errors propagate
    to it, and it apologises.
    """
    if deps.questions is None:
        return False
    article_ids = await deps.state.articles_in_thread(team_id, channel_id, thread_ts)
    if not article_ids:
        return False
    question = question_text(text, strip_links=False)
    if not question:
        await client.chat_postMessage(channel=channel_id, thread_ts=thread_ts, text=THREAD_HINT)
        return True
    await _react(client, "reactions_add", channel_id, message_ts, THINKING)
    try:
        settings = await deps.state.channel_settings(team_id, channel_id)
        answer = await deps.questions.answer(
            question,
            article_ids,
            team_id=team_id,
            channel_id=channel_id,
            thread_ts=thread_ts,
            user_id=user_id,
            asked_via="mention",
            language_hint=settings.language,
        )
    except RingkasError as exc:
        # An expected failure with words for people: told in the thread. (The caller, which claimed
        # the message, records the outcome; unexpected errors go to it and it apologises.)
        log.info("question not answered", extra={"channel": channel_id, "error": exc.code})
        await _react(client, "reactions_remove", channel_id, message_ts, THINKING)
        await _react(client, "reactions_add", channel_id, message_ts, FAILED)
        failure = f":warning: I couldn't answer that. {escape(exc.user_message)}"
        await client.chat_postMessage(channel=channel_id, thread_ts=thread_ts, text=failure)
        return True
    except Exception:
        await _react(client, "reactions_remove", channel_id, message_ts, THINKING)
        raise
    try:
        await post_message(client, _as_message(answer_message(answer)), channel=channel_id,
                           thread_ts=thread_ts, unfurl_links=False)
    finally:
        await _react(client, "reactions_remove", channel_id, message_ts, THINKING)
    return True


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


def _words(language: str | None) -> dict[str, str]:
    return _WORDS.get((language or "en").split("-")[0], _WORDS["en"])


def _article_links(answer: Answer) -> str:
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
    words = _words(answer.language)
    blocks: list[dict[str, Any]] = []
    fallback: list[str] = []
    if question:
        who = user_mention(asked_by) or "Someone"
        shown = question
        if len(shown) > QUESTION_SHOWN_CHARS:
            shown = shown[: QUESTION_SHOWN_CHARS - 1] + "…"
        quoted = "\n".join("> " + escape(line) for line in shown.splitlines())
        blocks.append(_section(f"*{words['asked'].format(user=who)}:*\n{quoted}"))
        fallback.append(f"{words['asked'].format(user=who)}: {escape(shown)}")
    body = slack_answer_text(answer.text)
    for part in _paragraph_chunks(body, SECTION_LIMIT - 100)[:20]:
        blocks.append(_section(part))
    fallback.append(body)
    about = f"{words['about']}: {_article_links(answer)}"
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=fit(about, CONTEXT_LIMIT))]).to_dict())
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


async def _answered_in_thread_note(client: Any, channel_id: str, reply_ts: str | None, answer: Answer) -> str:
    where = "in the article's thread"
    if reply_ts:
        try:
            found = await client.chat_getPermalink(channel=channel_id, message_ts=reply_ts)
            permalink = found.get("permalink")
            if permalink:
                where = f"<{permalink}|in the article's thread>"
        except SlackApiError:
            pass
    return f"I answered {where}: {_article_links(answer)}"


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


__all__ = ["EmptyQuestion", "answer_in_thread", "answer_message", "question_text", "register"]
