"""Links in Slack message text.

Slack sends links as `<https://example.com/a?b=1&amp;c=2|label>` or `<https://example.com>`; user, channel
and special mentions (`<@U…>`, `<#C…|name>`, `<!here>`, `<!subteam^…>`) and `mailto:` links share the same
brackets and are not links to summarize. Slash-command text may also hold bare URLs when the command does
not escape links, so those are found too. Links inside code (`inline` or ```blocks```) are examples, not
reading: they are left alone.
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import urlsplit

from ringkas.urls import ascii_host

_MARKUP = re.compile(r"<([^<>]+)>")
_BARE_URL = re.compile(r"(?<![\w/])https?://[^\s<>|\"'`]+", re.IGNORECASE)
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
# A bare host (Slack links "example.com" itself in messages; slash-command text may hold it as typed).
_BARE_HOST = re.compile(
    r"^(?:(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}|\d{1,3}(?:\.\d{1,3}){3})(?::\d{1,5})?(?:[/?#]\S*)?$",
    re.IGNORECASE,
)
_TRAILING_PUNCTUATION = ".,;:!?)]}'\""
_MENTION = re.compile(r"<[@#!][^<>]*>")


def _clean_url(raw: str) -> str | None:
    url = html.unescape(raw.strip())
    if not url.lower().startswith(("http://", "https://")):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return url


def _strip_trailing(url: str) -> str:
    # A bare URL at the end of a sentence: "see https://x.test/a." -> drop the "." (but keep balanced ")").
    while url and url[-1] in _TRAILING_PUNCTUATION:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def slack_unescape(text: str) -> str:
    """Undo Slack's own escaping of `&`, `<` and `>` in message and command text (nothing else)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def extract_links(text: str | None) -> list[str]:
    """http(s) links in message text, in order of appearance, without duplicates."""
    if not text:
        return []
    text = _CODE.sub(" ", text)
    found: list[str] = []
    rest: list[str] = []
    last = 0
    for match in _MARKUP.finditer(text):
        rest.append(text[last : match.start()])
        last = match.end()
        inner = match.group(1)
        if inner[:1] in {"@", "#", "!"}:
            continue
        url = _clean_url(inner.split("|", 1)[0])
        if url:
            found.append(url)
    rest.append(text[last:])
    for chunk in rest:
        for match in _BARE_URL.finditer(chunk):
            url = _clean_url(_strip_trailing(match.group(0)))
            if url:
                found.append(url)
    unique: list[str] = []
    for url in found:
        if url not in unique:
            unique.append(url)
    return unique


def command_links(text: str | None) -> list[str]:
    """Links in slash-command text: as in messages, plus bare hosts such as `example.com/a` (read as
    `http://example.com/a`, the way Slack itself links them)."""
    links = extract_links(text)
    if links or not text:
        return links
    found: list[str] = []
    for word in _CODE.sub(" ", text).split():
        word = _strip_trailing(word.strip("<>"))
        if _BARE_HOST.match(word):
            url = _clean_url("http://" + word)
            if url and url not in found:
                found.append(url)
    return found


def strip_mentions(text: str | None) -> str:
    """Message text without `<@U…>`, `<#C…>` and `<!…>` markup, whitespace collapsed."""
    if not text:
        return ""
    return " ".join(_MENTION.sub(" ", text).split())


def mentions_user(text: str | None, user_id: str | None) -> bool:
    if not text or not user_id:
        return False
    return f"<@{user_id}>" in text or f"<@{user_id}|" in text


def display_host(url: str) -> str:
    """`www.example.com` -> `example.com`, for short status lines.

    An internationalised name is shown as written only when each label keeps to one script and is no
    Cyrillic or Greek look-alike of a Latin word; otherwise as its xn-- form, so `аpple.com` (with a
    Cyrillic "а") cannot pass for apple.com.
    """
    try:
        host = urlsplit(url).hostname or url
    except ValueError:
        return url
    if not host.isascii() and not all(_plain_label(label) for label in host.split(".")):
        host = ascii_host(host)
    return host.removeprefix("www.")


# Scripts that mix within one name in everyday use (Japanese, Korean and Chinese names).
_CJK_SCRIPTS = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "LATIN"})
# Cyrillic and Greek letters drawn like Latin ones (а е о р с у х і ј ѕ ԁ һ ӏ ο ν ρ α ι κ τ …).
_LATIN_LOOKALIKES = frozenset("аеорсухіјѕԁһӏԛԝвкмнтгпьАВЕКМНОРСТХУІЈЅοαιυνρκτεηχΑΒΕΗΙΚΜΝΟΡΤΧΥΖ")


def _script(char: str) -> str:
    try:
        return unicodedata.name(char).split()[0]
    except ValueError:
        return "UNKNOWN"


def _plain_label(label: str) -> bool:
    letters = [ch for ch in label if ch.isalpha()]
    scripts = {_script(ch) for ch in letters}
    if len(scripts) > 1 and not scripts <= _CJK_SCRIPTS:
        return False
    if scripts & {"CYRILLIC", "GREEK"} and all(ch in _LATIN_LOOKALIKES for ch in letters):
        return False
    return not scripts & {"UNKNOWN"}
