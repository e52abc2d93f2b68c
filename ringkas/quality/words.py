"""Word-level helpers shared by the answer checks (language independent, no model)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_WORD = re.compile(r"[^\W_]+(?:[-.'’][^\W_]+)*", re.UNICODE)
# Function words that would make any two texts in one language look related.
_COMMON = frozenset(
    [
        "about",
        "after",
        "also",
        "been",
        "before",
        "being",
        "between",
        "both",
        "could",
        "does",
        "each",
        "from",
        "have",
        "into",
        "just",
        "like",
        "made",
        "make",
        "many",
        "more",
        "most",
        "much",
        "only",
        "other",
        "over",
        "same",
        "should",
        "some",
        "such",
        "than",
        "that",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "under",
        "very",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "will",
        "with",
        "would",
        "your",
        "adalah",
        "akan",
        "atau",
        "bahwa",
        "bagi",
        "banyak",
        "belum",
        "bisa",
        "dalam",
        "dapat",
        "dari",
        "dengan",
        "hanya",
        "harus",
        "ialah",
        "juga",
        "kami",
        "karena",
        "kata",
        "kepada",
        "ketika",
        "lebih",
        "masih",
        "mereka",
        "namun",
        "oleh",
        "pada",
        "para",
        "saat",
        "sangat",
        "sebagai",
        "sebuah",
        "sedang",
        "sejak",
        "sekarang",
        "selain",
        "sudah",
        "tahun",
        "telah",
        "tentang",
        "terhadap",
        "tersebut",
        "untuk",
        "yang",
        "yaitu",
        "akan",
        "jika",
        "itu",
        "ini",
        "para",
        "kita",
        "kalian",
        "secara",
        "seperti",
        "tidak",
        "belum",
        "bukan",
        "hingga",
        "nantinya",
        "kini",
        "para",
        "pour",
        "dans",
        "avec",
        "sont",
        "mais",
        "plus",
        "comme",
        "elle",
        "nous",
        "vous",
        "leur",
        "cette",
        "être",
        "fait",
        "para",
        "pero",
        "como",
        "este",
        "esta",
        "sobre",
        "entre",
        "desde",
        "cuando",
        "donde",
        "porque",
        "también",
        "eine",
        "einer",
        "eines",
        "nicht",
        "sich",
        "auch",
        "aber",
        "oder",
        "wird",
        "wurde",
        "werden",
        "sind",
        "über",
        "nach",
    ]
)


def words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(unicodedata.normalize("NFC", text or ""))]


def content_words(text: str, *, min_length: int = 4) -> list[str]:
    """Words that carry meaning: long enough, not a common function word, or holding a digit."""
    out = []
    for word in words(text):
        if any(ch.isdigit() for ch in word) or (len(word) >= min_length and word not in _COMMON):
            out.append(word)
    return out


def names_and_numbers(text: str) -> list[str]:
    """Capitalised words not opening a sentence, and tokens with digits: the specifics of a story."""
    out: list[str] = []
    sentence_start = True
    for match in _WORD.finditer(unicodedata.normalize("NFC", text or "")):
        word = match.group(0)
        before = text[max(0, match.start() - 2) : match.start()]
        if any(mark in before for mark in ".!?:\n"):
            sentence_start = True
        if (any(ch.isdigit() for ch in word) and any(ch.isalnum() for ch in word)) or (
            word[:1].isupper() and not sentence_start and len(word) >= 2
        ):
            out.append(word.casefold())
        sentence_start = False
    return out


class Vocabulary:
    """The words of a source text, matched loosely so inflected forms still count as shared."""

    def __init__(self, text: str) -> None:
        self.words = set(words(text))
        self.stems = {_stem(w) for w in self.words if len(w) >= 6}
        self.lowered = (text or "").casefold()

    def has(self, word: str) -> bool:
        if word in self.words:
            return True
        if len(word) >= 6 and _stem(word) in self.stems:
            return True
        # names written with spaces or hyphens differently ("gpt-4o" vs "GPT 4o")
        return len(word) >= 3 and any(ch.isdigit() for ch in word) and word in self.lowered

    def share(self, items: Iterable[str]) -> tuple[int, int]:
        items = list(items)
        return sum(1 for w in items if self.has(w)), len(items)


def _stem(word: str) -> str:
    return word[:6]


def letters_ratio(text: str) -> float:
    stripped = "".join(text.split())
    if not stripped:
        return 0.0
    return sum(ch.isalpha() for ch in stripped) / len(stripped)
