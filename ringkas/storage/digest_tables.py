"""Digest tables: subscriptions, runs (one per channel per local day), feed state and items.

Owned by the digest feature.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ringkas.storage.base import Base, UTCDateTime, utcnow


class DigestSubscriptionRow(Base):
    """A channel that gets a daily digest at `time` (HH:MM) in `timezone` (IANA name)."""

    __tablename__ = "digest_subscriptions"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    time: Mapped[str] = mapped_column(String(5))
    timezone: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class DigestPauseRow(Base):
    """A subscription on hold because Slack refused its digest for good (the bot was removed from the
    channel, the channel is gone or archived). A table of its own: existing databases get it from
    `create_all` without a migration. `/digest subscribe` in the channel resumes it."""

    __tablename__ = "digest_pauses"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(64))  # Slack's error code, e.g. not_in_channel
    paused_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DigestRunRow(Base):
    """One scheduled digest of one channel on one local day.

    The UNIQUE constraint is the guarantee that a channel never gets two digests for the same day, whatever
    the number of processes or restarts: a run is claimed (inserted) BEFORE anything is built or posted.
    States: claimed (building) -> posting -> posted, or failed (nothing was posted; may be claimed again).
    """

    __tablename__ = "digest_runs"
    __table_args__ = (
        UniqueConstraint("team_id", "channel_id", "local_date", name="uq_digest_run_day"),
        Index("ix_digest_runs_channel_posted", "team_id", "channel_id", "posted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    local_date: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD in the subscription's time zone
    state: Mapped[str] = mapped_column(String(16), default="claimed")
    owner: Mapped[str] = mapped_column(String(128))  # host:pid of the process that claimed it
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_ts: Mapped[str | None] = mapped_column(String(32))
    stories: Mapped[int] = mapped_column(Integer, default=0)
    items_read: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class FeedStateRow(Base):
    """What we know about one feed: validators for conditional requests and the last outcome."""

    __tablename__ = "digest_feed_state"

    url: Mapped[str] = mapped_column(String(2048), primary_key=True)
    title: Mapped[str | None] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(String(512))
    last_modified: Mapped[str | None] = mapped_column(String(128))
    last_status: Mapped[str | None] = mapped_column(String(32))  # ok | not_modified | failed
    last_error: Mapped[str | None] = mapped_column(Text)
    ai_share: Mapped[int | None] = mapped_column(Integer)  # % of the feed's items that look like AI news
    first_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FeedItemRow(Base):
    """An entry seen in a feed, kept a few days so a 304 (or a feed that is down) loses nothing."""

    __tablename__ = "digest_feed_items"
    __table_args__ = (
        UniqueConstraint("feed_url", "canonical_url", name="uq_feed_item"),
        Index("ix_feed_items_seen", "seen_at"),
        Index("ix_feed_items_published", "published_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feed_url: Mapped[str] = mapped_column(String(2048))
    canonical_url: Mapped[str] = mapped_column(String(2048))
    url: Mapped[str] = mapped_column(String(2048))
    title: Mapped[str] = mapped_column(Text)
    excerpt: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # An undated entry found on the feed's very first fetch: its age is unknown, so it is never "new".
    age_unknown: Mapped[bool] = mapped_column(Boolean, default=False)
