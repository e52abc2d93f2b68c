"""Follow-up questions (a mention in a summary's thread, or any mention/DM without a link) and `/ask` as
durable jobs, through the same queue, worker and Slack outbox as links (ringkas.jobs).

Before Slack is acknowledged, the request is claimed and its job added in one transaction
(`accept_question`, through `handlers.accepting`). A worker in any process runs it:

- the answer streams into the thread as the model writes it; the stream is journaled in the outbox
  (`<job key>:stream`: recorded before chat.startStream, its ts once Slack has it), so a run after a
  crash mid-stream does not open a second stream: it replaces the half-written message once, with the
  whole answer (chat.stopStream, then chat.update). A crash in the instant between Slack opening the stream
  and the ts being recorded is covered too: the rerun looks in the thread for the bot's message without
  metadata posted since, and takes that one over.
- the whole answer is stored (`<job key>:answer`) before it is shown: as the finish of this run's stream
  (chat.stopStream with the key in the message metadata; on failure a chat.update of the stream, retried
  through outages), else a post with the key in its metadata, looked up before it is sent again.
- `/ask` answers for everyone in the article's thread (or as a new top-level message that starts one):
  posts that can be looked up, so a retry never doubles them. Only the private notes to the asker
  ("No article yet", "I answered in the thread", errors) go through the command's response_url: an
  ephemeral message only the asker sees, which Slack cannot find again, so a crash in the instant between
  sending and recording one may show it twice to that one person; that is the accepted cost.
- a model outage (after the client's own retries) sends the job back to wait (RetryLater); after
  RETRY_DEADLINE the person is told once (`give_up_*`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from handlers.accepting import accept_request
from handlers.delivery import METADATA_EVENT, SlackSender, classify
from handlers.deps import Deps
from handlers.link_jobs import model_outage
from handlers.links import display_host, extract_links
from handlers.questions import (
    ASK_USAGE,
    FAILED,
    NO_ARTICLE_YET,
    THINKING,
    THREAD_HINT,
    answer_message,
    answered_in_thread_note,
    article_links,
    question_text,
    stream_footer,
)
from handlers.render import escape, failure_text, help_message, link
from handlers.streaming import AnswerStream
from handlers.summaries import APOLOGY, channel_words, failure_reason
from ringkas.errors import ModelUnavailable, RingkasError
from ringkas.i18n import N_, Translator
from ringkas.jobs import DeliveryFailed, Job, JobKind, OutboxEntry, RetryLater, SendLater
from ringkas.qa import NoArticle
from ringkas.slack_state import AcceptSpec
from ringkas.storage.base import utcnow

log = logging.getLogger("ringkas.slack.questions")

QUESTION_JOB = "question"  # a mention or DM without a link: a question in a summary thread, else help
ASK_JOB = "ask"  # /ask
NO_LINK = "-"  # the claim's link part for requests without a link
PRIVATE = "x_"  # payload keys with this prefix are the job's own notes, never sent to Slack
QUESTION_OUTAGE = N_("I couldn't reach the services I need (the language model, the database or Slack) for "
                     "too long, so I gave up on this question. Please ask again later.")


# --- before the ack ------------------------------------------------------------------------------


async def accept_question(deps: Deps, *, kind: str, team_id: str, channel_id: str, message_ts: str,
                          user_id: str | None, job_kind: str, payload: dict[str, Any]) -> bool:
    """Claim the request and add its job before Slack is acknowledged (`handlers.accepting`). False when
    it was claimed before (a redelivery); True also when the database is out and it is recorded later."""
    claimed = await accept_request(deps, AcceptSpec(
        kind=kind, team_id=team_id, channel_id=channel_id, message_ts=message_ts, links=(NO_LINK,),
        user_id=user_id, job_kind=job_kind, payload=payload,
    ))
    return claimed is None or claimed > 0


def job_kinds(deps: Deps, client: Any) -> dict[str, JobKind]:
    async def run_question(job: Job) -> None:
        await run_question_job(deps, client, job)

    async def give_up_question(job: Job, reason: str) -> None:
        await give_up_question_job(deps, client, job, reason)

    async def run_ask(job: Job) -> None:
        await run_ask_job(deps, client, job)

    async def give_up_ask(job: Job, reason: str) -> None:
        await give_up_ask_job(deps, client, job, reason)

    return {QUESTION_JOB: JobKind(run=run_question, give_up=give_up_question),
            ASK_JOB: JobKind(run=run_ask, give_up=give_up_ask)}


# --- Slack writes ----------------------------------------------------------------------------------


def _key(job: Job, what: str) -> str:
    return f"{job.key}:{what}"


def _metadata(key: str) -> dict[str, Any]:
    return {"event_type": METADATA_EVENT, "event_payload": {"key": key}}


class QuestionSender:
    """The outbox's Slack sender, plus: an update of a streamed message first closes the stream (a run cut
    off mid-stream left it open), and the job's own notes in a payload are not sent to Slack."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.slack = SlackSender(client)

    async def send(self, entry: OutboxEntry) -> str | None:
        if entry.action == "update" and entry.payload.get(PRIVATE + "stream"):
            await _close_stream(self.client, entry.channel_id, entry.target_ts)
        payload = {k: v for k, v in entry.payload.items() if not k.startswith(PRIVATE)}
        return await self.slack.send(replace(entry, payload=payload))


async def _close_stream(client: Any, channel_id: str, ts: str | None) -> None:
    try:
        await client.chat_stopStream(channel=channel_id, ts=ts)
    except SlackApiError:
        pass  # already stopped (the usual case), or gone: the update that follows says what to do
    except Exception as exc:
        raise classify(exc) from exc


class _Journal:
    """Records a stream in the outbox: before chat.startStream (attempts > 0), then its ts."""

    def __init__(self, deps: Deps, job: Job, channel_id: str, thread_ts: str) -> None:
        self.outbox = deps.jobs.outbox
        self.job = job
        self.channel_id = channel_id
        self.thread_ts = thread_ts
        self.entry: OutboxEntry | None = None

    async def opening(self) -> None:
        entry = await self.outbox.put(_key(self.job, "stream"), action="post", job_id=self.job.id,
                                      channel_id=self.channel_id, thread_ts=self.thread_ts, payload={})
        self.entry = await self.outbox.start_attempt(entry)

    async def opened(self, ts: str) -> None:
        assert self.entry is not None
        await self.outbox.mark_sent(self.entry, ts)


async def _earlier_stream(deps: Deps, client: Any, job: Job) -> str | None:
    """The ts of the stream an earlier run of this job opened, if any (it is then finished, not doubled)."""
    entry = await deps.jobs.outbox.get(_key(job, "stream"))
    if entry is None or (entry.state != "sent" and not entry.attempts):
        return None
    if entry.state == "sent":
        return entry.message_ts
    # Cut off between chat.startStream and recording its ts: the bot's message in the thread that carries
    # no metadata (every other bot post does) and was posted since is that stream.
    since = entry.created_at.timestamp() - 2
    try:
        response = await client.conversations_replies(channel=entry.channel_id, ts=entry.thread_ts,
                                                      include_all_metadata=True, limit=200)
    except SlackApiError as exc:
        log.warning("cannot look for an earlier stream", extra={"error": str(exc.response.get("error"))})
        return None
    except Exception as exc:
        raise RetryLater(f"slack unreachable: {type(exc).__name__}") from exc
    for message in response.get("messages") or []:
        if (message.get("bot_id") and not message.get("metadata") and message.get("ts") != entry.thread_ts
                and float(message.get("ts") or 0) >= since):
            found = str(message["ts"])
            await deps.jobs.outbox.mark_sent(entry, found)
            log.info("found the stream an earlier run opened", extra={"job": job.id, "ts": found})
            return found
    return None


async def _deliver(deps: Deps, client: Any, entry: OutboxEntry, give_up_at: Any) -> str | None:
    """Send a stored entry (if not sent yet); its message ts. DeliveryFailed when Slack refused it or the
    deadline passed."""
    if entry.state == "pending":
        return await deps.jobs.outbox.deliver(entry, QuestionSender(client), give_up_at=give_up_at)
    if entry.state == "failed":
        raise DeliveryFailed(f"outbox entry {entry.key} failed before")
    return entry.message_ts


async def _store_post(deps: Deps, job: Job, text_or_message: Any, *, channel_id: str,
                      thread_ts: str | None, **extra: Any) -> OutboxEntry:
    message = text_or_message if isinstance(text_or_message, dict) else {"text": text_or_message}
    return await deps.jobs.outbox.put(_key(job, "answer"), action="post", job_id=job.id,
                                      channel_id=channel_id, thread_ts=thread_ts,
                                      payload={**message, **extra})


async def _store_private(deps: Deps, job: Job, what: str, text: str, *, failed: bool = False) -> OutboxEntry:
    """A note only the asker sees (through the command's response_url)."""
    p = job.payload
    return await deps.jobs.outbox.put(
        _key(job, what), action="respond", job_id=job.id, channel_id=p["channel_id"],
        payload={"url": p["response_url"], "visible": False, "text": text, PRIVATE + "private": True,
                 PRIVATE + "failed": failed},
    )


async def _react(client: Any, method: str, channel_id: str, ts: str, name: str) -> None:
    """Progress reactions are a nicety: a missing scope, a duplicate or an outage must not stop the answer."""
    try:
        await getattr(client, method)(channel=channel_id, timestamp=ts, name=name)
    except Exception as exc:
        log.debug("reaction failed", extra={"method": method, "error": type(exc).__name__})


# --- answering ---------------------------------------------------------------------------------------


async def _answer(
    deps: Deps, client: Any, job: Job, *, question: str, article_ids: list[int], thread_ts: str | None,
    asked_via: str, _: Translator, response_url: str | None = None,
) -> OutboxEntry:
    """Answer the question (streamed into `thread_ts` when there is one) and store the answer, or a failure
    note, in the outbox. RetryLater when the model is out."""
    assert deps.questions is not None
    p = job.payload
    team_id, channel_id, user_id = p["team_id"], p["channel_id"], p.get("user_id")
    ask = asked_via == "ask"
    key = _key(job, "answer")
    earlier = await _earlier_stream(deps, client, job) if thread_ts else None
    stream: AnswerStream | None = None
    if thread_ts and earlier is None:
        stream = AnswerStream(client, channel_id=channel_id, thread_ts=thread_ts, team_id=team_id,
                              user_id=user_id, journal=_Journal(deps, job, channel_id, thread_ts))
    try:
        settings = await deps.state.channel_settings(team_id, channel_id)
        answer = await deps.questions.answer(
            question, article_ids, team_id=team_id, channel_id=channel_id, thread_ts=thread_ts,
            user_id=user_id, asked_via=asked_via, language_hint=settings.language,
            on_text=stream.update if stream is not None else None,
        )
    except ModelUnavailable as exc:
        if model_outage(exc):
            await _pause(stream)  # the run that answers replaces what was shown
            raise RetryLater(f"model unavailable: {exc.detail or exc.code}") from exc
        return await _failed(deps, client, job, stream, earlier, exc, thread_ts=thread_ts, _=_, ask=ask)
    except RingkasError as exc:
        return await _failed(deps, client, job, stream, earlier, exc, thread_ts=thread_ts, _=_, ask=ask)
    except BaseException:
        await _pause(stream)
        raise
    message = answer_message(answer, question=question if ask else None, asked_by=user_id if ask else None)
    notes = {PRIVATE + "question_id": answer.question_id, PRIVATE + "article_id": answer.article_ids[0],
             PRIVATE + "about": article_links(answer)}
    payload = {"text": message["text"], "blocks": message["blocks"], **notes}
    target = stream.ts if stream is not None and stream.ts is not None else earlier
    if target is None:
        if response_url:
            payload["response_url"] = response_url  # where the bot may not post, answer through /ask
        return await deps.jobs.outbox.put(key, action="post", job_id=job.id, channel_id=channel_id,
                                          thread_ts=thread_ts, payload=payload)
    entry = await deps.jobs.outbox.put(key, action="update", job_id=job.id, channel_id=channel_id,
                                       thread_ts=thread_ts, target_ts=target,
                                       payload={**payload, PRIVATE + "stream": True})
    if stream is not None and stream.ts is not None and entry.state == "pending" and not entry.attempts:
        # Finish this run's stream with the footer under it; counted first, so a run cut off here
        # completes it with chat.update instead (an edit: never a second answer).
        entry = await deps.jobs.outbox.start_attempt(entry)
        footer = stream_footer(answer, question=question if ask else None, asked_by=user_id if ask else None)
        if await stream.stop(answer.text, footer, metadata=_metadata(key)):
            await deps.jobs.outbox.mark_sent(entry, stream.ts)
            return await deps.jobs.outbox.get(key) or entry
    return entry


async def _pause(stream: AnswerStream | None) -> None:
    """Close a stream this run opened and will not finish (best effort): the next run replaces it."""
    if stream is None or not stream.started:
        return
    try:
        async with asyncio.timeout(5):
            await stream.client.chat_stopStream(channel=stream.channel_id, ts=stream.ts)
    except Exception:
        log.info("could not close the stream", extra={"channel": stream.channel_id})


async def _failed(deps: Deps, client: Any, job: Job, stream: AnswerStream | None, earlier: str | None,
                  exc: RingkasError, *, thread_ts: str | None, _: Translator, ask: bool) -> OutboxEntry:
    """A question the model or the article cannot answer: said plainly (in the thread, or privately for
    /ask), once. A stream an earlier run left half-written becomes the note instead of staying."""
    p = job.payload
    log.info("question not answered", extra={"channel": p["channel_id"], "error": exc.code})
    if stream is not None and stream.started:
        try:
            note = "\n\n:warning: " + escape(_("I couldn't answer that."))
            await stream.client.chat_stopStream(channel=stream.channel_id, ts=stream.ts, markdown_text=note)
        except Exception:
            log.info("could not close the stream", extra={"channel": stream.channel_id})
    failure = ":warning: " + _("I couldn't answer that.") + " " + escape(failure_reason(exc, _))
    if earlier is not None:
        replaced = await deps.jobs.outbox.put(
            _key(job, "answer" if not ask else "stream-end"), action="update", job_id=job.id,
            channel_id=p["channel_id"], thread_ts=thread_ts, target_ts=earlier,
            payload={"text": failure if not ask else ":warning: " + _("I couldn't answer that."),
                     PRIVATE + "stream": True, PRIVATE + "failed": True},
        )
        if not ask:
            return replaced
        try:
            await _deliver(deps, client, replaced, job.give_up_at)
        except DeliveryFailed:
            log.warning("could not close an earlier stream", extra={"job": job.id})
    if ask:
        return await _store_private(deps, job, "answer", f":warning: {escape(failure_reason(exc, _))}",
                                    failed=True)
    return await _store_post(deps, job, failure, channel_id=p["channel_id"], thread_ts=thread_ts,
                             x_failed=True)


# --- the question job ----------------------------------------------------------------------------------


async def run_question_job(deps: Deps, client: Any, job: Job) -> None:
    p = job.payload
    channel_id, ts = p["channel_id"], p["message_ts"]
    entry = await deps.jobs.outbox.get(_key(job, "answer"))
    thinking = job.attempts > 1  # an earlier run may have left 🤔 on the question
    try:
        if entry is None:
            _ = await channel_words(deps, p["team_id"], channel_id)
            article_ids: list[int] = []
            if p.get("thread_ts") and deps.questions is not None:
                article_ids = await deps.state.articles_in_thread(p["team_id"], channel_id, p["thread_ts"])
            question = question_text(p.get("text"), strip_links=False)
            if not article_ids:
                help_text = help_message(p.get("bot_user_id"), _, emoji=deps.settings.summarize_reaction)
                entry = await _store_post(deps, job, help_text.as_kwargs(), channel_id=channel_id,
                                          thread_ts=p.get("reply_thread"))
            elif not question:
                entry = await _store_post(deps, job, _(THREAD_HINT), channel_id=channel_id,
                                          thread_ts=p["thread_ts"])
            else:
                thinking = True
                await _react(client, "reactions_add", channel_id, ts, THINKING)
                entry = await _answer(deps, client, job, question=question, article_ids=article_ids,
                                      thread_ts=p["thread_ts"], asked_via="mention", _=_)
        failed = bool(entry.payload.get(PRIVATE + "failed"))
        try:
            await _deliver(deps, client, entry, job.give_up_at)
        except DeliveryFailed:
            log.exception("could not deliver the answer to Slack", extra={"job": job.id})
            failed = True
    finally:
        if thinking:
            await _react(client, "reactions_remove", channel_id, ts, THINKING)
    if failed:
        await _react(client, "reactions_add", channel_id, ts, FAILED)
    await _finish_request(deps, job, failed)


async def give_up_question_job(deps: Deps, client: Any, job: Job, reason: str) -> None:
    """Outages past RETRY_DEADLINE (or a bug): say so in the thread, once. A stored answer wins."""
    p = job.payload
    entry = await deps.jobs.outbox.get(_key(job, "answer"))
    if entry is None:
        _ = await _words(deps, p)
        words = QUESTION_OUTAGE if reason.startswith("deadline") else APOLOGY
        entry = await deps.jobs.outbox.put(
            _key(job, _gave_up(job)), action="post", job_id=job.id, channel_id=p["channel_id"],
            thread_ts=p.get("reply_thread"), payload={**failure_text(_(words)).as_kwargs()},
        )
    await _react(client, "reactions_remove", p["channel_id"], p["message_ts"], THINKING)
    await _react(client, "reactions_add", p["channel_id"], p["message_ts"], FAILED)
    try:
        await _deliver(deps, client, entry, utcnow() + timedelta(minutes=2))
    finally:
        await _finish_request(deps, job, True)


def _gave_up(job: Job) -> str:
    """Where the "I gave up" notice is stored: once per deadline, and apart from the answer, so a job
    queued again with `bot.py jobs --retry` answers the question instead of finding the notice."""
    return f"gave-up:{int(job.give_up_at.timestamp())}"


async def _words(deps: Deps, p: dict[str, Any]) -> Translator:
    try:
        return await channel_words(deps, p["team_id"], p["channel_id"])
    except Exception:
        from ringkas.i18n import translator

        return translator(None)


async def _finish_request(deps: Deps, job: Job, failed: bool) -> None:
    links = job.payload.get("links") or []
    if links:
        await deps.state.finish(int(links[0]["request_id"]), state="failed" if failed else "done",
                                error_code="answer_failed" if failed else None)


# --- the /ask job ----------------------------------------------------------------------------------------


async def run_ask_job(deps: Deps, client: Any, job: Job) -> None:
    p = job.payload
    team_id, channel_id = p["team_id"], p["channel_id"]
    entry = await deps.jobs.outbox.get(_key(job, "answer"))
    _ = await channel_words(deps, team_id, channel_id)
    if entry is None:
        entry = await _ask(deps, client, job, _)
    failed = bool(entry.payload.get(PRIVATE + "failed"))
    try:
        reply_ts = await _deliver(deps, client, entry, job.give_up_at)
    except DeliveryFailed:
        log.exception("could not deliver the /ask answer to Slack", extra={"job": job.id})
        await _finish_request(deps, job, True)
        return
    if entry.action != "respond" and reply_ts and deps.questions is not None:
        if entry.thread_ts is None:
            # The answer starts a thread about the article: follow-ups there work like in a summary
            # thread, and the stored question belongs to it.
            await deps.state.link_thread(team_id=team_id, channel_id=channel_id, thread_ts=reply_ts,
                                         article_id=int(entry.payload[PRIVATE + "article_id"]),
                                         message_ts=reply_ts, shared_by=p.get("user_id"))
            await deps.questions.store.move_to_thread(entry.payload.get(PRIVATE + "question_id"), reply_ts)
        else:
            note = await answered_in_thread_note(client, channel_id, reply_ts,
                                                 str(entry.payload.get(PRIVATE + "about") or ""), _)
            try:
                await _deliver(deps, client, await _store_private(deps, job, "note", note),
                               utcnow() + timedelta(minutes=2))
            except DeliveryFailed:
                log.warning("could not send the private note about the answer", extra={"job": job.id})
    await _finish_request(deps, job, failed)


async def _ask(deps: Deps, client: Any, job: Job, _: Translator) -> OutboxEntry:
    p = job.payload
    team_id, channel_id = p["team_id"], p["channel_id"]
    text = p.get("text") or ""
    question, links = question_text(text), extract_links(text)
    if deps.questions is None:
        unavailable = _("Questions are not available in this app right now.")
        return await _store_private(deps, job, "answer", unavailable, failed=True)
    try:
        if links:
            async with deps.slots:  # fetches share the link summaries' bound (memory, sockets)
                article = await deps.ringkas.get_article(links[0])
            if article.id is None:
                raise NoArticle(_("I couldn't store that article, so I can't answer questions about it."))
            article_id = article.id
            thread_ts = await deps.questions.store.article_thread(team_id, channel_id, article_id)
        else:
            latest = await deps.state.latest_article(team_id, channel_id)
            if latest is None:
                return await _store_private(deps, job, "answer", _(NO_ARTICLE_YET))
            article_id, thread_ts = latest
    except ModelUnavailable as exc:
        if model_outage(exc):
            raise RetryLater(f"model unavailable: {exc.detail or exc.code}") from exc
        return await _store_private(deps, job, "answer", f":warning: {escape(failure_reason(exc, _))}",
                                    failed=True)
    except RingkasError as exc:
        return await _store_private(deps, job, "answer", f":warning: {escape(failure_reason(exc, _))}",
                                    failed=True)
    return await _answer(deps, client, job, question=question, article_ids=[article_id], thread_ts=thread_ts,
                         asked_via="ask", _=_, response_url=p.get("response_url"))


async def give_up_ask_job(deps: Deps, client: Any, job: Job, reason: str) -> None:
    """Outages past RETRY_DEADLINE (or a bug): tell the asker privately, once. A stored answer wins."""
    entry = await deps.jobs.outbox.get(_key(job, "answer"))
    if entry is None:
        _ = await _words(deps, job.payload)
        words = QUESTION_OUTAGE if reason.startswith("deadline") else APOLOGY
        entry = await _store_private(deps, job, _gave_up(job), ":warning: " + _(words), failed=True)
    try:
        await _deliver(deps, client, entry, utcnow() + timedelta(minutes=2))
    finally:
        await _finish_request(deps, job, True)


def ask_progress(text: str, _: Translator) -> str:
    """The private note the /ask ack shows while the job works."""
    links = extract_links(text)
    if links:
        return ":hourglass_flowing_sand: " + _("Reading {host}…", host=link(links[0], display_host(links[0])))
    return ":thinking_face: " + _("Looking for the answer in the article…")


__all__ = [
    "ASK_JOB",
    "ASK_USAGE",
    "QUESTION_JOB",
    "SendLater",
    "accept_question",
    "ask_progress",
    "job_kinds",
]
