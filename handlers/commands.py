"""`/summarize`: summarize a link on demand, and per-channel settings.

    /summarize URL [URL…]           summary posted in the channel, naming who asked
    /summarize auto on|off          summarize links people share in this channel automatically (default on)
    /summarize language CODE|auto   language of this channel's summaries
    /summarize help                 what the bot does

Every command is acknowledged at once; anything needing the database or the network runs afterwards.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from handlers.deps import Deps
from handlers.link_jobs import accept_links
from handlers.links import command_links, slack_unescape
from handlers.render import command_help_text, escape, language_label, usage_text, user_mention
from handlers.summaries import LinkJob, split_links
from ringkas.config import validate_language
from ringkas.errors import ConfigError

log = logging.getLogger("ringkas.slack.commands")

COMMAND = "/summarize"
SAVE_FAILED = "Sorry, I couldn't save that setting. Please try again."


def register(app: Any, deps: Deps) -> None:
    @app.command(COMMAND)
    async def on_summarize(
        ack: Any, command: dict[str, Any], respond: Any, client: Any, context: Any
    ) -> None:
        await handle_summarize(deps, ack=ack, command=command, respond=respond, client=client,
                               team_id=str(context.get("team_id") or command.get("team_id") or ""))


async def handle_summarize(
    deps: Deps, *, ack: Any, command: dict[str, Any], respond: Any, client: Any, team_id: str
) -> None:
    text = slack_unescape(command.get("text") or "").strip()  # echoed back escaped once, by usage_text
    words = text.split()
    first = words[0].lower() if words else ""
    channel_id = str(command.get("channel_id") or "")
    user_id = command.get("user_id")

    if not words:
        await ack(text=usage_text())
        return
    if first == "help" and len(words) == 1:
        await ack(text=command_help_text(deps.settings.max_links_per_message))
        return
    if first == "auto":
        choice = words[1].lower() if len(words) == 2 else ""
        if choice not in {"on", "off"}:
            await ack(text=usage_text("Say `/summarize auto on` or `/summarize auto off`."))
            return
        await ack()
        deps.tasks.spawn(
            _set_passive(deps, respond, team_id=team_id, channel_id=channel_id, user_id=user_id,
                         enabled=choice == "on"),
            name=f"command:auto:{channel_id}",
        )
        return
    if first == "language":
        if len(words) != 2:
            await ack(text=usage_text("Say `/summarize language CODE` (for example `id` or `en`) or "
                                      "`/summarize language auto`."))
            return
        try:
            language = resolve_language(words[1])
        except ConfigError as exc:
            await ack(text=usage_text(exc.user_message))
            return
        await ack()
        deps.tasks.spawn(
            _set_language(deps, respond, team_id=team_id, channel_id=channel_id, user_id=user_id,
                          language=None if language == "auto" else language),
            name=f"command:language:{channel_id}",
        )
        return

    links = command_links(text)
    if not links:
        await ack(text=usage_text(f"I couldn't find a web link in “{text[:200]}”."))
        return
    accepted, skipped = split_links(links, deps.settings.max_links_per_message)
    job = LinkJob(
        kind="command",
        team_id=team_id,
        channel_id=channel_id,
        # Slash commands have no message ts; the trigger id is unique per invocation.
        message_ts=str(command.get("trigger_id") or f"cmd-{time.time_ns()}"),
        thread_ts=None,
        user_id=user_id,
        links=accepted,
        skipped=skipped,
        requested_by=user_id,
        response_url=command.get("response_url"),
    )
    # The links become jobs before the ack goes out (process_before_response): acked means recorded.
    await accept_links(deps, client, job)
    await ack()


def resolve_language(word: str) -> str:
    """`id`, `ID`, `id-ID`, `ind` or `Indonesian` -> `id`; `pt-BR` -> `pt-br`; `auto` stays `auto`.

    Unknown codes are refused: a typo such as `ed` would otherwise silently become the channel's language.
    """
    try:
        return validate_language(word, "The language")
    except ConfigError:
        message = f"I don't know the language {word.strip()!r}. Use a code such as `id` or `en`."
        raise ConfigError(message) from None


async def _set_passive(
    deps: Deps, respond: Any, *, team_id: str, channel_id: str, user_id: str | None, enabled: bool
) -> None:
    try:
        await deps.state.set_passive(team_id, channel_id, enabled)
    except Exception:
        log.exception("could not store channel setting", extra={"channel": channel_id})
        await respond(text=SAVE_FAILED, response_type="ephemeral")
        return
    who = user_mention(user_id) or "Someone"
    if enabled:
        text = f"{who} turned on automatic summaries here: I'll summarize links shared in this channel."
    else:
        text = (
            f"{who} turned off automatic summaries here. Mention me with a link or use `/summarize URL` "
            "when you want one; `/summarize auto on` turns them back on."
        )
    log.info("passive summaries changed", extra={"channel": channel_id, "enabled": enabled})
    await respond(text=text, response_type="in_channel", replace_original=False)


async def _set_language(
    deps: Deps, respond: Any, *, team_id: str, channel_id: str, user_id: str | None, language: str | None
) -> None:
    try:
        await deps.state.set_language(team_id, channel_id, language)
    except Exception:
        log.exception("could not store channel setting", extra={"channel": channel_id})
        await respond(text=SAVE_FAILED, response_type="ephemeral")
        return
    who = user_mention(user_id) or "Someone"
    if language is None:
        default = deps.settings.summary_language
        fallback = "each article's own language" if default == "auto" else language_label(default)
        text = f"{who} reset the summary language here: summaries use {escape(fallback)}."
    else:
        label = escape(language_label(language))
        text = f"{who} set the summary language here: summaries will be written in {label}."
    log.info("channel language changed", extra={"channel": channel_id, "language": language})
    await respond(text=text, response_type="in_channel", replace_original=False)
