"""Markdown emphasis and escapes in page and model text, in linear time.

Regular expressions such as ``\\*\\*(.+?)\\*\\*`` look ahead for a closing delimiter from every opening
one, so a line of ``x **a`` repeated costs quadratic time (150 kB froze the bot for 12 s). These rules
split each line on its delimiters once and pair neighbours, so the cost is one pass per line.
"""

from __future__ import annotations

import re

#: CommonMark backslash escapes (any ASCII punctuation); trafilatura's Markdown output escapes
#: `[`, `_`, `1.` and the like, which would otherwise reach the model and the reader as "1\\." or "\\_".
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def unescape_markdown(text: str) -> str:
    return _ESCAPED.sub(r"\1", text)


def _pair_delimiters(line: str, delimiter: str, opening: str, closing: str, *, word_bound: bool) -> str:
    """Replace `delimiter`content`delimiter` pairs in one line (content not starting or ending with a
    space); `word_bound` also requires no letter or digit right outside the pair (`snake*case*` stays)."""
    parts = line.split(delimiter)
    if len(parts) < 3:
        return line
    out = [parts[0]]
    index = 1
    last = len(parts) - 1
    while index <= last:
        content = parts[index]
        if index < last and _emphasis_content(content) and (
            not word_bound or (_no_word_end(parts[index - 1]) and _no_word_start(parts[index + 1]))
        ):
            out.append(opening + content + closing)
            out.append(parts[index + 1])
            index += 2
        else:
            out.append(delimiter + content)
            index += 1
    return "".join(out)


def _emphasis_content(content: str) -> bool:
    return bool(content) and not content[0].isspace() and not content[-1].isspace()


def _no_word_end(text: str) -> bool:
    return not text or not (text[-1].isalnum() or text[-1] == "_")


def _no_word_start(text: str) -> bool:
    return not text or not (text[0].isalnum() or text[0] == "_")


def strip_emphasis(text: str) -> str:
    """Plain text from Markdown **bold** and *italic*: the words stay, the asterisks go."""
    if "*" not in text:
        return text
    lines = []
    for line in text.split("\n"):
        if "*" in line:
            line = _pair_delimiters(line, "**", "", "", word_bound=False)
            line = _pair_delimiters(line, "*", "", "", word_bound=True)
        lines.append(line)
    return "\n".join(lines)


def bold_to_slack(text: str) -> str:
    """Markdown **bold** as Slack mrkdwn *bold*."""
    if "**" not in text:
        return text
    return "\n".join(_pair_delimiters(line, "**", "*", "*", word_bound=False) for line in text.split("\n"))
