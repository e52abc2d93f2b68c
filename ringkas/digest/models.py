"""Value types of the digest feature (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from ringkas.documents import Usage


@dataclass(frozen=True)
class FeedSource:
    """A feed to read, with the outlet's display name (when known) and its ranking weight."""

    url: str
    name: str | None = None
    weight: float = 1.0
    topic: str | None = None  # "ai" (every entry is AI news), "general" (filter by content), None (measure)


@dataclass(frozen=True)
class FeedItem:
    """One entry of a feed, cleaned: plain-text title and excerpt, absolute http(s) link."""

    feed_url: str
    source: str  # the outlet's display name
    url: str
    canonical_url: str
    title: str
    excerpt: str
    published_at: datetime | None
    seen_at: datetime
    age_unknown: bool = False  # undated and found on the feed's first fetch

    @property
    def timestamp(self) -> datetime:
        return self.published_at or self.seen_at


@dataclass(frozen=True)
class FeedState:
    """Stored validators and what we learned about a feed last time."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    title: str | None = None
    ai_share: int | None = None
    fetched_before: bool = False


@dataclass(frozen=True)
class FeedOutcome:
    """The result of reading one feed; no `items` when `not_modified` (the cache has them) or `failed`."""

    url: str
    status: str  # ok | not_modified | failed
    items: tuple[FeedItem, ...] = ()
    title: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    ai_share: int | None = None  # % of all parsed entries that look like AI news


@dataclass(frozen=True)
class SharedLink:
    """An article the team shared in the channel during the window (from the link-summary flow)."""

    article_id: int
    url: str
    canonical_url: str
    title: str
    site_name: str | None
    excerpt: str
    shared_at: datetime
    tldr: str | None = None  # stored summary's TL;DR in the digest language, when there is one
    other_tldr: str | None = None  # a stored TL;DR in another language (input for the model)


@dataclass(frozen=True)
class SourceLink:
    name: str
    url: str


@dataclass
class Story:
    """One story of the digest: the items about the same news, merged."""

    title: str
    url: str
    sources: list[SourceLink]
    excerpt: str
    timestamp: datetime
    team_shared: bool = False
    article_id: int | None = None
    summary: str | None = None  # one or two sentences (reused TL;DR or written by the model)
    reused_summary: bool = False
    theme: str | None = None
    relevance: float = 0.0
    score: float = 0.0
    feed_urls: set[str] = field(default_factory=set)
    hint: str | None = None  # a summary in another language the model may translate
    feed_title: str | None = None  # the headline as the feed wrote it (the model may rewrite `title`)
    from_feed: bool = False  # no usable model text: the feed's own title and description are shown


@dataclass(frozen=True)
class FeedFailure:
    """A feed the digest could not use, and why (in words for people)."""

    url: str
    reason: str
    name: str | None = None


@dataclass(frozen=True)
class Digest:
    """A finished digest, ready to be rendered for Slack or a terminal."""

    local_date: date
    timezone: str
    language: str
    window_start: datetime
    window_end: datetime
    opening: str
    stories: tuple[Story, ...]
    items_read: int  # feed entries published in the window (before dedup and ranking)
    sources_read: int  # feeds that answered (fresh or unchanged)
    sources_total: int
    feeds_failed: tuple[FeedFailure, ...] = ()
    shared_count: int = 0  # links the team shared in the window
    usage: Usage = field(default_factory=Usage)
    model: str | None = None

    @property
    def themed(self) -> bool:
        return any(story.theme for story in self.stories)

    def sections(self) -> list[tuple[str | None, list[Story]]]:
        """Stories grouped by theme, themes in order of their best story (stories keep rank order);
        stories the model left without a theme come last."""
        groups: dict[str | None, list[Story]] = {}
        for story in self.stories:
            groups.setdefault(story.theme if self.themed else None, []).append(story)
        unthemed = groups.pop(None, None) if self.themed else None
        return [*groups.items(), *([(None, unthemed)] if unthemed else [])]


@dataclass(frozen=True)
class Subscription:
    team_id: str
    channel_id: str
    time: str  # HH:MM
    timezone: str  # IANA name
    created_by: str | None = None
    since: datetime | None = None  # when this schedule was set: a time before that is not "missed"
    paused: str | None = None  # why Slack refused it for good (not_in_channel, ...); None when active


@dataclass(frozen=True)
class RunRecord:
    id: int
    team_id: str
    channel_id: str
    local_date: str
    state: str
    message_ts: str | None = None
    posted_at: datetime | None = None
    error: str | None = None
    attempts: int = 1
