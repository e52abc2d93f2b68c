"""Plain-text output of the terminal commands (`python bot.py summarize|extract|digest|usage`).

Everything printed comes from untrusted pages, so control characters (ANSI escapes that could
rewrite the terminal) are removed; newlines and tabs stay.
"""

from __future__ import annotations

import re
import textwrap
from typing import TYPE_CHECKING

from ringkas.documents import Article, SummaryResult
from ringkas.language import language_name
from ringkas.model_server.names import short_model_name
from ringkas.urls import without_credentials

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ringkas.digest.models import Digest
    from ringkas.limits import Limits, LimitStatus
    from ringkas.usage import UsageReport

WIDTH = 100
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """Text safe to print: no terminal control characters, Windows line ends normalised."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _line(text: str) -> str:
    return " ".join(clean(text).split())


def _wrap(text: str, *, indent: str = "", first: str | None = None) -> str:
    return textwrap.fill(
        _line(text),
        width=WIDTH,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def format_summary(result: SummaryResult) -> str:
    article, summary = result.article, result.summary
    lines: list[str] = []
    title = summary.title or article.title or article.canonical_url
    lines.append(_wrap(title))
    source = [article.site_name, article.author, article.published]
    described = " · ".join(_line(s) for s in source if s and _line(s))
    if described:
        lines.append(described)
    lines.append(_line(article.url if article.url else article.canonical_url))
    lines.append("")
    lines.append(_wrap(summary.tldr, first="TL;DR: ", indent="       "))
    if summary.key_points:
        lines.append("")
        lines.append("Key points:")
        lines.extend(_wrap(point, first="  • ", indent="    ") for point in summary.key_points)
    if summary.why_it_matters:
        lines.append("")
        lines.append(_wrap(summary.why_it_matters, first="Why it matters: ", indent="  "))
    lines.append("")
    lines.append(_footer(result))
    return "\n".join(lines)


def _footer(result: SummaryResult) -> str:
    summary, article = result.summary, result.article
    name = language_name(summary.language)
    language = f"{name} ({summary.language})" if name != summary.language else summary.language
    usage = summary.usage
    calls = f" in {usage.calls} calls" if usage.calls > 1 else ""
    tokens = f"{usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion tokens{calls}"
    if result.cached:  # this run cost nothing; say what the stored summary cost when it was made
        tokens = f"cached · 0 tokens now (made with {tokens})"
    minutes = article.reading_minutes
    reading = f"{minutes} min read ({article.word_count:,} words)"
    return f"— {language} · {short_model_name(summary.model)} · {tokens} · {reading}"


def format_extract(article: Article) -> str:
    """The main text the model receives, title first; nothing else."""
    text = clean(article.text).strip()
    title = _line(article.title or "")
    if title and not text.startswith(title):
        return f"{title}\n\n{text}"
    return text


def format_digest(digest: Digest) -> str:
    """A digest as plain text: date, opening line, numbered stories (grouped by theme) with their
    sources' links, and a footer with what was read and what the model cost."""
    from ringkas.digest.labels import labels, local_time, long_date

    words = labels(digest.language)
    out = [f"{words['title']} — {long_date(digest.local_date, digest.language)}"]
    if digest.opening:
        out += ["", _wrap(digest.opening)]
    if not digest.stories:
        out += ["", _wrap(words["quiet"].format(since=local_time(digest.window_start, digest.timezone)))]
    number = 0
    for theme, stories in digest.sections():
        if theme:
            out += ["", f"## {_line(theme)}"]
        for story in stories:
            number += 1
            out += ["", _wrap(story.title, first=f"{number}. ", indent=" " * (len(str(number)) + 2))]
            indent = " " * (len(str(number)) + 2)
            if story.summary:
                out.append(_wrap(story.summary, indent=indent))
            links = ", ".join(
                f"{_line(source.name)} <{_line(without_credentials(source.url))}>" for source in story.sources
            )
            marker = f" [{words['shared']}]" if story.team_shared else ""
            if story.from_feed:
                marker += f" [{words['from_feed']}]"
            out.append(_wrap(f"{words['sources']}: {links}{marker}", indent=indent))
    usage = digest.usage
    since = local_time(digest.window_start, digest.timezone)
    until = local_time(digest.window_end, digest.timezone)
    footer = [
        words["read"].format(items=digest.items_read, ok=digest.sources_read, total=digest.sources_total),
        f"{since} – {until}",
    ]
    if digest.shared_count:
        footer.append(words["team_links"].format(n=digest.shared_count))
    if digest.feeds_failed:
        footer.append(words["unavailable"].format(n=len(digest.feeds_failed)))
    footer.append(digest.language)
    if digest.model:
        footer.append(digest.model)
    footer.append(f"{usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion tokens "
                  f"in {usage.calls} model call{'s' if usage.calls != 1 else ''}")
    out += ["", _wrap("— " + " · ".join(footer))]
    for failure in digest.feeds_failed:
        out.append(f"  unavailable: {_line(without_credentials(failure.url))} — {_line(failure.reason)}")
    return "\n".join(out)


def format_usage(
    report: UsageReport, limits: Limits | None = None, status: Sequence[LimitStatus] = ()
) -> str:
    """Token usage by feature, channel and model, as aligned plain-text tables; then the limits and
    today's use against them."""
    lines = [
        f"Usage since {report.since:%Y-%m-%d %H:%M} UTC",
        f"{report.summaries_made:,} summaries made · {report.questions_asked:,} questions asked"
        f" ({report.questions_unanswered:,} the articles did not answer)",
    ]
    for heading, rows in (
        ("Feature", report.by_feature),
        ("Channel", report.by_channel),
        ("Model", report.by_model),
    ):
        lines += ["", f"{heading:<24} {'calls':>8} {'prompt':>12} {'completion':>12} {'total':>12}"]
        for row in (*rows, report.total) if heading == "Feature" else rows:
            lines.append(
                f"{_line(row.label)[:24]:<24} {row.calls:>8,} {row.prompt_tokens:>12,}"
                f" {row.completion_tokens:>12,} {row.total_tokens:>12,}"
            )
    if limits is not None:
        lines += ["", _limits_line(limits)]
        lines += ["", f"{'Now (tokens today UTC, links last hour)':<44} {'used':>12} {'limit':>12}"]
        for item in status:
            limit = f"{item.limit:,}" if item.limit else "none"
            mark = "  REACHED" if item.reached else ""
            lines.append(f"{_line(item.scope + ' ' + item.key)[:44]:<44} {item.used:>12,} {limit:>12}{mark}")
        if not status:
            lines.append("nothing used yet today")
    return "\n".join(lines)


def _limits_line(limits: Limits) -> str:
    def show(value: int, what: str) -> str:
        return f"{value:,} {what}" if value else f"no limit on {what}"

    return "Limits: " + " · ".join([
        show(limits.links_per_user_per_hour, "links per user per hour"),
        show(limits.channel_tokens_per_day, "tokens per channel per day"),
        show(limits.workspace_tokens_per_day, "tokens per workspace per day"),
        show(limits.max_model_calls_per_article, "model calls per article"),
    ])
