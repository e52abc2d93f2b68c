"""`/digest` and posting finished digests to Slack.

    /digest subscribe [HH:MM] [Area/City]   daily digest here (defaults: DIGEST_TIME, DIGEST_TIMEZONE)
    /digest unsubscribe                     stop it
    /digest status                          time, time zone, language and next run
    /digest now                             a digest of the last 24 h, posted here now
    /digest help                            usage

Commands are acknowledged at once; database work and digest building run afterwards.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from handlers.deps import Deps
from handlers.render import CONTEXT_LIMIT, MAX_BLOCKS, SECTION_LIMIT, TITLE_LIMIT, Message, escape, fit, link
from handlers.render import user_mention as mention
from handlers.summaries import post_message
from ringkas.digest.labels import labels, local_time, long_date
from ringkas.digest.models import Digest, Story, Subscription
from ringkas.digest.schedule import parse_time, parse_timezone
from ringkas.digest.service import PostFailed
from ringkas.digest.store import MAX_ATTEMPTS
from ringkas.errors import RingkasError
from ringkas.language import language_name
from ringkas.urls import without_credentials

log = logging.getLogger("ringkas.slack.digest")

COMMAND = "/digest"
MAIN_STORIES = 12  # stories in the channel message; the rest go to its thread
THREAD_BLOCKS = 45  # blocks per thread reply (Slack allows 50)
FALLBACK_LIMIT = 3000

USAGE = (
    "*Daily AI-news digest*\n"
    "• `/digest subscribe [HH:MM] [Area/City]` — post a digest here every day "
    "(for example `/digest subscribe 07:30 Asia/Jakarta`)\n"
    "• `/digest unsubscribe` — stop the daily digest here\n"
    "• `/digest status` — time, time zone, language and next digest\n"
    "• `/digest now` — post a digest of the last 24 hours here now"
)


def usage(problem: str | None = None) -> str:
    return f"{problem}\n\n{USAGE}" if problem else USAGE


def register(app: Any, deps: Deps) -> None:
    @app.command(COMMAND)
    async def on_digest(ack: Any, command: dict[str, Any], respond: Any, client: Any, context: Any) -> None:
        await handle_digest(deps, ack=ack, command=command, respond=respond, client=client,
                            team_id=str(context.get("team_id") or command.get("team_id") or ""),
                            bot_user_id=context.get("bot_user_id"))


def parse_subscribe(words: list[str], *, default_time: str, default_timezone: str) -> tuple[str, str]:
    """`[HH:MM] [Area/City]` in either order -> (time, zone); raises ValueError with a message for people."""
    time: str | None = None
    zone: str | None = None
    for word in words:
        parsed_time = parse_time(word)
        if parsed_time:
            if time is not None:
                raise ValueError("Give one time only, like `07:30`: one digest a day per channel.")
            time = parsed_time
            continue
        parsed_zone = parse_timezone(word)
        if parsed_zone:
            if zone is not None:
                raise ValueError("Give one time zone only, like `Asia/Jakarta`.")
            zone = parsed_zone
            continue
        if ":" in word or "." in word or word.isdigit():
            raise ValueError(
                f"“{escape(word[:40])}” isn't a time I understand. Use HH:MM (24-hour), like `07:30`."
            )
        raise ValueError(
            f"“{escape(word[:64])}” isn't a time zone I know. Use an IANA name such as `Asia/Jakarta` "
            "or `Europe/Berlin`."
        )
    return time or default_time, zone or default_timezone


async def handle_digest(
    deps: Deps, *, ack: Any, command: dict[str, Any], respond: Any, client: Any, team_id: str,
    bot_user_id: str | None = None,
) -> None:
    words = (command.get("text") or "").split()
    action = words[0].lower() if words else "help"
    channel_id = str(command.get("channel_id") or "")
    user_id = command.get("user_id")
    scheduler = deps.scheduler
    if action == "help" or (action not in {"subscribe", "unsubscribe", "status", "now"}):
        problem = None if action == "help" else f"I don't know `/digest {escape(words[0][:40])}`."
        await ack(text=usage(problem))
        return
    if deps.digests is None or scheduler is None:
        await ack(text="Daily digests are not available in this deployment.")
        return
    if action == "subscribe":
        try:
            settings = deps.settings
            time, zone = parse_subscribe(
                words[1:], default_time=settings.digest_time, default_timezone=settings.digest_timezone
            )
        except ValueError as exc:
            await ack(text=usage(str(exc)))
            return
        await ack()
        deps.tasks.spawn(_subscribe(deps, respond, client, team_id, channel_id, user_id, time, zone,
                                    bot_user_id=bot_user_id),
                         name=f"digest:subscribe:{channel_id}")
    elif len(words) > 1:
        await ack(text=usage(f"`/digest {action}` takes no arguments."))
    elif action == "unsubscribe":
        await ack()
        deps.tasks.spawn(_unsubscribe(deps, respond, team_id, channel_id, user_id),
                         name=f"digest:unsubscribe:{channel_id}")
    elif action == "status":
        await ack()
        deps.tasks.spawn(_status(deps, respond, team_id, channel_id), name=f"digest:status:{channel_id}")
    else:
        key = (team_id, channel_id)
        if key in _building:
            await ack(text="A digest for this channel is already being put together.")
            return
        _building.add(key)
        await ack(text="Putting together a digest of the last 24 hours… it will appear here in a minute.")
        deps.tasks.spawn(_now(deps, respond, client, team_id, channel_id), name=f"digest:now:{channel_id}")


_building: set[tuple[str, str]] = set()  # /digest now in progress, per channel (double clicks)


def _language(code: str) -> str:
    name = language_name(code)
    return f"{name} ({code})" if name.lower() != code.lower() else code


# Words for people added with the channel-membership checks (kept together for the message catalogs).
_TEXT = {
    "not_member": "I'm not a member of this channel, so I couldn't post a daily digest here. Invite me first "
                  "with `/invite {bot}`, then run `/digest subscribe` again.",
    "archived": "This channel is archived, so I can't post a daily digest here.",
    "paused_status": "The daily digest here is *paused* since {since}: Slack refused it ({why}). {fix}",
    "paused_dm": "I couldn't post the daily AI-news digest in {channel}: {why} I've paused that "
                 "subscription. {fix}",
    "resume": "Invite me to the channel (`/invite {bot}`) and run `/digest subscribe` there to resume it.",
    "gave_up": "No AI-news digest today: {why}",
    "gave_up_no_sources": "none of the news sources could be read, even after {tries} tries.",
    "gave_up_other": "it could not be put together ({why}).",
}
_WHY = {
    "not_in_channel": "I'm not a member of the channel.",
    "channel_not_found": "the channel no longer exists or I can't see it.",
    "is_archived": "the channel is archived.",
}


def _bot(bot_user_id: str | None) -> str:
    return f"<@{bot_user_id}>" if bot_user_id else "@Ringkas"


async def _membership_problem(client: Any, channel_id: str, bot_user_id: str | None) -> str | None:
    """Why the bot could not post in the channel, or None when it can (or Slack does not say)."""
    try:
        response = await client.conversations_info(channel=channel_id)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "") if exc.response is not None else ""
        if error == "channel_not_found":  # a private channel the bot is not in looks like this
            return _TEXT["not_member"].format(bot=_bot(bot_user_id))
        log.warning("digest membership check failed", extra={"channel": channel_id, "error": error})
        return None  # missing scope, rate limit: a refusal later still pauses and tells the subscriber
    except Exception:
        log.exception("digest membership check crashed", extra={"channel": channel_id})
        return None
    channel = response.get("channel") or {}
    if channel.get("is_archived"):
        return _TEXT["archived"]
    if channel.get("is_im") or channel.get("is_mpim") or channel.get("is_member", True):
        return None
    return _TEXT["not_member"].format(bot=_bot(bot_user_id))


async def _subscribe(
    deps: Deps, respond: Any, client: Any, team_id: str, channel_id: str, user_id: str | None, time: str,
    zone: str, *, bot_user_id: str | None = None,
) -> None:
    problem = await _membership_problem(client, channel_id, bot_user_id)
    if problem:
        await respond(text=problem, response_type="ephemeral", replace_original=False)
        return
    try:
        status = await deps.scheduler.subscribe(
            team_id, channel_id, time=time, timezone=zone, user_id=user_id
        )
    except Exception:
        log.exception("digest subscribe failed", extra={"channel": channel_id})
        await respond(text="Sorry, I couldn't save the digest subscription. Please try again.",
                      response_type="ephemeral")
        return
    who = mention(user_id) or "Someone"
    subscription = status.subscription
    await respond(
        response_type="in_channel", replace_original=False,
        text=(f"{who} subscribed this channel to the daily AI-news digest: every day at "
              f"*{subscription.time}* ({subscription.timezone}), in {escape(_language(status.language))}. "
              f"Next digest: {local_time(status.next_run, subscription.timezone)}."),
    )


async def _unsubscribe(deps: Deps, respond: Any, team_id: str, channel_id: str, user_id: str | None) -> None:
    try:
        removed = await deps.scheduler.unsubscribe(team_id, channel_id)
    except Exception:
        log.exception("digest unsubscribe failed", extra={"channel": channel_id})
        await respond(text="Sorry, I couldn't change the subscription. Please try again.",
                      response_type="ephemeral")
        return
    if not removed:
        await respond(text="This channel isn't subscribed to the daily digest.", response_type="ephemeral")
        return
    who = mention(user_id) or "Someone"
    await respond(response_type="in_channel", replace_original=False,
                  text=f"{who} unsubscribed this channel from the daily AI-news digest.")


async def _status(deps: Deps, respond: Any, team_id: str, channel_id: str) -> None:
    try:
        status = await deps.scheduler.status(team_id, channel_id)
    except Exception:
        log.exception("digest status failed", extra={"channel": channel_id})
        await respond(text="Sorry, I couldn't read the digest settings. Please try again.",
                      response_type="ephemeral")
        return
    if status is None:
        await respond(response_type="ephemeral", text=(
            "This channel isn't subscribed to the daily digest. "
            "Use `/digest subscribe [HH:MM] [Area/City]` to start it."))
        return
    subscription = status.subscription
    if subscription.paused:
        await respond(response_type="ephemeral", text=_TEXT["paused_status"].format(
            since=local_time(subscription.since, subscription.timezone) if subscription.since else "?",
            why=escape(subscription.paused), fix=_TEXT["resume"].format(bot="@Ringkas")))
        return
    today = "today's digest is posted; " if status.posted_today else ""
    await respond(response_type="ephemeral", text=(
        f"Daily AI-news digest in this channel: *{subscription.time}* ({subscription.timezone}), "
        f"in {escape(_language(status.language))}. {today.capitalize()}"
        f"{'next' if today else 'Next'} digest: {local_time(status.next_run, subscription.timezone)}."))


async def _now(deps: Deps, respond: Any, client: Any, team_id: str, channel_id: str) -> None:
    try:
        assert deps.digests is not None
        digest = await deps.digests.build_now(team_id, channel_id)
        await make_poster(client, deps)(team_id, channel_id, digest)
    except RingkasError as exc:
        log.warning("digest now failed", extra={"channel": channel_id, "code": exc.code})
        await respond(text=escape(exc.user_message), response_type="ephemeral", replace_original=False)
    except Exception:
        log.exception("digest now crashed", extra={"channel": channel_id})
        await respond(text="Sorry, something went wrong while putting the digest together.",
                      response_type="ephemeral", replace_original=False)
    finally:
        _building.discard((team_id, channel_id))


# --- posting -------------------------------------------------------------------------------------


def make_poster(client: Any, deps: Deps | None) -> DigestPoster:
    """The callable the scheduler (and `/digest now`, `bot.py digest`) uses: post, return the message ts.

    Raises `PostFailed` when Slack refused the message (nothing was posted, so a retry is safe); other
    errors propagate as they are (Slack may or may not have it). Its `paused` and `gave_up` tell people
    when a scheduled digest cannot go out.
    """
    return DigestPoster(client)


class DigestPoster:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def __call__(self, team_id: str, channel_id: str, digest: Digest) -> str | None:
        client = self.client
        main, *rest = digest_messages(digest)
        try:
            response = await post_message(client, main, channel=channel_id, unfurl_links=False,
                                          unfurl_media=False)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "unknown") if exc.response is not None else "unknown"
            message = _REFUSALS.get(error, f"Slack refused the digest ({error}).")
            raise PostFailed(message, detail=error) from None
        ts = response.get("ts")
        for message in rest:
            try:
                await post_message(client, message, channel=channel_id, thread_ts=ts, unfurl_links=False,
                                   unfurl_media=False)
            except SlackApiError as exc:  # the digest is out; a missing continuation is logged, not retried
                log.warning("digest thread reply failed", extra={"channel": channel_id,
                                                                 "error": exc.response.get("error")})
        return ts

    async def paused(self, subscription: Subscription, error: str) -> None:
        """Slack refused the scheduled digest for good: tell the person who subscribed, in a DM."""
        if not subscription.created_by:
            log.warning("paused digest has nobody to tell", extra={"channel": subscription.channel_id})
            return
        text = _TEXT["paused_dm"].format(
            channel=f"<#{subscription.channel_id}>", why=_WHY.get(error, f"Slack said `{escape(error)}`."),
            fix=_TEXT["resume"].format(bot="@Ringkas"),
        )
        await self.client.chat_postMessage(channel=subscription.created_by, text=text)  # the app's DM

    async def gave_up(self, subscription: Subscription, error: RingkasError) -> None:
        """No digest today after the last attempt: one line in the channel instead of silence."""
        if error.code == "no_sources":
            why = _TEXT["gave_up_no_sources"].format(tries=MAX_ATTEMPTS)
        else:
            why = _TEXT["gave_up_other"].format(why=escape(error.user_message.rstrip(".")))
        text = _TEXT["gave_up"].format(why=why)
        await self.client.chat_postMessage(channel=subscription.channel_id, text=text)


_REFUSALS = {
    "not_in_channel": "I'm not a member of this channel, so I can't post the digest here. Invite me first "
                      "(for example with `/invite @Ringkas`).",
    "channel_not_found": "I can't see this channel, so I can't post the digest here. Invite me first.",
    "is_archived": "This channel is archived, so I can't post the digest here.",
}


def _story_block(story: Story, words: dict[str, str]) -> dict[str, Any]:
    """Linked title, the story's lines, its sources: the sources always fit, the summary gives way."""
    title = f"*{link(story.url, story.title[:300])}*"
    parts = [link(source.url, source.name[:80]) for source in story.sources[:6]]
    if story.team_shared:
        parts.append(f"_{escape(words['shared'])}_")
    if story.from_feed:
        parts.append(f"_{escape(words['from_feed'])}_")
    sources = " · ".join(parts)
    lines = [title]
    if story.summary:
        room = SECTION_LIMIT - len(title) - len(sources) - 2
        lines.append(fit(escape(story.summary), max(room, 0)))
    lines.append(sources)
    return SectionBlock(text=MarkdownTextObject(text=fit("\n".join(lines), SECTION_LIMIT))).to_dict()


def _footer(digest: Digest, words: dict[str, str]) -> dict[str, Any]:
    if digest.sources_total:
        parts = [words["read"].format(items=digest.items_read, ok=digest.sources_read,
                                      total=digest.sources_total)]
    else:
        parts = [words["read_no_feeds"]]
    if digest.shared_count:
        parts.append(words["team_links"].format(n=digest.shared_count))
    if digest.feeds_failed:
        count = words["unavailable"].format(n=len(digest.feeds_failed))
        parts.append(f"{count}: {_failed_feeds(digest, words)}")
    text = escape(" · ".join(parts))
    return ContextBlock(elements=[MarkdownTextObject(text=fit(text, CONTEXT_LIMIT))]).to_dict()


FAILED_NAMED = 5  # unavailable feeds named in the footer; the rest are counted
FAILED_REASON_CHARS = 60


def _failed_feeds(digest: Digest, words: dict[str, str]) -> str:
    """`detik.com (HTTP 404), lab.example (no answer within 20 s), 3 more`: compact, for the footer."""
    named = []
    for failure in digest.feeds_failed[:FAILED_NAMED]:
        reason = failure.reason if len(failure.reason) <= FAILED_REASON_CHARS else (
            failure.reason[: FAILED_REASON_CHARS - 1].rstrip() + "…")
        named.append(f"{(failure.name or without_credentials(failure.url))[:60]} ({reason})")
    rest = len(digest.feeds_failed) - len(named)
    if rest > 0:
        named.append(words["more_failed"].format(n=rest))
    return ", ".join(named)


def _theme_block(theme: str) -> dict[str, Any]:
    return SectionBlock(text=MarkdownTextObject(text=fit(f"*{escape(theme)}*", 200))).to_dict()


def digest_messages(digest: Digest) -> list[Message]:
    """The channel message (header, opening, the top stories, footer) and, for a long digest, thread replies
    with the rest — every message within Slack's limits (50 blocks, 3000 characters a section)."""
    words = labels(digest.language)
    header = f"{words['title']} · {long_date(digest.local_date, digest.language)}"
    head: list[dict[str, Any]] = [
        HeaderBlock(text=PlainTextObject(text=header[:TITLE_LIMIT], emoji=False)).to_dict()
    ]
    if digest.opening:
        opening = fit(escape(digest.opening), SECTION_LIMIT)
        head.append(SectionBlock(text=MarkdownTextObject(text=opening)).to_dict())
    if not digest.stories:
        quiet = words["quiet"].format(since=local_time(digest.window_start, digest.timezone))
        head.append(SectionBlock(text=MarkdownTextObject(text=escape(quiet))).to_dict())

    # story blocks in order, with a theme line before each theme's first story
    body: list[tuple[dict[str, Any], bool]] = []  # (block, is_story)
    for theme, stories in digest.sections():
        if theme:
            body.append((_theme_block(theme), False))
        body.extend((_story_block(story, words), True) for story in stories)

    footer = [DividerBlock().to_dict(), _footer(digest, words)]
    room = min(MAX_BLOCKS - len(head) - len(footer) - 1, MAX_BLOCKS)
    main_body: list[dict[str, Any]] = []
    count = 0
    index = 0
    while index < len(body) and len(main_body) < room:
        block, is_story = body[index]
        if is_story:
            if count >= MAIN_STORIES:
                break
            count += 1
        main_body.append(block)
        index += 1
    if main_body and not body[index - 1][1] and index < len(body):  # never end on a dangling theme line
        main_body.pop()
        index -= 1
    rest = [block for block, _ in body[index:]]
    if rest:
        footer.insert(1, ContextBlock(elements=[MarkdownTextObject(text=escape(words["more"]))]).to_dict())
    fallback = f"{header}: {digest.opening}" if digest.opening else header
    messages = [Message(text=fit(escape(fallback), FALLBACK_LIMIT), blocks=head + main_body + footer)]
    for start in range(0, len(rest), THREAD_BLOCKS):
        chunk = rest[start : start + THREAD_BLOCKS]
        messages.append(Message(text=escape(f"{words['continued']} ({header})"), blocks=chunk))
    return messages
