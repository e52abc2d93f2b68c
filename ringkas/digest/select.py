"""Choosing the day's stories: window filter, relevance, near-duplicate merging, ranking, per-source cap."""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ringkas.digest.models import FeedItem, SharedLink, SourceLink, Story
from ringkas.digest.relevance import RELEVANT, ai_relevance

AI_FEED_SHARE = 60  # % of a feed's entries that look like AI news for the feed to count as an AI source
TEAM_SOURCE = "team"

# Words that say nothing about which story a headline is about (English and Indonesian).
_FILLER = frozenset(
    {
        "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "for", "from", "by", "with", "as",
        "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that", "these", "those",
        "into", "over", "under", "about", "after", "before", "than", "then", "so", "not", "no", "yes", "up",
        "out", "how", "why", "what", "when", "where", "who", "which", "will", "would", "can", "could", "may",
        "might", "should", "has", "have", "had", "do", "does", "did", "new", "more", "most", "just", "now",
        "says", "said", "say", "report", "reports", "reportedly", "announces", "announced", "announce",
        "launches", "launched", "launch", "unveils", "unveiled", "releases", "released", "release",
        "introduces", "introducing", "introduced", "adds", "added", "gets", "get", "got", "make", "makes",
        "made", "use", "uses", "using", "first", "latest", "big", "update", "updates", "today", "week",
        "year", "years", "day", "ai", "model", "models", "company", "firm", "tech", "dan", "atau", "yang",
        "di", "ke", "dari", "untuk", "dengan", "pada", "ini", "itu", "akan", "adalah", "dalam", "juga",
        "tidak", "bisa",
        "sudah", "oleh", "para", "baru", "resmi", "meluncurkan", "luncurkan", "merilis", "rilis", "hadirkan",
        "menghadirkan", "kini", "jadi", "bakal", "soal", "terbaru",
    }
)
_TOKEN = re.compile(r"\w+(?:[-.]\w+)*", re.UNICODE)


def title_tokens(title: str) -> frozenset[str]:
    text = unicodedata.normalize("NFKC", title).casefold().replace("’", "'")
    tokens = set()
    for token in _TOKEN.findall(text):
        token = token.strip("-.")
        if token.endswith("'s"):
            token = token[:-2]
        if token and token not in _FILLER and (len(token) > 1 or token.isdigit()):
            tokens.add(token)
    return frozenset(tokens)


def same_story(a: frozenset[str], b: frozenset[str], a_text: str, b_text: str) -> bool:
    """Near-duplicate headlines: enough shared informative words, or almost the same wording."""
    if not a or not b:
        return False
    shared = len(a & b)
    if shared == 0:
        return False
    if shared / len(a | b) >= 0.5:
        return True
    if shared >= 2 and shared / min(len(a), len(b)) >= 0.75:
        return True
    matcher = difflib.SequenceMatcher(None, a_text, b_text, autojunk=False)
    return matcher.quick_ratio() >= 0.85 and matcher.ratio() >= 0.85


@dataclass
class _Candidate:
    title: str
    url: str
    canonical_url: str
    source: str
    excerpt: str
    timestamp: datetime
    relevance: float
    weight: float
    feed_url: str | None = None
    shared: SharedLink | None = None


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def in_window(items: Iterable[FeedItem], start: datetime, end: datetime) -> list[FeedItem]:
    return [item for item in items if not item.age_unknown and start <= item.timestamp <= end]


def _candidates(
    items: Sequence[FeedItem],
    shared: Sequence[SharedLink],
    *,
    weights: Mapping[str, float],
    ai_share: Mapping[str, int | None],
) -> list[_Candidate]:
    found: list[_Candidate] = []
    for link in shared:
        found.append(
            _Candidate(
                title=link.title, url=link.url, canonical_url=link.canonical_url,
                source=link.site_name or TEAM_SOURCE, excerpt=link.excerpt, timestamp=link.shared_at,
                relevance=1.0, weight=1.0, shared=link,
            )
        )
    for item in items:
        relevance = ai_relevance(item.title, item.excerpt)
        if (ai_share.get(item.feed_url) or 0) >= AI_FEED_SHARE:
            relevance = max(relevance, 0.6)  # an AI outlet's item without buzzwords is still AI news
        if relevance < RELEVANT:
            continue
        found.append(
            _Candidate(
                title=item.title, url=item.url, canonical_url=item.canonical_url, source=item.source,
                excerpt=item.excerpt, timestamp=item.timestamp, relevance=relevance,
                weight=weights.get(item.feed_url, 1.0), feed_url=item.feed_url,
            )
        )
    return found


def _clusters(candidates: Sequence[_Candidate]) -> list[list[_Candidate]]:
    union = _UnionFind(len(candidates))
    by_url: dict[str, int] = {}
    tokens = [title_tokens(c.title) for c in candidates]
    texts = [" ".join(sorted(t)) for t in tokens]
    postings: dict[str, list[int]] = defaultdict(list)
    for i, candidate in enumerate(candidates):
        if candidate.canonical_url in by_url:
            union.union(by_url[candidate.canonical_url], i)
        else:
            by_url[candidate.canonical_url] = i
        for token in tokens[i]:
            postings[token].append(i)
    checked: set[tuple[int, int]] = set()
    for members in postings.values():
        if len(members) > 200:  # a word shared by that many headlines says nothing about the story
            continue
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                pair = (members[x], members[y])
                if pair in checked:
                    continue
                checked.add(pair)
                if same_story(tokens[pair[0]], tokens[pair[1]], texts[pair[0]], texts[pair[1]]):
                    union.union(*pair)
    groups: dict[int, list[_Candidate]] = defaultdict(list)
    for i, candidate in enumerate(candidates):
        groups[union.find(i)].append(candidate)
    return list(groups.values())


def _story(group: list[_Candidate], window_end: datetime) -> Story:
    shared = [c for c in group if c.shared]
    # the lead item: the team's link, else the most authoritative source, else the earliest report
    lead = shared[0] if shared else sorted(group, key=lambda c: (-c.weight, c.timestamp))[0]
    sources: list[SourceLink] = []
    seen_sources: set[str] = set()
    for candidate in [lead, *sorted(group, key=lambda c: (-c.weight, c.timestamp))]:
        from_team = candidate.shared is not None and candidate.source == TEAM_SOURCE
        if candidate.source not in seen_sources and not from_team:
            seen_sources.add(candidate.source)
            sources.append(SourceLink(candidate.source, candidate.url))
    if not sources:
        sources.append(SourceLink(lead.source, lead.url))
    excerpt = lead.excerpt or max((c.excerpt for c in group), key=len, default="")
    earliest = min(c.timestamp for c in group)
    distinct = len({c.source for c in group})
    relevance = max(c.relevance for c in group)
    age_hours = max(0.0, (window_end - max(c.timestamp for c in group)).total_seconds() / 3600)
    recency = max(0.6, 1.0 - 0.4 * min(age_hours, 24) / 24)
    coverage = 1.0 + 0.5 * min(distinct - 1, 3)
    score = relevance * coverage * max(c.weight for c in group) * recency + (1.0 if shared else 0.0)
    link = shared[0].shared if shared else None
    return Story(
        title=lead.title,
        url=lead.url,
        sources=sources,
        excerpt=excerpt,
        timestamp=earliest,
        team_shared=bool(shared),
        article_id=link.article_id if link else None,
        summary=link.tldr if link else None,
        reused_summary=bool(link and link.tldr),
        hint=link.other_tldr if link else None,
        relevance=relevance,
        score=round(score, 4),
        feed_urls={c.feed_url for c in group if c.feed_url},
    )


def select_stories(
    items: Sequence[FeedItem],
    shared: Sequence[SharedLink],
    *,
    window_start: datetime,
    window_end: datetime,
    max_stories: int,
    weights: Mapping[str, float] | None = None,
    ai_share: Mapping[str, int | None] | None = None,
    per_source_cap: int | None = None,
) -> list[Story]:
    """The best `max_stories` stories of the window, best first; one story per news event."""
    window_items = in_window(items, window_start, window_end)
    candidates = _candidates(window_items, shared, weights=weights or {}, ai_share=ai_share or {})
    stories = [_story(group, window_end) for group in _clusters(candidates)]
    stories.sort(key=lambda s: (-s.score, -s.timestamp.timestamp(), s.title))
    cap = per_source_cap or max(2, math.ceil(max_stories / 3))
    per_source: Counter[str] = Counter()
    chosen: list[Story] = []
    for story in stories:
        lead_source = story.sources[0].name
        if not story.team_shared and per_source[lead_source] >= cap:
            continue
        per_source[lead_source] += 1
        chosen.append(story)
        if len(chosen) >= max_stories:
            break
    return chosen
