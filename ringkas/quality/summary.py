"""Is this a real summary of this article, in the language asked for? Checked before it is posted.

Small models produce things that parse as JSON yet are no summary: schema text or prompt sentences
echoed back, JSON punctuation as key points, the same point five times, a story other than the
article, the wrong language. Each check names what it saw; the summarizer retries once and then tells
the person plainly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ringkas.language import close_languages, detect_language_with_confidence, normalize_language
from ringkas.quality.words import Vocabulary, content_words, letters_ratio, names_and_numbers, words

SCHEMA_WORDS = frozenset(
    {
        "title", "tldr", "key_points", "why_it_matters", "type", "string", "array", "object",
        "description", "properties", "required", "items", "json", "schema", "null", "maxlength",
        "maxitems", "additionalproperties",
    }
)  # fmt: skip
_JSONISH = re.compile(r"""[{}\[\]]|["']\s*:|:\s*["'{\[]|^\s*["',:]|["',:]\s*$""")
_SHINGLE = 4
MIN_LANGUAGE_LETTERS = 60
MIN_SAME_LANGUAGE_SHARE = 0.25
MIN_NAMES_SHARE = 0.34
DUPLICATE_JACCARD = 0.8


@dataclass(frozen=True)
class Verdict:
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        return "; ".join(self.problems) or "ok"


@dataclass(frozen=True)
class SummaryText:
    title: str
    tldr: str
    key_points: tuple[str, ...]
    why_it_matters: str

    def fields(self) -> list[tuple[str, str]]:
        out = [("title", self.title), ("tldr", self.tldr), ("why_it_matters", self.why_it_matters)]
        out += [(f"key_points[{i}]", p) for i, p in enumerate(self.key_points)]
        return [(name, text) for name, text in out if text]

    def body(self) -> str:
        return " ".join([self.tldr, *self.key_points, self.why_it_matters])


def instruction_texts(*texts: str, schema: dict | None = None) -> list[str]:
    """What the model was told (prompts, schema descriptions): its answer must not repeat it."""
    out = [t for t in texts if t]
    if schema is not None:
        out.append(json.dumps(schema, ensure_ascii=False))
        out.extend(_descriptions(schema))
    return out


def check_summary(
    summary: SummaryText, *, article_text: str, article_language: str | None, language: str,
    instructions: Sequence[str],
) -> Verdict:  # fmt: skip
    problems: list[str] = []
    if len(words(summary.tldr)) < 3:
        problems.append("the TL;DR is empty or too short")
    if not summary.key_points:
        problems.append("there are no key points")
    for name, text in summary.fields():
        why = _junk(text)
        if why:
            problems.append(f"{name} is {why}")
    problems.extend(_echoes(summary, instructions))
    problems.extend(_duplicates(summary.key_points))
    wrong = _wrong_language(summary, language)
    if wrong:
        problems.append(wrong)
    off = _off_topic(summary, article_text, article_language, language)
    if off:
        problems.append(off)
    return Verdict(tuple(dict.fromkeys(problems)))


def _junk(text: str) -> str:
    stripped = text.strip()
    if letters_ratio(stripped) < 0.5 or len([w for w in words(stripped) if len(w) > 1]) == 0:
        return "JSON punctuation, not text"
    if _JSONISH.search(stripped) and ("{" in stripped or '":' in stripped or "':" in stripped):
        return "a JSON fragment"
    lowered = {w.replace("-", "_") for w in words(stripped)}
    if lowered and lowered <= SCHEMA_WORDS:
        return "a schema word, not text"
    if stripped.startswith(("{", "[")) or stripped.endswith(("{", "[")):
        return "a JSON fragment"
    return ""


def _echoes(summary: SummaryText, instructions: Sequence[str]) -> list[str]:
    source = _instruction_shingles(tuple(instructions))
    problems = []
    for name, text in summary.fields():
        own = _shingles(words(text))
        if own and len(own & source) / len(own) >= 0.5:
            problems.append(f"{name} repeats the instructions instead of summarizing")
    return problems


@lru_cache(maxsize=64)
def _instruction_shingles(instructions: tuple[str, ...]) -> frozenset[tuple[str, ...]]:
    """The instructions are the same for every summary in one language: their shingles are made once."""
    return frozenset().union(*(_shingles(words(text)) for text in instructions))


def _duplicates(points: Sequence[str]) -> list[str]:
    seen: list[set[str]] = []
    for point in points:
        bag = set(content_words(point, min_length=3)) or set(words(point))
        if any(_jaccard(bag, other) >= DUPLICATE_JACCARD for other in seen):
            return ["key points repeat each other"]
        seen.append(bag)
    return []


def _wrong_language(summary: SummaryText, language: str) -> str:
    text = summary.body()
    if sum(ch.isalpha() for ch in text) < MIN_LANGUAGE_LETTERS:
        return ""
    detected, _confidence = detect_language_with_confidence(text)
    wanted = normalize_language(language.split("-")[0]) or language
    if detected and not close_languages(detected, wanted):
        return f"it is written in '{detected}', not '{wanted}'"
    return ""


def _off_topic(summary: SummaryText, article_text: str, article_language: str | None, language: str) -> str:
    """A summary of this article shares its names and numbers, and (same language) its vocabulary."""
    if not article_text.strip():
        return ""
    vocabulary = Vocabulary(article_text)
    text = " ".join([summary.tldr, *summary.key_points, summary.why_it_matters])
    named, names = vocabulary.share(set(names_and_numbers(text)))
    if names >= 3 and named / names < MIN_NAMES_SHARE:
        return f"it names things the article does not ({named} of {names} names or numbers found)"
    same_language = bool(article_language) and close_languages(
        normalize_language(article_language) or "", normalize_language(language.split("-")[0]) or language
    )
    if same_language:
        found, total = vocabulary.share(set(content_words(text)))
        if total >= 8 and found / total < MIN_SAME_LANGUAGE_SHARE:
            return f"it shares too few words with the article ({found} of {total})"
    elif names >= 2 and named == 0:
        return "it shares no names or numbers with the article"
    return ""


def _shingles(items: Sequence[str]) -> set[tuple[str, ...]]:
    if len(items) < _SHINGLE:
        return set()
    return {tuple(items[i : i + _SHINGLE]) for i in range(len(items) - _SHINGLE + 1)}


def _jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _descriptions(schema: object) -> Iterable[str]:
    if isinstance(schema, dict):
        if isinstance(schema.get("description"), str):
            yield schema["description"]
        for value in schema.values():
            yield from _descriptions(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _descriptions(value)
