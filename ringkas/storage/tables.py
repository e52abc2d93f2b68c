"""Core tables: articles, summaries, model usage, Slack requests, threads, channel settings, Q&A.

Digest tables live in `digest_tables.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ringkas.storage.base import Base, UTCDateTime, utcnow


class ArticleRow(Base):
    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    canonical_url: Mapped[str] = mapped_column(String(2048), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    title: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(Text)
    published: Mapped[str | None] = mapped_column(String(32))
    site_name: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    source_kind: Mapped[str] = mapped_column(String(16), default="html")
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)  # a shared link's same-text twin
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ArticleAliasRow(Base):
    """Other URLs (as shared, before canonicalisation) that led to an article."""

    __tablename__ = "article_aliases"

    url: Mapped[str] = mapped_column(String(2048), primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SummaryRow(Base):
    __tablename__ = "summaries"
    __table_args__ = (UniqueConstraint("article_id", "language", "prompt_version", name="uq_summary_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(String(16))
    prompt_version: Mapped[str] = mapped_column(String(255))  # "name@version+..." of every template used
    model: Mapped[str] = mapped_column(String(128))
    title: Mapped[str | None] = mapped_column(Text)
    tldr: Mapped[str] = mapped_column(Text)
    key_points: Mapped[list[str]] = mapped_column(JSON)
    why_it_matters: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    model_calls: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelCallRow(Base):
    """Token usage of every model request (summaries, map/reduce steps, Q&A, digests)."""

    __tablename__ = "model_calls"
    # Every shared link reads today's tokens of its workspace (ringkas/limits): by team and time.
    __table_args__ = (Index("ix_model_calls_team_time", "team_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    article_id: Mapped[int | None] = mapped_column(Integer)
    team_id: Mapped[str | None] = mapped_column(String(32))
    channel_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SlackRequestRow(Base):
    """One accepted unit of Slack work, recorded before the slow work starts.

    `key` is the idempotency key: sha256 of (team, channel, message ts, link).
    """

    __tablename__ = "slack_requests"
    # Every shared link counts its sharer's links of the last hour (ringkas/limits).
    __table_args__ = (Index("ix_slack_requests_user_time", "team_id", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # mention | message | dm | command | ask
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    message_ts: Mapped[str] = mapped_column(String(32))
    link: Mapped[str] = mapped_column(String(2048))
    user_id: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | failed
    error_code: Mapped[str | None] = mapped_column(String(32))
    article_id: Mapped[int | None] = mapped_column(Integer)
    reply_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ThreadArticleRow(Base):
    """A summary posted in Slack: which article lives in which thread (for follow-up questions)."""

    __tablename__ = "thread_articles"
    __table_args__ = (
        UniqueConstraint("team_id", "channel_id", "thread_ts", "article_id", name="uq_thread_article"),
        Index("ix_thread_articles_channel_time", "team_id", "channel_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str] = mapped_column(String(32))
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    shared_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChannelSettingsRow(Base):
    __tablename__ = "channel_settings"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    passive_summaries: Mapped[bool] = mapped_column(Boolean, default=True)
    language: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class QuestionRow(Base):
    """A follow-up question and its answer (context for later questions, usage reports)."""

    __tablename__ = "questions"
    __table_args__ = (Index("ix_questions_thread", "team_id", "channel_id", "thread_ts", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(32))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    article_ids: Mapped[list[Any]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(128))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    model_calls: Mapped[int] = mapped_column(Integer, default=0)
    language: Mapped[str | None] = mapped_column(String(16))  # detected language of the question
    answered: Mapped[bool] = mapped_column(Boolean, default=True)  # False: the articles don't say
    asked_via: Mapped[str] = mapped_column(String(16), default="mention")  # mention | ask
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SeenRequestRow(Base):
    """Signed requests already run (slash commands, interactions), by the hash of their signature: a
    replay within Slack's five-minute window is recognised by every process sharing the database."""

    __tablename__ = "seen_requests"
    __table_args__ = (Index("ix_seen_requests_time", "seen_at"),)

    identity: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
