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

from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject, SectionBlock

from handlers.links import display_host
from ringkas.documents import SummaryResult

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

_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "tldr": "TL;DR",
        "key_points": "Key points",
        "why": "Why it matters",
        "minutes": "{n} min read",
        "cached": "cached",
        "requested_by": "Requested by {user}",
        "more_points": "…and {n} more",
        "untitled": "Untitled",
    },
    "id": {
        "tldr": "Ringkasnya",
        "key_points": "Poin utama",
        "why": "Mengapa penting",
        "minutes": "{n} menit baca",
        "cached": "dari cache",
        "requested_by": "Diminta oleh {user}",
        "more_points": "…dan {n} lagi",
        "untitled": "Tanpa judul",
    },
}


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


def labels(language: str | None) -> dict[str, str]:
    base = (language or "en").split("-")[0].lower()
    return _LABELS.get(base, _LABELS["en"])


def _section(text: str) -> dict[str, Any]:
    return SectionBlock(text=MarkdownTextObject(text=fit(text, SECTION_LIMIT))).to_dict()


def _context(*parts: str) -> dict[str, Any]:
    elements = [MarkdownTextObject(text=fit(part, CONTEXT_LIMIT)) for part in parts if part][:10]
    return ContextBlock(elements=elements).to_dict()


def language_label(code: str) -> str:
    """`id` -> `Indonesian (id)`."""
    from ringkas.language import language_name

    try:
        name = language_name(code)
    except Exception:  # an unknown code still renders
        name = None
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


def summary_message(result: SummaryResult, *, shared_url: str | None = None,
                    requested_by: str | None = None) -> Message:
    """The summary of one article, as Block Kit plus a plain-text fallback."""
    article, summary = result.article, result.summary
    words = labels(summary.language)
    url = article.canonical_url if article.canonical_url.startswith(("http://", "https://")) else (
        shared_url or article.url
    )
    title = (article.title or summary.title or display_host(url) or words["untitled"]).strip()
    title = " ".join(title.split())
    if len(title) > TITLE_LIMIT:
        title = title[: TITLE_LIMIT - 1].rstrip() + _ELLIPSIS

    meta = [escape(article.site_name or display_host(url))]
    if article.author:
        meta.append(escape(article.author))
    if article.published:
        meta.append(escape(article.published))
    meta.append(words["minutes"].format(n=article.reading_minutes))

    footer = [language_label(summary.language), escape(summary.model)]
    if result.cached:
        footer.append(words["cached"])
    mention = user_mention(requested_by)
    if mention:
        footer.append(words["requested_by"].format(user=mention))

    blocks: list[dict[str, Any]] = [
        _section(f"*{link(url, title)}*"),
        _context(" · ".join(meta)),
        _section(f"*{words['tldr']}:* {escape(summary.tldr.strip())}"),
    ]
    why_text = (summary.why_it_matters or "").strip()
    why = _section(f"*{words['why']}*\n{escape(why_text)}") if why_text else None
    reserved = len(blocks) + 1 + (1 if why else 0)
    points = [p for p in summary.key_points if p and p.strip()]
    if points:
        budget = MAX_BLOCKS - reserved
        blocks.extend(_point_sections(points, words["key_points"], budget, words["more_points"]))
    if why:
        blocks.append(why)
    blocks.append(_context(" · ".join(footer)))
    assert len(blocks) <= MAX_BLOCKS

    fallback_lines = [f"{escape(title)}: {escape(summary.tldr.strip())}"]
    fallback_lines += [f"• {escape(p.strip())}" for p in points]
    if summary.why_it_matters:
        fallback_lines.append(f"{words['why']}: {escape(summary.why_it_matters.strip())}")
    return Message(text=fit("\n".join(fallback_lines), FALLBACK_LIMIT), blocks=blocks)


def status_message(url: str, *, requested_by: str | None = None) -> Message:
    """Shown at once while the page is read and summarized; later replaced by the summary."""
    mention = user_mention(requested_by)
    who = f"{mention} asked for a summary. " if mention else ""
    text = f"{who}:hourglass_flowing_sand: Reading {link(url, display_host(url))}…"
    plain = f"Reading {escape(display_host(url))}…"
    return Message(text=plain, blocks=[_section(text)])


def failure_message(url: str, reason: str, *, requested_by: str | None = None) -> Message:
    """A plain-words failure for one link (`reason` is a RingkasError.user_message or our apology)."""
    mention = user_mention(requested_by)
    prefix = f"{mention} " if mention else ""
    text = f"{prefix}:warning: I couldn't summarize {link(url, display_host(url))}: {escape(reason)}"
    plain = f"I couldn't summarize {escape(display_host(url))}: {escape(reason)}"
    return Message(text=fit(plain, FALLBACK_LIMIT), blocks=[_section(text)])


def failure_text(reason: str) -> Message:
    """A failure that is not about one link."""
    text = f":warning: {escape(reason)}"
    return Message(text=escape(reason), blocks=[_section(text)])


def skipped_links_message(skipped: list[str], cap: int) -> Message:
    named: list[str] = []
    for url in skipped[:10]:
        linked = link(url, display_host(url))
        if sum(len(n) + 2 for n in named) + len(linked) > SECTION_LIMIT - 400:
            break  # never cut through a link's markup
        named.append(linked)
    names = ", ".join(named)
    more = f" and {len(skipped) - len(named)} more" if len(skipped) > len(named) else ""
    noun = "link" if len(skipped) == 1 else "links"
    text = (
        f"I summarize up to {cap} links per message, so I skipped {len(skipped)} {noun}: {names}{more}. "
        "Share them in a separate message if you'd like those too."
    )
    plain = f"I summarize up to {cap} links per message, so I skipped {len(skipped)} {noun}."
    return Message(text=plain, blocks=[_section(text)])


def help_message(bot_user_id: str | None = None) -> Message:
    me = user_mention(bot_user_id) or "@Ringkas"
    text = (
        ":wave: Hi! I summarize AI news links for this team.\n"
        f"• Mention me with a link — `{me} https://…` — and I'll reply in the thread with a summary.\n"
        "• Links shared in channels I'm in are summarized automatically "
        "(`/summarize auto off` turns that off for a channel).\n"
        "• `/summarize URL` summarizes on demand; `/summarize help` lists everything.\n"
        f"• To ask about an article, mention me in its summary thread with your question, or use `/ask`."
    )
    plain = "Hi! Mention me with a link and I'll summarize it in the thread. Try /summarize help."
    return Message(text=plain, blocks=[_section(text)])


def command_help_text(cap: int) -> str:
    return (
        "*Ringkas — summaries of shared links*\n"
        "• `/summarize URL` — summarize a link here, for everyone in the channel\n"
        "• `/summarize auto on` / `/summarize auto off` — summarize links people share in this channel "
        "automatically (on by default)\n"
        "• `/summarize language CODE` — write this channel's summaries in a language, e.g. `id` or `en`; "
        "`/summarize language auto` uses each article's own language (or the app default)\n"
        "• `/summarize help` — this message\n"
        f"You can also mention me with up to {cap} links, or DM me a link."
    )


def usage_text(problem: str | None = None) -> str:
    lead = f"{escape(problem)}\n" if problem else ""
    return (
        f"{lead}Usage: `/summarize URL`, `/summarize auto on|off`, `/summarize language CODE|auto`, "
        "`/summarize help`."
    )
