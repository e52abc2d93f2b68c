"""Feedback table: one vote per person per bot message (a summary, a digest or an answer).

Owned by the feedback feature (ringkas/feedback/).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ringkas.storage.base import Base, UTCDateTime, utcnow


class FeedbackRow(Base):
    """A person's 👍 (+1) or 👎 (-1) on one message of the bot, and what was wrong when they said so."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("team_id", "channel_id", "message_ts", "user_id", name="uq_feedback_vote"),
        Index("ix_feedback_team_time", "team_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    message_ts: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # summary | digest | answer
    target: Mapped[str | None] = mapped_column(String(64))  # article id, digest date, …
    vote: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
