"""Slack messages (Block Kit via slack_sdk.models.blocks) for summaries, progress, failures and help.

Every piece of text that comes from a web page or a model goes through `escape()`: `&`, `<` and `>` are
escaped so it cannot form mentions (`<!channel>`, `<@U…>`), masked links or dates, bare `@channel`,
`@here` and `@everyone` get an invisible joiner so they never ping, and bidi overrides are dropped.
Only http(s) URLs become links. Slack's limits are respected with
room to spare: 50 blocks, 3000 characters per section, 2000 per context element, and a plain `text`
fallback for notifications and screen readers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ContextActionsBlock,
    ContextBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
    MarkdownTextObject,
    SectionBlock,
)

from handlers.links import display_host
from ringkas.documents import SummaryResult
from ringkas.i18n import Translator, translator

MAX_BLOCKS = 50
SECTION_LIMIT = 3000
CONTEXT_LIMIT = 2000
TITLE_LIMIT = 150
FALLBACK_LIMIT = 3000  # Slack truncates `text` at 40k; notifications only need the gist
LINK_URL_LIMIT = 2000  # longer URLs are named, not linked: a cut `<url|label>` would break the markup
_BROADCAST = re.compile(r"@(channel|here|everyone)", re.IGNORECASE)
# Bidirectional overrides, embeddings and isolates: in a title or model text they can show "moc.knab"
# as "bank.com" or flip the rest of our message; legitimate right-to-left text does not need them.
_BIDI_CONTROLS = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_SLACK_ID = re.compile(r"^[UWB][A-Z0-9]{2,}$")
_ELLIPSIS = "…"
# Characters that would end or split Slack's `<url|label>` markup (or break the link) inside a URL.
_URL_ESCAPES = {"&": "&amp;", "<": "%3C", ">": "%3E", "|": "%7C", " ": "%20", "\n": "%0A", "\r": "%0D",
                "\t": "%09"}

@dataclass(frozen=True)
class Message:
    """Arguments for chat.postMessage / chat.update / response_url: `text` fallback plus `blocks`."""

    text: str
    blocks: list[dict[str, Any]]

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def escape(text: str | None) -> str:
    """Make untrusted text safe for Slack mrkdwn and plain `text` fields."""
    if not text:
        return ""
    text = _BIDI_CONTROLS.sub("", text)
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub(lambda m: "@\u2060" + m.group(1), escaped)


def fit(escaped: str, limit: int) -> str:
    """Shorten already-escaped text to `limit` characters without cutting an `&amp;`-style entity."""
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - len(_ELLIPSIS)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut.rstrip() + _ELLIPSIS


def link(url: str, label: str) -> str:
    """A mrkdwn link whose label is escaped untrusted text and whose URL cannot break out of `<…|…>`."""
    text = escape(label) or escape(display_host(url))
    if not url.lower().startswith(("http://", "https://")):
        return text  # javascript:, data:, slack:// and friends are never made clickable
    safe_url = "".join(_URL_ESCAPES.get(ch, ch) for ch in _BIDI_CONTROLS.sub("", url))
    if len(safe_url) > LINK_URL_LIMIT:
        return text
    return f"<{safe_url}|{text}>"


def user_mention(user_id: str | None) -> str:
    """`<@U123>` for a well-formed Slack user id, otherwise nothing (never trust ids blindly)."""
    return f"<@{user_id}>" if user_id and _SLACK_ID.match(user_id) else ""


def _section(text: str) -> dict[str, Any]:
    return SectionBlock(text=MarkdownTextObject(text=fit(text, SECTION_LIMIT))).to_dict()


def _context(*parts: str) -> dict[str, Any]:
    elements = [MarkdownTextObject(text=fit(part, CONTEXT_LIMIT)) for part in parts if part][:10]
    return ContextBlock(elements=elements).to_dict()


def language_label(code: str, _: Translator | None = None) -> str:
    """`id` -> `Indonesian (id)` (`Indonesia (id)` in Indonesian)."""
    name = _english(_).language_name(code)
    return f"{name} ({code})" if name and name.lower() != code.lower() else code


def _point_sections(points: list[str], heading: str, budget: int, more_label: str) -> list[dict[str, Any]]:
    """Key points as bullets, packed into as few sections as fit, using at most `budget` blocks."""
    sections: list[str] = []
    current = f"*{heading}*"
    shown = 0
    for point in points:
        bullet = "• " + fit(escape(point.strip()), SECTION_LIMIT - 200)
        if len(current) + 1 + len(bullet) <= SECTION_LIMIT - 100:
            current += "\n" + bullet
            shown += 1
            continue
        if len(sections) + 2 > budget:
            break
        sections.append(current)
        current = bullet
        shown += 1
    if shown < len(points):
        current += "\n_" + more_label.format(n=len(points) - shown) + "_"
    sections.append(current)
    return [_section(text) for text in sections]


FEEDBACK_ACTION = "ringkas_feedback"


def feedback_block(kind: str, target: str | int | None, _: Translator | None = None) -> dict[str, Any]:
    """👍/👎 buttons (`context_actions` + `feedback_buttons`) under a summary, digest or answer; the
    value names what is voted on: `up|summary|<article id>`."""
    _ = _english(_)
    shown = "" if target is None else str(target)
    return ContextActionsBlock(elements=[FeedbackButtonsElement(
        action_id=FEEDBACK_ACTION,
        positive_button=FeedbackButtonObject(text=_("Helpful"), value=f"up|{kind}|{shown}",
                                             accessibility_label=_("This was helpful")),
        negative_button=FeedbackButtonObject(text=_("Not helpful"), value=f"down|{kind}|{shown}",
                                             accessibility_label=_("This was not helpful")),
    )]).to_dict()


def _english(_: Translator | None) -> Translator:
    return _ if _ is not None else translator("en")


def _same_title(a: str, b: str) -> bool:
    def simple(text: str) -> str:
        return "".join(ch for ch in text.casefold() if ch.isalnum())

    return simple(a) == simple(b)


def _short_title(title: str) -> str:
    title = " ".join(title.split())
    if len(title) > TITLE_LIMIT:
        title = title[: TITLE_LIMIT - 1].rstrip() + _ELLIPSIS
    return title


def summary_message(result: SummaryResult, *, shared_url: str | None = None,
                    requested_by: str | None = None) -> Message:
    """The summary of one article, as Block Kit plus a `text` that is the TL;DR (Slack shows `text` in
    the notification and the channel preview, so the first thing people read is the gist).

    The headline is the model's title in the summary's language, linked to the article; the page's own
    title follows on a second line when it differs (an English article summarized for an `id` channel).
    The fixed words are in the summary's language (its catalog; English where there is none)."""
    article, summary = result.article, result.summary
    _ = translator(summary.language)
    url = article.canonical_url if article.canonical_url.startswith(("http://", "https://")) else (
        shared_url or article.url
    )
    original = _short_title(article.title or "")
    title = _short_title(summary.title or "") or original or display_host(url) or _("Untitled")

    meta = [escape(article.site_name or display_host(url))]
    if article.author:
        meta.append(escape(article.author))
    if article.published:
        meta.append(escape(_.date(article.published)))
    meta.append(_.n("{n} min read", "{n} min read", article.reading_minutes))

    footer = [language_label(summary.language, _), escape(summary.model)]
    if result.cached:
        footer.append(_("cached"))
    mention = user_mention(requested_by)
    if mention:
        footer.append(_("Requested by {user}", user=mention))

    heading = f"*{link(url, title)}*"
    if original and not _same_title(original, title):
        shown = f"_{escape(original)}_"
        heading += "\n" + _("Original title: {title}", title=shown)
    tldr = escape(summary.tldr.strip())
    tldr_label, why_label = _("TL;DR"), _("Why it matters")
    blocks: list[dict[str, Any]] = [
        _section(heading),
        _context(" · ".join(meta)),
        _section(f"*{tldr_label}:* {tldr}"),
    ]
    why_text = (summary.why_it_matters or "").strip()
    why = _section(f"*{why_label}*\n{escape(why_text)}") if why_text else None
    reserved = len(blocks) + 2 + (1 if why else 0)
    points = [p for p in summary.key_points if p and p.strip()]
    if points:
        budget = MAX_BLOCKS - reserved
        blocks.extend(_point_sections(points, _("Key points"), budget, _("…and {n} more")))
    if why:
        blocks.append(why)
    blocks.append(feedback_block("summary", article.id, _))
    blocks.append(_context(" · ".join(footer)))
    assert len(blocks) <= MAX_BLOCKS
    return Message(text=fit(tldr or escape(title), FALLBACK_LIMIT), blocks=blocks)


def status_text(url: str, _: Translator | None = None) -> str:
    """The progress line while a link is read: a thread status or a private note."""
    return _english(_)("Reading {host}…", host=display_host(url))


def status_message(url: str, *, requested_by: str | None = None, _: Translator | None = None) -> Message:
    """A progress line as a message (private notes); never a placeholder later edited into the result."""
    _ = _english(_)
    mention = user_mention(requested_by)
    text = f":hourglass_flowing_sand: {_('Reading {host}…', host=link(url, display_host(url)))}"
    if mention:
        text = f"{mention} {text}"
    plain = _("Reading {host}…", host=escape(display_host(url)))
    return Message(text=plain, blocks=[_section(text)])


def failure_message(url: str, reason: str, *, requested_by: str | None = None,
                    _: Translator | None = None) -> Message:
    """A plain-words failure for one link (`reason` is already in the reader's language)."""
    _ = _english(_)
    mention = user_mention(requested_by)
    prefix = f"{mention} " if mention else ""
    linked = link(url, display_host(url))
    reason = escape(reason)
    text = f"{prefix}:warning: " + _("I couldn't summarize {link}: {reason}", link=linked, reason=reason)
    plain = _("I couldn't summarize {link}: {reason}", link=escape(display_host(url)), reason=reason)
    return Message(text=fit(plain, FALLBACK_LIMIT), blocks=[_section(text)])


def failure_text(reason: str) -> Message:
    """A failure that is not about one link (`reason` already in the reader's language)."""
    text = f":warning: {escape(reason)}"
    return Message(text=escape(reason), blocks=[_section(text)])


def skipped_links_message(skipped: list[str], cap: int, _: Translator | None = None) -> Message:
    _ = _english(_)
    named: list[str] = []
    for url in skipped[:10]:
        linked = link(url, display_host(url))
        if sum(len(n) + 2 for n in named) + len(linked) > SECTION_LIMIT - 400:
            break  # never cut through a link's markup
        named.append(linked)
    names = ", ".join(named)
    if len(skipped) > len(named):
        names = _("{names} and {n} more", names=names, n=len(skipped) - len(named))
    text = _.n(
        "I summarize up to {cap} links per message, so I skipped {n} link: {names}. "
        "Share it in a separate message if you'd like it too.",
        "I summarize up to {cap} links per message, so I skipped {n} links: {names}. "
        "Share them in a separate message if you'd like those too.",
        len(skipped), cap=cap, names=names,
    )
    plain = _.n("I summarize up to {cap} links per message, so I skipped {n} link.",
                "I summarize up to {cap} links per message, so I skipped {n} links.", len(skipped), cap=cap)
    return Message(text=plain, blocks=[_section(text)])


def help_message(
    bot_user_id: str | None = None, _: Translator | None = None, *, emoji: str = "memo"
) -> Message:
    _ = _english(_)
    me = user_mention(bot_user_id) or "@Ringkas"
    text = "\n".join([
        ":wave: " + _("Hi! I summarize AI news links for this team."),
        "• " + _("Mention me with a link — `{me} https://…` — and I'll reply in the thread with a summary.",
                 me=me),
        "• " + _("Links shared in channels I'm in are summarized automatically "
                 "(`/summarize auto off` turns that off for a channel)."),
        "• " + _("React with :{emoji}: to a message, or use its “Summarize link” shortcut, to summarize "
                 "its links.", emoji=emoji),
        "• " + _("`/summarize URL` summarizes on demand; `/summarize help` lists everything."),
        "• " + _("To ask about an article, mention me in its summary thread with your question, "
                 "or use `/ask`."),
    ])
    plain = _("Hi! Mention me with a link and I'll summarize it in the thread. Try /summarize help.")
    return Message(text=plain, blocks=[_section(text)])


def command_help_text(cap: int, _: Translator | None = None) -> str:
    _ = _english(_)
    return "\n".join([
        "*" + _("Ringkas — summaries of shared links") + "*",
        "• " + _("`/summarize URL` — summarize a link here, for everyone in the channel"),
        "• " + _("`/summarize auto on` / `/summarize auto off` — summarize links people share in this "
                 "channel automatically (on by default)"),
        "• " + _("`/summarize language CODE` — write this channel's summaries (and my messages) in a "
                 "language, e.g. `id` or `en`; `/summarize language auto` uses each article's own "
                 "language (or the app default)"),
        "• " + _("`/summarize help` — this message"),
        _("You can also mention me with up to {cap} links, or DM me a link.", cap=cap),
    ])


def usage_text(problem: str | None = None, _: Translator | None = None) -> str:
    _ = _english(_)
    lead = f"{escape(problem)}\n" if problem else ""
    return lead + _("Usage: `/summarize URL`, `/summarize auto on|off`, `/summarize language CODE|auto`, "
                    "`/summarize help`.")


def unfurl_card(result: SummaryResult, *, shared_url: str) -> dict[str, Any]:
    """A link preview card (`chat.unfurl`): the headline in the summary's language and the TL;DR."""
    article, summary = result.article, result.summary
    _ = translator(summary.language)
    title = _short_title(summary.title or "") or _short_title(article.title or "") or display_host(shared_url)
    meta = [escape(article.site_name or display_host(shared_url)),
            _.n("{n} min read", "{n} min read", article.reading_minutes)]
    tldr_label = _("TL;DR")
    return {"blocks": [
        _section(f"*{link(shared_url, title)}*\n*{tldr_label}:* {escape(summary.tldr.strip())}"),
        _context(" · ".join(meta)),
    ]}
