"""Checks on what the model wrote for a digest, before it is posted.

A weak model pins one outlet's text under another story's headline, repeats one headline over unrelated
items, or opens with "10.1.2.1". A written line is kept only when it shares distinctive words (names,
numbers, longer words) with its own story's title and excerpt, and not clearly more with another story
of the same request. A line that shares nothing with its story is off-topic, unless it is a translation
(the source is known to be in another language) that matches no other story either.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from ringkas.digest.select import title_tokens
from ringkas.language import close_languages, detect_language

_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)
_STRUCTURE = re.compile(r"[{}\[\]]|\"\w+\"\s*:")


def _stem(token: str) -> str:
    token = unicodedata.normalize("NFKD", token)
    token = "".join(ch for ch in token if not unicodedata.combining(ch))
    return token[:6] if len(token) > 6 else token


def distinctive_words(text: str) -> frozenset[str]:
    """Words that say what a text is about: not stop words, 3+ letters or with a digit; crudely stemmed
    so that `regulators`/`regulation` and `chips`/`chip` meet."""
    return frozenset(
        _stem(token) for token in title_tokens(text)
        if len(token) >= 3 or any(ch.isdigit() for ch in token)
    )


def belongs(
    written: str, own: str, others: Iterable[str], *, written_language: str | None = None
) -> bool:
    """Whether `written` (a headline or summary line) is about `own` (the story's title and excerpt)
    rather than about one of `others` (the other stories of the same request)."""
    words = distinctive_words(written)
    if not words:
        return False
    shared = len(words & distinctive_words(own))
    best_other = max((len(words & distinctive_words(other)) for other in others), default=0)
    if shared == 0:
        if best_other:
            return False
        # not one word in common is fine only for a translation (known to be in another language)
        source_language = detect_language(own)
        language = written_language or detect_language(written)
        return bool(source_language and language and not close_languages(source_language, language))
    return best_other < shared + 2


def plausible_opening(text: str) -> bool:
    """An opening line that reads as a sentence: several words, mostly letters, no JSON or numbering."""
    stripped = text.strip()
    if not stripped or _STRUCTURE.search(stripped):
        return False
    words = _WORD.findall(stripped)
    letters = len(_LETTERS.findall(stripped))
    visible = sum(1 for ch in stripped if not ch.isspace())
    return len(words) >= 4 and letters >= 0.6 * visible
