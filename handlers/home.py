"""App Home: the workspace at a glance, and the settings a person may change from there.

Shows channels with their automatic summaries and language, digest subscriptions with their next run,
model usage with its estimated cost this week and month, and recent feedback. Buttons turn a channel's
automatic summaries on or off and open a modal for its language; both are validated like the slash
commands (the same language parser) and only allowed to members of that channel.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)

from handlers.commands import resolve_language
from handlers.deps import Deps
from handlers.render import escape, fit, language_label
from handlers.summaries import words_for
from ringkas import home
from ringkas.errors import ConfigError
from ringkas.feedback import KIND_NAMES, REASONS
from ringkas.i18n import Translator

log = logging.getLogger("ringkas.slack.home")

TOGGLE_ACTION = "home_toggle_passive"
LANGUAGE_ACTION = "home_language"
LANGUAGE_VIEW = "home_language_modal"
MAX_CHANNELS = 15  # Home views hold 100 blocks; each channel takes two


def _section(text: str) -> dict[str, Any]:
    return SectionBlock(text=MarkdownTextObject(text=fit(text, 3000))).to_dict()


def _context(text: str) -> dict[str, Any]:
    return ContextBlock(elements=[MarkdownTextObject(text=fit(text, 2000))]).to_dict()


def _money(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 0.01 or amount == 0 else "< $0.01"


def _usage_line(label: str, period: home.UsagePeriod, _: Translator) -> str:
    calls, tokens = format(period.calls, ","), format(period.tokens, ",")
    line = _(
        "{period}: {calls} model calls · {tokens} tokens · about {cost}",
        period=label,
        calls=calls,
        tokens=tokens,
        cost=_money(period.cost),
    )
    if period.unpriced:
        line += " " + _("(no price known for {models})", models=", ".join(escape(m) for m in period.unpriced))
    return line


async def home_view(deps: Deps, team_id: str, notice: str | None = None) -> dict[str, Any]:
    _ = words_for(deps, None)
    db = deps.ringkas.db
    blocks: list[dict[str, Any]] = [
        HeaderBlock(text=PlainTextObject(text=_("Ringkas in this workspace"))).to_dict(),
    ]
    if notice:
        blocks.append(_section(f":information_source: {escape(notice)}"))
    default = deps.settings.summary_language
    default_label = _("each article's own language") if default == "auto" else language_label(default, _)

    blocks += [DividerBlock().to_dict(), _section("*" + _("Channels") + "*")]
    channels = await home.channels(db, team_id)
    if not channels:
        blocks.append(
            _context(
                _(
                    "Every channel I am in summarizes shared links automatically, in {language}.",
                    language=escape(default_label),
                )
            )
        )
    for line in channels[:MAX_CHANNELS]:
        state = _("automatic summaries on") if line.passive_summaries else _("automatic summaries off")
        language = language_label(line.language, _) if line.language else default_label
        blocks.append(_section(f"<#{line.channel_id}> · {state} · {escape(language)}"))
        blocks.append(
            ActionsBlock(
                block_id=f"channel_{line.channel_id}",
                elements=[
                    ButtonElement(
                        text=_("Turn off") if line.passive_summaries else _("Turn on"),
                        action_id=TOGGLE_ACTION,
                        value=f"{line.channel_id}|{'off' if line.passive_summaries else 'on'}",
                    ),
                    ButtonElement(text=_("Language…"), action_id=LANGUAGE_ACTION, value=line.channel_id),
                ],
            ).to_dict()
        )

    blocks += [DividerBlock().to_dict(), _section("*" + _("Daily digests") + "*")]
    lines: list[str] = []
    if deps.digests is not None and deps.scheduler is not None:
        for subscription in await deps.digests.store.subscriptions():
            if subscription.team_id != team_id:
                continue
            status = await deps.scheduler.status(team_id, subscription.channel_id)
            if status is None:
                continue
            lines.append(
                _(
                    "<#{channel}> · every day at {time} ({zone}) · {language} · next: {next}",
                    channel=subscription.channel_id,
                    time=subscription.time,
                    zone=subscription.timezone,
                    language=escape(language_label(status.language, _)),
                    next=_.moment(status.next_run, subscription.timezone),
                )
            )
    blocks.append(
        _context("\n".join(lines[:20]) or _("No channel gets a daily digest yet: `/digest subscribe`."))
    )

    week, month = await home.usage_week_and_month(db, team_id)
    blocks += [
        DividerBlock().to_dict(),
        _section("*" + _("Usage and estimated cost") + "*"),
        _context(_usage_line(_("Last 7 days"), week, _) + "\n" + _usage_line(_("Last 30 days"), month, _)),
    ]

    blocks += [DividerBlock().to_dict(), _section("*" + _("Recent feedback") + "*")]
    if deps.feedback is not None:
        votes = await deps.feedback.report(days=30, team_id=team_id)
        recent = await deps.feedback.recent(team_id, limit=5)
        summary = _("Last 30 days: {up} 👍 · {down} 👎", up=votes.up, down=votes.down)
        details = [
            f"{'👍' if v.vote > 0 else '👎'} {_(KIND_NAMES.get(v.kind, v.kind))} · <#{v.channel_id}>"
            f" · {_.date(v.at.date())}" + (f" · {_(REASONS.get(v.reason, v.reason))}" if v.reason else "")
            for v in recent
        ]
        blocks.append(_context("\n".join([summary, *details])))
    return {"type": "home", "blocks": blocks[:100]}


def language_modal(channel_id: str, _: Translator) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": LANGUAGE_VIEW,
        "private_metadata": channel_id,
        "title": {"type": "plain_text", "text": _("Summary language")[:24]},
        "submit": {"type": "plain_text", "text": _("Save")[:24]},
        "close": {"type": "plain_text", "text": _("Cancel")[:24]},
        "blocks": [
            SectionBlock(
                text=MarkdownTextObject(
                    text=_("Summaries and my messages in <#{channel}>:", channel=channel_id)
                )
            ).to_dict(),
            InputBlock(
                block_id="language",
                label=_("Language"),
                hint=_(
                    "A code or a name such as id, en, pt-BR or Indonesian; auto = each article's own language"
                ),
                element=PlainTextInputElement(action_id="code", max_length=40),
            ).to_dict(),
        ],
    }


async def _is_member(client: Any, channel_id: str, user_id: str) -> bool:
    """Whether `user_id` is in the channel (only members change a channel's settings, as with the
    slash commands, which only its members can type there)."""
    cursor: str | None = None
    try:
        for _page in range(20):
            found = await client.conversations_members(channel=channel_id, limit=1000, cursor=cursor)
            if user_id in (found.get("members") or []):
                return True
            cursor = (found.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return False
    except SlackApiError as exc:
        log.info("could not read the channel's members", extra={"error": exc.response.get("error")})
    return False


def register(app: Any, deps: Deps) -> None:
    @app.event("app_home_opened")
    async def on_home(event: dict[str, Any], context: Any, body: dict[str, Any], client: Any) -> None:
        if event.get("tab") != "home" or not event.get("user"):
            return
        team_id = str(context.get("team_id") or body.get("team_id") or "")
        deps.tasks.spawn(publish(deps, client, team_id, str(event["user"])), name=f"home:{event['user']}")

    @app.action(TOGGLE_ACTION)
    async def on_toggle(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any) -> None:
        await ack()
        channel_id, _sep, choice = str(action.get("value") or "").partition("|")
        user_id = str((body.get("user") or {}).get("id") or "")
        team_id = str((body.get("team") or {}).get("id") or "")
        if not channel_id.startswith(("C", "G")) or choice not in {"on", "off"} or not user_id:
            return
        deps.tasks.spawn(
            _toggle(deps, client, team_id, user_id, channel_id, choice == "on"),
            name=f"home-toggle:{channel_id}",
        )

    @app.action(LANGUAGE_ACTION)
    async def on_language(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any) -> None:
        await ack()
        channel_id = str(action.get("value") or "")
        if not channel_id.startswith(("C", "G")):
            return
        _ = words_for(deps, None)
        try:
            await client.views_open(trigger_id=body["trigger_id"], view=language_modal(channel_id, _))
        except SlackApiError as exc:
            log.info("could not open the language modal", extra={"error": exc.response.get("error")})

    @app.view(LANGUAGE_VIEW)
    async def on_language_submit(ack: Any, body: dict[str, Any], view: dict[str, Any], client: Any) -> None:
        _ = words_for(deps, None)
        channel_id = str(view.get("private_metadata") or "")
        value = (((view.get("state") or {}).get("values") or {}).get("language") or {}).get("code") or {}
        word = str(value.get("value") or "").strip()
        try:
            language = resolve_language(word, _) if word else None
        except ConfigError as exc:
            await ack(response_action="errors", errors={"language": exc.user_message[:150]})
            return
        if language is None or not channel_id.startswith(("C", "G")):
            await ack(
                response_action="errors", errors={"language": _("Type a language code such as id or en.")}
            )
            return
        user_id = str((body.get("user") or {}).get("id") or "")
        team_id = str((body.get("team") or {}).get("id") or view.get("team_id") or "")
        if not await _is_member(client, channel_id, user_id):
            await ack(
                response_action="errors",
                errors={"language": _("Only members of that channel can change its settings.")},
            )
            return
        await ack()
        deps.tasks.spawn(
            _set_language(
                deps, client, team_id, user_id, channel_id, None if language == "auto" else language
            ),
            name=f"home-language:{channel_id}",
        )


async def publish(deps: Deps, client: Any, team_id: str, user_id: str, notice: str | None = None) -> None:
    try:
        view = await home_view(deps, team_id, notice)
        await client.views_publish(user_id=user_id, view=view)
    except Exception:
        log.exception("could not publish the App Home", extra={"user": user_id})


async def _toggle(
    deps: Deps, client: Any, team_id: str, user_id: str, channel_id: str, enabled: bool
) -> None:
    _ = words_for(deps, None)
    notice: str | None
    if not await _is_member(client, channel_id, user_id):
        notice = _("Only members of that channel can change its settings.")
    else:
        try:
            await deps.state.set_passive(team_id, channel_id, enabled)
            notice = None
        except Exception:
            log.exception("could not store channel setting", extra={"channel": channel_id})
            notice = _("Sorry, I couldn't save that setting. Please try again.")
    await publish(deps, client, team_id, user_id, notice)


async def _set_language(
    deps: Deps, client: Any, team_id: str, user_id: str, channel_id: str, language: str | None
) -> None:
    _ = words_for(deps, None)
    notice: str | None = None
    try:
        await deps.state.set_language(team_id, channel_id, language)
    except Exception:
        log.exception("could not store channel setting", extra={"channel": channel_id})
        notice = _("Sorry, I couldn't save that setting. Please try again.")
    await publish(deps, client, team_id, user_id, notice)
