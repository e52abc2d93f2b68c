"""Links -> summaries as durable jobs.

Before Slack is acknowledged, every new link of a message is claimed and ONE job for the message is added
in the same transaction (`accept_links`). A worker in any process runs the job (`run_link_job`): the
summaries, each answer posted as a NEW message as soon as it is ready (so the notification and the channel
preview show its TL;DR: Slack does not notify edits). Work that is not done at once shows progress the way
Slack shows it, never as a placeholder message: a thread status on mentions, else 👀 on the person's message
replaced by ✅ or ⚠️ (handlers/progress.py); a slash command gets a private note. A cached summary appears
at once. Every answer carries a key of the job and link in its metadata; the requests' outcomes are
returned to the worker, which records them with the job's completion. Run again after a crash at any
point, the job repeats no Slack write: a later run stores each answer in the outbox and looks for its key
in Slack before sending it.

A message with several links gets one reply per link: each notification previews its own TL;DR, each reply
carries its own feedback buttons and follow-up thread context, and each stays far inside Slack's 50-block
limit (three full summaries in one message would not).

Outages (model, database, Slack) make the job wait and run again; after RETRY_DEADLINE the person is told
plainly, once (`give_up_link_job`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from handlers.accepting import accept_request
from handlers.delivery import SlackSender, message_payload
from handlers.deps import Deps
from handlers.progress import Progress
from handlers.render import (
    Message,
    failure_message,
    failure_text,
    skipped_links_message,
    status_text,
    summary_message,
)
from handlers.summaries import (
    APOLOGY,
    QUICK,
    TOO_SLOW,
    LinkJob,
    Reply,
    failure_reason,
    link_deadline,
    summary_language,
    words_for,
)
from ringkas.documents import SummaryResult, UsageContext
from ringkas.errors import ModelUnavailable, RingkasError
from ringkas.i18n import N_, Translator
from ringkas.jobs import DeliveryFailed, Job, OutboxEntry, RetryLater, SendLater, SendRefused
from ringkas.jobs.worker import OUTAGE_ERRORS
from ringkas.slack_state import AcceptSpec, ThreadLink
from ringkas.storage import Write
from ringkas.storage.base import utcnow

log = logging.getLogger("ringkas.slack.links")

LINK_JOB = "links"  # the job kind: the links of one Slack message (or one /summarize)
OUTAGE = N_("I couldn't reach the services I need (the language model, the database or Slack) for too long, "
            "so I gave up on this link. Please share it again later.")


# --- before the ack ------------------------------------------------------------------------------


async def accept_links(deps: Deps, client: Any, job: LinkJob) -> int:
    """Record the links of `job` as claimed requests plus one job, before Slack is acknowledged.

    Returns how many links were new (a redelivery finds them claimed). When the database cannot be
    reached, they are recorded in the background as soon as it is back (within RETRY_DEADLINE).
    """
    payload = {
        "kind": job.kind, "team_id": job.team_id, "channel_id": job.channel_id, "message_ts": job.message_ts,
        "thread_ts": job.thread_ts, "user_id": job.user_id, "requested_by": job.requested_by,
        "response_url": job.response_url, "skipped": job.skipped, "cap": deps.settings.max_links_per_message,
        "first_link": job.links[0] if job.links else None,
    }

    async def apologise() -> None:
        await Reply(client, job).start(failure_text(words_for(deps, None)(APOLOGY)))

    accepted = await accept_request(deps, AcceptSpec(
        kind=job.kind, team_id=job.team_id, channel_id=job.channel_id, message_ts=job.message_ts,
        links=tuple(job.links), user_id=job.user_id, job_kind=LINK_JOB, payload=payload,
    ), on_give_up=apologise if job.kind != "message" else None)  # someone asked explicitly: say so
    return accepted or 0


# --- the job ---------------------------------------------------------------------------------------


def model_outage(exc: ModelUnavailable) -> bool:
    """The model was out (5xx, 429, timeouts, unreadable bodies, after the client's own retries), as opposed
    to refusing the request for good (a wrong key or model name, no quota): only an outage is waited out.
    ringkas.llm says so in the detail of the errors it raised after retrying ("… after N attempts")."""
    return " attempts" in (exc.detail or "")


def _key(job: Job, index: int, what: str) -> str:
    return f"{job.key}:{index}:{what}"


async def run_link_job(deps: Deps, client: Any, job: Job) -> list[Write]:
    """Summarize and answer the job's links; returns the record of the answers sent (each request settled,
    its article linked to its thread), which the worker commits with the job's completion."""
    p = job.payload
    links: list[dict[str, Any]] = list(p["links"])
    outbox = deps.jobs.outbox
    sender = SlackSender(client)
    first_run = job.attempts == 1  # nothing stored or sent yet
    keys = [_key(job, i, "result") for i in range(len(links))]
    stored = {} if first_run else await outbox.get_many(keys)
    todo = [i for i in range(len(links)) if keys[i] not in stored]
    settle: list[Write] = []
    failed = False
    retry: RetryLater | None = None
    progress: Progress | None = None
    if todo:
        language = await summary_language(deps, p["team_id"], p["channel_id"])
        _ = words_for(deps, language)
        work = [asyncio.create_task(_summarize(deps, job, str(links[i]["link"]), language, _)) for i in todo]
        try:
            await _note_skipped(deps, sender, job, todo, _)
            _done, pending = await asyncio.wait(work, timeout=QUICK)
            if pending:  # not at once (a cached summary is): show the work the way Slack shows it
                progress = Progress(
                    client, channel_id=p["channel_id"],
                    message_ts=p["message_ts"] if p.get("kind") != "command" else None,
                    thread_ts=p.get("thread_ts"), status=status_text(str(links[todo[0]]["link"]), _),
                    try_status=p.get("kind") == "mention", response_url=p.get("response_url"),
                )
                await progress.start()
            outcomes = await asyncio.gather(*work, return_exceptions=True)
        except BaseException:
            for task in work:
                task.cancel()
            await asyncio.gather(*work, return_exceptions=True)
            raise
        for i, outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, (RetryLater, *OUTAGE_ERRORS)):
                retry = outcome if isinstance(outcome, RetryLater) else RetryLater(f"outage: {outcome!r}")
                continue
            if isinstance(outcome, BaseException):
                log.error("summarizing a link failed unexpectedly", exc_info=outcome,
                          extra={"job": job.id, "link": links[i]["link"]})
                apology = failure_message(str(links[i]["link"]), _(APOLOGY),
                                          requested_by=p.get("requested_by"), _=_)
                outcome = (apology,
                           None, "internal")
            message, article_id, error_code = outcome
            if first_run and await _send_at_once(deps, sender, job, i, message, article_id=article_id,
                                                 error_code=error_code, settle=settle):
                failed = failed or bool(error_code)
                continue
            # Stored with this run's send counted: the next send looks in Slack first (a first send that
            # failed, or an earlier run of the job, may have reached it).
            entry = await _store_result(deps, job, i, message, article_id=article_id, error_code=error_code,
                                        started=True)
            stored[entry.key] = entry
    if stored:
        failed = await _deliver_results(deps, sender, job, give_up_at=job.give_up_at,
                                        entries=stored) or failed
    if progress is not None and retry is None:
        await progress.finish(not failed)
    if retry is not None:
        if progress is not None:
            await progress.withdraw()
        # the others are answered; the job comes back for the rest
        raise RetryLater(retry.reason, retry.delay, settle=settle)
    return settle


async def give_up_link_job(deps: Deps, client: Any, job: Job, reason: str) -> None:
    """The job cannot be finished (outages past RETRY_DEADLINE, or a bug): say so plainly, once per link."""
    p = job.payload
    sender = SlackSender(client)
    outage = reason.startswith("deadline")
    _ = words_for(deps, await summary_language(deps, p["team_id"], p["channel_id"]))
    for i, item in enumerate(p["links"]):
        message = failure_message(str(item["link"]), _(OUTAGE if outage else APOLOGY),
                                  requested_by=p.get("requested_by"), _=_)
        # A result stored earlier (Slack was what was down) wins over this message; one an earlier run
        # sent at once is found in Slack under the same key (the send looks first: counted as started).
        await _store_result(deps, job, i, message, article_id=None,
                            error_code="outage" if outage else "internal", started=True)
    # The deadline has passed: a few more minutes to get the word out, not another half hour.
    await _deliver_results(deps, sender, job, give_up_at=utcnow() + timedelta(minutes=2))


async def _note_skipped(deps: Deps, sender: SlackSender, job: Job, todo: list[int], _: Translator) -> None:
    """Only the delivery that won the message's first link tells about skipped ones (said once)."""
    p = job.payload
    if p.get("skipped") and 0 in todo and p.get("first_claimed") == p.get("first_link"):
        note = skipped_links_message(list(p["skipped"]), int(p.get("cap") or 0), _)
        entry = await deps.jobs.outbox.put(
            f"{job.key}:skipped", job_id=job.id, action="post", channel_id=p["channel_id"],
            thread_ts=p.get("thread_ts"), payload=message_payload(note, response_url=p.get("response_url")),
        )
        try:
            await deps.jobs.outbox.deliver(entry, sender, give_up_at=job.give_up_at)
        except DeliveryFailed:
            log.warning("could not post the skipped-links note", extra={"channel": p["channel_id"]})


async def _summarize(
    deps: Deps, job: Job, url: str, language: str, _: Translator
) -> tuple[Message, int | None, str | None]:
    """(message, article id, error code) for one link; RetryLater when the model is out."""
    p = job.payload
    requested_by = p.get("requested_by")
    extra = {"channel": p["channel_id"], "message_ts": p["message_ts"], "link": url, "job": job.id}
    user, channel = (p["team_id"], p.get("user_id") or p["channel_id"]), (p["team_id"], p["channel_id"])
    try:
        # Work slots handed out fairly by user and channel (ringkas.limits.FairSlots).
        async with deps.slots.slot(user=user, channel=channel), asyncio.timeout(link_deadline(deps)):
            result: SummaryResult = await deps.ringkas.summarize(
                url, language=language,
                context=UsageContext(team_id=p["team_id"], channel_id=p["channel_id"],
                                     user_id=p.get("user_id")),
            )
    except ModelUnavailable as exc:
        if model_outage(exc):
            # An outage, not an answer: the job waits and runs again (up to RETRY_DEADLINE).
            raise RetryLater(f"model unavailable: {exc.detail or exc.code}") from exc
        log.info("link not summarized", extra={**extra, "error": exc.code, "detail": exc.detail})
        return failure_message(url, failure_reason(exc, _), requested_by=requested_by, _=_), None, exc.code
    except RingkasError as exc:
        log.info("link not summarized", extra={**extra, "error": exc.code, "detail": exc.detail})
        return failure_message(url, failure_reason(exc, _), requested_by=requested_by, _=_), None, exc.code
    except TimeoutError:
        log.warning("link took too long", extra=extra)
        return failure_message(url, _(TOO_SLOW), requested_by=requested_by, _=_), None, "deadline"
    log.info("link summarized", extra={**extra, "cached": result.cached})
    return summary_message(result, shared_url=url, requested_by=requested_by), result.article.id, None


def _result_payload(job: Job, message: Message, article_id: int | None,
                    error_code: str | None) -> dict[str, Any]:
    """An answer as Slack's arguments: a new post (a response_url answer when the bot may not post in the
    channel), with what settles its request."""
    payload = message_payload(message, article_id=article_id, error_code=error_code)
    return {**payload, "response_url": job.payload.get("response_url")}


async def _send_at_once(deps: Deps, sender: SlackSender, job: Job, index: int, message: Message, *,
                        article_id: int | None, error_code: str | None, settle: list[Write]) -> bool:
    """A job's first run sends each answer as soon as it is ready, without storing it first: the post
    carries the job's key, and a later run of the job (after a crash) looks for it in Slack before sending
    anything. Its article is linked to its thread at once; its request is settled in `settle`, with the
    job's completion. False when Slack did not take it (then the answer is stored and delivered through
    the outbox, which waits out 429s and outages)."""
    p = job.payload
    entry = OutboxEntry(
        id=0, key=_key(job, index, "result"), job_id=job.id, action="post", channel_id=p["channel_id"],
        thread_ts=p.get("thread_ts"), target_ts=None, payload=_result_payload(job, message, article_id,
                                                                              error_code),
        state="pending", attempts=1, message_ts=None, created_at=utcnow(),
    )
    try:
        reply_ts = await sender.send(entry)
    except (SendLater, SendRefused) as exc:
        log.info("Slack did not take the answer at once; storing it to deliver",
                 extra={"job": job.id, "error": str(exc)})
        return False
    outcome = _outcome(p, article_id, reply_ts, error_code)
    if outcome["thread"] is not None:  # at once: a follow-up question in the thread may come any moment
        await deps.state.link_threads([outcome.pop("thread")])
    settle.extend(deps.state.finish_writes(int(p["links"][index]["request_id"]), **outcome))
    return True


async def _store_result(deps: Deps, job: Job, index: int, message: Message, *, article_id: int | None,
                        error_code: str | None, started: bool = False) -> OutboxEntry:
    """The answer as an outbox entry. An answer stored before (by an earlier run of the job) is kept."""
    p = job.payload
    return await deps.jobs.outbox.put(
        _key(job, index, "result"), action="post", job_id=job.id, channel_id=p["channel_id"],
        thread_ts=p.get("thread_ts"), payload=_result_payload(job, message, article_id, error_code),
        started=started,
    )


async def _deliver_results(deps: Deps, sender: SlackSender, job: Job, *, give_up_at: Any,
                           entries: dict[str, OutboxEntry] | None = None) -> bool:
    """Send every stored answer not sent yet; True when any link failed (or could not be told).
    `entries`: the job's result entries as this run knows them (read from the outbox when not given)."""
    p = job.payload
    keys = [_key(job, i, "result") for i in range(len(p["links"]))]
    if entries is None:
        entries = await deps.jobs.outbox.get_many(keys)
    failed = False
    for key, item in zip(keys, p["links"], strict=True):
        entry = entries.get(key)
        if entry is None:
            continue
        reply_ts: str | None = entry.message_ts
        error_code = entry.payload.get("error_code")
        request_id, article_id = int(item["request_id"]), entry.payload.get("article_id")
        if entry.state == "pending":
            def settled(ts: str | None, code: str | None = error_code, request_id: int = request_id,
                        article_id: int | None = article_id) -> list[Write]:
                return deps.state.finish_writes(request_id, **_outcome(p, article_id, ts, code))

            try:
                # The request is settled in the same commit that records the answer as sent.
                await deps.jobs.outbox.deliver(entry, sender, give_up_at=give_up_at, also=settled)
                failed = failed or bool(error_code)
                continue
            except DeliveryFailed:
                log.exception("could not deliver the result to Slack",
                              extra={"job": job.id, "link": item["link"]})
                error_code = error_code or "slack_error"
        elif entry.state == "failed":
            error_code = error_code or "slack_error"
        failed = failed or bool(error_code)
        await deps.state.finish(request_id, **_outcome(p, article_id, reply_ts, error_code))
    return failed


def _outcome(p: dict[str, Any], article_id: int | None, reply_ts: str | None,
             error_code: str | None) -> dict[str, Any]:
    """How one link's request is settled (`SlackState.finish`), with its article remembered in the
    answer's thread."""
    thread_ts = p.get("thread_ts") or reply_ts
    thread = None
    if article_id is not None and thread_ts and not error_code:
        thread = ThreadLink(team_id=p["team_id"], channel_id=p["channel_id"], thread_ts=thread_ts,
                            article_id=int(article_id), message_ts=p["message_ts"],
                            shared_by=p.get("user_id"))
    return {"state": "failed" if error_code else "done", "error_code": error_code, "article_id": article_id,
            "reply_ts": reply_ts, "thread": thread}
