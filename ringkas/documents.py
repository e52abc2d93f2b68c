"""Plain value types passed between the pipeline stages (no I/O here)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class FetchResult:
    """Bytes of one document as the safe fetcher received them."""

    url: str  # as requested
    final_url: str  # after redirects
    status: int
    content_type: str  # media type only, lower case, e.g. "text/html"
    charset: str | None  # from the Content-Type header, if any
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # response headers, lower-case keys


@dataclass(frozen=True)
class Article:
    """Main text and metadata of one document, ready for the model."""

    url: str  # the address the person shared (or file path)
    canonical_url: str  # tracking parameters removed, rel=canonical honoured
    text: str
    title: str | None = None
    author: str | None = None
    published: str | None = None  # ISO date (YYYY-MM-DD) when known
    site_name: str | None = None
    language: str | None = None  # ISO 639-1 code, declared or detected
    source_kind: str = "html"  # html | pdf | text
    id: int | None = None  # database id once stored

    @property
    def word_count(self) -> int:
        return len(self.text.split())

    @property
    def reading_minutes(self) -> int:
        return max(1, math.ceil(self.word_count / 230))


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.calls + other.calls,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Summary:
    """A structured summary of one article, in one language."""

    tldr: str
    key_points: tuple[str, ...]
    why_it_matters: str
    language: str  # ISO code the summary is written in
    model: str
    prompt_version: str
    title: str | None = None
    usage: Usage = field(default_factory=Usage)
    created_at: datetime | None = None


@dataclass(frozen=True)
class SummaryResult:
    """What a caller of the pipeline gets back: the article, its summary, and whether it was cached."""

    article: Article
    summary: Summary
    cached: bool = False


@dataclass
class TokensToday:
    """Today's model tokens of a workspace and of one of its channels, read with a link's lookup.

    The first budget check of that link's model calls may use them instead of asking the database;
    `take` hands them out once, so the calls after it count afresh."""

    day: datetime  # the start (00:00 UTC) of the day they were counted from
    workspace: int
    channel: int
    _taken: bool = field(default=False, repr=False)

    def take(self, day: datetime) -> tuple[int, int] | None:
        """(workspace, channel) the first time, on the day they were counted; None after that."""
        if self._taken or day != self.day:
            return None
        self._taken = True
        return self.workspace, self.channel


@dataclass(frozen=True)
class UsageContext:
    """Who a model call is for: recorded with its token usage."""

    team_id: str | None = None
    channel_id: str | None = None
    user_id: str | None = None
    # Token use read ahead of the call (not part of who the call is for: left out of ==, hash and repr).
    tokens_today: TokensToday | None = field(default=None, compare=False, repr=False)
