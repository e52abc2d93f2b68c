"""Choosing which parts of long articles a question is answered from.

Articles are cut into passages along paragraph boundaries (token-counted; an over-long paragraph is
split with `TokenCounter.split`). Passages are ranked against the question with BM25 over a simple
multilingual tokenization, and the prompt is filled greedily: every article's lead first, then the
best-ranked passages, until the token budget is spent. The chosen passages keep their reading order.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rank_bm25 import BM25Okapi

PASSAGE_TOKENS = 320  # small enough to be precise, large enough to keep a fact with its context
MIN_PASSAGE_TOKENS = 48  # a sentence or two: below this a passage loses the context of its fact
SPLIT_OVERLAP = 32  # only used when a single paragraph is longer than a passage
_WORD = re.compile(r"\w+", re.UNICODE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)")


class TokenCounting(Protocol):
    def count(self, text: str) -> int: ...

    def split(self, text: str, max_tokens: int, overlap: int = ...) -> list[str]: ...


@dataclass(frozen=True)
class Passage:
    source: int  # index of the article in the request
    position: int  # order within its article
    text: str
    tokens: int


def terms(text: str) -> list[str]:
    """Lower-cased unicode words; single letters dropped, digits kept ("GPT-5" -> gpt, 5)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return [w for w in _WORD.findall(folded) if len(w) > 1 or w.isdigit()]


def paragraphs(text: str) -> list[str]:
    parts = [p.strip() for p in _PARAGRAPH_BREAK.split(text)]
    parts = [p for p in parts if p]
    if len(parts) <= 1 and "\n" in text:
        parts = [p.strip() for p in text.splitlines() if p.strip()]
    return parts


def split_passages(
    text: str, counter: TokenCounting, *, source: int = 0, max_tokens: int = PASSAGE_TOKENS
) -> list[Passage]:
    """Group consecutive paragraphs into passages of at most `max_tokens` tokens."""
    pieces: list[tuple[str, int]] = []
    for paragraph in paragraphs(text):
        size = counter.count(paragraph)
        if size <= max_tokens:
            pieces.append((paragraph, size))
            continue
        for part in counter.split(paragraph, max_tokens, overlap=min(SPLIT_OVERLAP, max_tokens // 4)):
            part = part.strip()
            if part:
                pieces.append((part, counter.count(part)))

    passages: list[Passage] = []
    current: list[str] = []
    current_tokens = 0
    for piece, size in pieces:
        # "\n\n" between paragraphs costs about one token; count it so the sum stays an upper bound.
        if current and current_tokens + size + 1 > max_tokens:
            passages.append(Passage(source, len(passages), "\n\n".join(current), current_tokens))
            current, current_tokens = [], 0
        current.append(piece)
        current_tokens += size + (1 if len(current) > 1 else 0)
    if current:
        passages.append(Passage(source, len(passages), "\n\n".join(current), current_tokens))
    return passages


def passage_size(budget: int, *, wanted: int = 5) -> int:
    """Passage length for a budget: room for the lead and a few ranked passages, not one big one."""
    return max(MIN_PASSAGE_TOKENS, min(PASSAGE_TOKENS, budget // wanted))


def rank(passages: Sequence[Passage], query: str) -> list[int]:
    """Indices of `passages`, most relevant to `query` first (ties keep reading order)."""
    order = list(range(len(passages)))
    query_terms = terms(query)
    corpus = [terms(p.text) for p in passages]
    if not query_terms or len(passages) < 2 or not any(corpus):
        return order
    # BM25Okapi divides by the average length; an empty passage must still count as one document.
    bm25 = BM25Okapi([doc or ["\x00"] for doc in corpus])
    scores = bm25.get_scores(query_terms)
    # Small corpora give BM25 zero or negative idf for terms present in many passages; plain term
    # overlap breaks those ties so a passage that mentions the question's words still wins.
    query_set = set(query_terms)
    overlap = [len(query_set.intersection(doc)) for doc in corpus]
    return sorted(order, key=lambda i: (-float(scores[i]), -overlap[i], i))


@dataclass(frozen=True)
class Selection:
    passages: list[Passage]  # in (source, position) order
    complete: bool  # every passage of every article fits: nothing was left out
    tokens: int


def select_passages(
    articles: Sequence[Sequence[Passage]],
    query: str,
    budget: int,
    *,
    passage_overhead: int = 4,
) -> Selection:
    """Fill `budget` tokens: whole articles when they fit, else leads plus the best-ranked passages.

    `passage_overhead` is what a passage costs beyond its text in the prompt (separators, gap marks).
    """
    everything = [p for passages in articles for p in passages]
    cost = {(p.source, p.position): p.tokens + passage_overhead for p in everything}
    total = sum(cost.values())
    if total <= budget:
        return Selection(everything, complete=True, tokens=total)

    chosen: set[tuple[int, int]] = set()
    spent = 0
    leads = [passages[0] for passages in articles if passages]
    for lead in leads:
        key = (lead.source, lead.position)
        if spent + cost[key] <= budget:
            chosen.add(key)
            spent += cost[key]
    for index in rank(everything, query):
        passage = everything[index]
        key = (passage.source, passage.position)
        if key in chosen:
            continue
        if spent + cost[key] <= budget:
            chosen.add(key)
            spent += cost[key]
        if budget - spent < passage_overhead + 8:
            break
    picked = [p for p in everything if (p.source, p.position) in chosen]
    return Selection(picked, complete=False, tokens=spent)
