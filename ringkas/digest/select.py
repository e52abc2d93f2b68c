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
from itertools import chain

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
        # stock phrases of headline writing ("Everything you need to know", "Here's why", "hands-on review")
        "everything", "need", "needs", "know", "you", "your", "here", "heres", "here's", "things", "thing",
        "guide", "explained", "explainer", "review", "hands-on", "vs", "versus", "best", "top", "ways",
        "tips", "watch", "live", "breaking", "exclusive", "opinion", "analysis", "podcast", "episode",
        "newsletter", "roundup", "recap", "weekly", "daily", "really", "look", "inside", "meet", "whats",
        "what's", "we", "our", "my", "i", "me", "us", "they", "their", "all", "every", "simak", "begini",
        "cara", "inilah", "ternyata",
    }
)
_TOKEN = re.compile(r"\w+(?:[-.]\w+)*", re.UNICODE)


def _words(title: str) -> list[tuple[str, str]]:
    """(original, folded) informative words of a headline."""
    text = unicodedata.normalize("NFKC", title).replace("’", "'")
    words = []
    for original in _TOKEN.findall(text):
        original = original.strip("-.")
        if original.endswith(("'s", "'S")):
            original = original[:-2]
        token = original.casefold()
        if token and token not in _FILLER and (len(token) > 1 or token.isdigit()):
            words.append((original, token))
    return words


def title_tokens(title: str) -> frozenset[str]:
    return frozenset(token for _, token in _words(title))


def name_tokens(title: str) -> frozenset[str]:
    """Words that name things: model/product names with digits (Nova-3, V9) and capitalised words
    after the first one (Voltra, Gemini). Sharing those says more than sharing ordinary words."""
    names = set()
    words = _words(title)
    lowered = [original for original, _ in re.findall(r"(\w)(\w*)", title) if original.islower()]
    title_case = not lowered  # "Everything You Need To Know": capitals say nothing there
    for position, (original, token) in enumerate(words):
        model_name = any(ch.isdigit() for ch in token) and any(ch.isalpha() for ch in token)
        acronym = len(original) > 1 and original.isalpha() and original.isupper()
        capitalised = position > 0 and original[:1].isupper() and not title_case
        if model_name or acronym or capitalised:
            names.add(token)
    return frozenset(names)


def same_story(
    a: frozenset[str], b: frozenset[str], a_text: str, b_text: str,
    names: frozenset[str] = frozenset(), weights: Mapping[str, float] | None = None,
) -> bool:
    """Near-duplicate headlines: enough shared informative words (names count more), or nearly the same
    wording. `names` holds the name-like words of either headline; `weights` (0..1, default 1) how
    distinctive each word is among the run's headlines (see `distinctiveness`)."""
    if not a or not b:
        return False
    common = a & b
    if not common:
        return False
    w = weights or {}

    def total(tokens: frozenset[str]) -> float:
        return sum(w.get(t, 1.0) for t in tokens)

    shared = total(common)
    overlap = shared / min(total(a), total(b))
    if shared / total(a | b) >= 0.5:
        return True
    if len(common) >= 2 and overlap >= 0.75:
        return True
    weight = sum(w.get(t, 1.0) * (2.0 if any(ch.isdigit() for ch in t) and t in names else 1.5 if t in names
                                  else 1.0) for t in common)
    if len(common) >= 2 and weight >= 3 and overlap >= 0.4:
        return True
    # nearly the same wording needs most words in common and texts of about the same length (cheap tests
    # first: the matcher is the costliest step of clustering a busy day)
    if 2 * len(common) < 0.5 * (len(a) + len(b)) or 2 * min(len(a_text), len(b_text)) < 0.85 * (
        len(a_text) + len(b_text)
    ):
        return False
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
        found.append(
            _Candidate(
                title=item.title, url=item.url, canonical_url=item.canonical_url, source=item.source,
                excerpt=item.excerpt, timestamp=item.timestamp, relevance=relevance,
                weight=weights.get(item.feed_url, 1.0), feed_url=item.feed_url,
            )
        )
    return found


IDF_MIN_HEADLINES = 50  # below this, word counts say little about what is common


def distinctiveness(token_sets: Sequence[frozenset[str]]) -> dict[str, float]:
    """Inverse document frequency over the run's headlines, scaled to 0.2..1: a word in at most 3
    headlines weighs 1, one in most of them little. Only words below 1 are returned."""
    count = len(token_sets)
    if count < IDF_MIN_HEADLINES:
        return {}
    frequency: Counter[str] = Counter(token for tokens in token_sets for token in tokens)
    reference = math.log((count + 1) / 4)
    weights = {}
    for token, seen in frequency.items():
        if seen > 3:
            weights[token] = min(1.0, max(0.2, math.log((count + 1) / (seen + 1)) / reference))
    return weights


def _clusters(candidates: Sequence[_Candidate]) -> list[list[_Candidate]]:
    """Group candidates about the same news: same canonical URL, or a headline close to a group's FIRST
    headline. Comparing with the first one only (not any member) stops chains like A~B, B~C from gluing
    different stories together."""
    order = sorted(range(len(candidates)), key=lambda i: (
        candidates[i].shared is None, candidates[i].relevance < RELEVANT, candidates[i].timestamp))
    tokens = [title_tokens(c.title) for c in candidates]
    names = [name_tokens(c.title) for c in candidates]
    texts = [" ".join(sorted(t)) for t in tokens]
    weights = distinctiveness(tokens)
    groups: list[list[int]] = []
    by_url: dict[str, int] = {}
    by_words: dict[frozenset[str], int] = {}  # the same words (syndicated headlines): no comparison needed
    postings: dict[str, list[int]] = defaultdict(list)  # word -> groups whose first headline has it
    for i in order:
        group = by_url.get(candidates[i].canonical_url)
        if group is None and tokens[i]:
            group = by_words.get(tokens[i])
        if group is None:
            # groups sharing two words or more; one shared word can only decide between very short headlines
            hits = Counter(chain.from_iterable(postings.get(token, ()) for token in tokens[i]))
            short = len(tokens[i]) <= 2
            for g in sorted(hits):
                lead = groups[g][0]
                if hits[g] < 2 and not (short or len(tokens[lead]) <= 2):
                    continue
                pair_names = names[lead] | names[i]
                if same_story(tokens[lead], tokens[i], texts[lead], texts[i], pair_names, weights):
                    group = g
                    break
        if group is None:
            group = len(groups)
            groups.append([])
            for token in tokens[i]:
                postings[token].append(group)
            by_words.setdefault(tokens[i], group)
        groups[group].append(i)
        by_url.setdefault(candidates[i].canonical_url, group)
    return [[candidates[i] for i in members] for members in groups]


def _story(group: list[_Candidate], window_end: datetime) -> Story:
    shared = [c for c in group if c.shared]
    # the lead item: the team's link, else the most authoritative source, else the earliest report
    ranked = sorted(group, key=lambda c: (c.relevance < RELEVANT, -c.weight, c.timestamp))
    lead = shared[0] if shared else ranked[0]
    sources: list[SourceLink] = []
    seen_sources: set[str] = set()
    for candidate in [lead, *ranked]:
        from_team = candidate.shared is not None and candidate.source == TEAM_SOURCE
        if candidate.source not in seen_sources and not from_team:
            seen_sources.add(candidate.source)
            sources.append(SourceLink(candidate.source, candidate.canonical_url))
    if not sources:
        sources.append(SourceLink(lead.source, lead.canonical_url))
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
        url=lead.canonical_url,  # links without tracking parameters
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


def per_source_cap(max_stories: int) -> int:
    """At most about a third of a digest from one outlet (a busy feed must not crowd out the others)."""
    return max(2, math.ceil(max_stories / 3))


def select_stories(
    items: Sequence[FeedItem],
    shared: Sequence[SharedLink],
    *,
    window_start: datetime,
    window_end: datetime,
    max_stories: int,
    weights: Mapping[str, float] | None = None,
    ai_share: Mapping[str, int | None] | None = None,
    source_cap: int | None = None,
) -> list[Story]:
    """The best `max_stories` stories of the window, best first; one story per news event."""
    window_items = in_window(items, window_start, window_end)
    candidates = _candidates(window_items, shared, weights=weights or {}, ai_share=ai_share or {})
    # irrelevant items still join the cluster of a relevant story (as extra sources), never lead one
    stories = [
        _story(group, window_end)
        for group in _clusters(candidates)
        if max(c.relevance for c in group) >= RELEVANT
    ]
    stories.sort(key=lambda s: (-s.score, -s.timestamp.timestamp(), s.title))
    cap = source_cap or per_source_cap(max_stories)
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


def merge_stories(keep: Story, duplicate: Story) -> None:
    """Fold `duplicate` (the same news event) into `keep`: sources, team share, stored summary, score."""
    names = {source.name for source in keep.sources}
    for source in duplicate.sources:
        if source.name not in names:
            names.add(source.name)
            keep.sources.append(source)
    keep.feed_urls |= duplicate.feed_urls
    keep.timestamp = min(keep.timestamp, duplicate.timestamp)
    keep.score = max(keep.score, duplicate.score)
    if duplicate.team_shared and not keep.team_shared:
        keep.team_shared = True
        keep.article_id = duplicate.article_id
    if duplicate.reused_summary and not keep.reused_summary and not keep.summary:
        keep.summary, keep.reused_summary, keep.title = duplicate.summary, True, duplicate.title
        keep.url = duplicate.url
    if not keep.hint and duplicate.hint:
        keep.hint = duplicate.hint
    if not keep.excerpt:
        keep.excerpt = duplicate.excerpt
