"""Limits counted in the database: links per user per hour, model tokens per channel and workspace per day."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, literal, or_, select

from ringkas.config import Settings
from ringkas.documents import UsageContext
from ringkas.errors import LimitReached
from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.tables import ModelCallRow, SlackRequestRow

log = logging.getLogger("ringkas.limits")

#: Requests that share a link to be summarized (not /ask questions, which are model calls of their own).
LINK_KINDS = ("mention", "message", "dm", "command")
#: Model calls that are never refused for a spent budget (their tokens still count): a digest a channel
#: subscribed to is posted even on a busy day.
UNBLOCKED_PURPOSES = frozenset({"digest"})


@dataclass(frozen=True)
class Limits:
    """0 means no limit."""

    links_per_user_per_hour: int = 30
    channel_tokens_per_day: int = 1_000_000
    workspace_tokens_per_day: int = 5_000_000
    max_model_calls_per_article: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            links_per_user_per_hour=settings.links_per_user_per_hour,
            channel_tokens_per_day=settings.channel_tokens_per_day,
            workspace_tokens_per_day=settings.workspace_tokens_per_day,
            max_model_calls_per_article=settings.max_model_calls_per_article,
        )


@dataclass(frozen=True)
class LimitStatus:
    """One counted key against its limit, for `bot.py usage`."""

    scope: str  # "workspace" | "channel" | "user"
    key: str
    used: int
    limit: int

    @property
    def reached(self) -> bool:
        return bool(self.limit) and self.used >= self.limit


def start_of_day(now: datetime) -> datetime:
    """Daily budgets reset at 00:00 UTC."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _tokens(words: int) -> str:
    return f"{words:,}"


class LimitGuard:
    def __init__(self, db: Database, limits: Limits, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.limits = limits
        self.clock = clock

    # --- checks ----------------------------------------------------------------------------------

    async def admit_link(self, context: UsageContext | None) -> None:
        """Refuse a link when its sharer already had LINKS_PER_USER_PER_HOUR links in the last hour.

        The request being checked is already recorded (claimed) and counts itself; links refused for a
        limit do not count, so waiting an hour always helps."""
        limit = self.limits.links_per_user_per_hour
        if not limit or context is None or not context.user_id or not context.team_id:
            return
        now = self.clock()
        since = now - timedelta(hours=1)
        async with self.db.session() as session:
            times = list(
                await session.scalars(
                    select(SlackRequestRow.created_at)
                    .where(
                        SlackRequestRow.team_id == context.team_id,
                        SlackRequestRow.user_id == context.user_id,
                        SlackRequestRow.kind.in_(LINK_KINDS),
                        SlackRequestRow.created_at >= since,
                        or_(SlackRequestRow.error_code.is_(None), SlackRequestRow.error_code != "limit"),
                    )
                    .order_by(SlackRequestRow.created_at)
                )
            )
        if len(times) <= limit:
            return
        # the earliest counted link leaves the window first
        free_at = times[len(times) - limit - 1] + timedelta(hours=1)
        minutes = max(1, round((free_at - now).total_seconds() / 60))
        log.info("link limit reached", extra={"team": context.team_id, "user": context.user_id,
                                              "links": len(times), "limit": limit})
        raise LimitReached(
            f"You've shared {limit} links in the last hour, the most I summarize per person per hour. "
            f"Please try this one again in about {minutes} minute{'s' if minutes != 1 else ''}.",
            detail=f"links_per_user_per_hour={limit}",
        )

    async def admit_model_call(self, context: UsageContext | None, purpose: str) -> None:
        """Refuse a model call when its channel or workspace has spent today's token budget."""
        if context is None or not context.team_id or purpose in UNBLOCKED_PURPOSES:
            return
        channel_limit = self.limits.channel_tokens_per_day
        workspace_limit = self.limits.workspace_tokens_per_day
        if not channel_limit and not workspace_limit:
            return
        since = start_of_day(self.clock())
        channel_id = context.channel_id if channel_limit else None
        workspace_used, channel_used = await self._tokens_since(since, team_id=context.team_id,
                                                                channel_id=channel_id)
        if workspace_limit and workspace_used >= workspace_limit:
            raise self._budget_spent("This workspace", workspace_used, workspace_limit,
                                     "WORKSPACE_TOKENS_PER_DAY")
        if channel_id and channel_used >= channel_limit:
            raise self._budget_spent("This channel", channel_used, channel_limit, "CHANNEL_TOKENS_PER_DAY")

    def _budget_spent(self, who: str, used: int, limit: int, setting: str) -> LimitReached:
        log.info("token budget spent", extra={"setting": setting, "used": used, "limit": limit})
        return LimitReached(
            f"{who} has used its model budget for today ({_tokens(used)} of {_tokens(limit)} tokens), so I "
            "can't summarize or answer anything new until it resets at 00:00 UTC. "
            "Summaries I already made are still shared.",
            detail=f"{setting}={limit}",
        )

    async def _tokens_since(self, since: datetime, *, team_id: str,
                            channel_id: str | None = None) -> tuple[int, int]:
        """Tokens the workspace, and the channel (0 without one), used since `since`: one statement."""
        tokens = ModelCallRow.prompt_tokens + ModelCallRow.completion_tokens
        in_channel = (case((ModelCallRow.channel_id == channel_id, tokens), else_=0) if channel_id
                      else literal(0))
        query = select(func.coalesce(func.sum(tokens), 0), func.coalesce(func.sum(in_channel), 0)).where(
            ModelCallRow.team_id == team_id, ModelCallRow.created_at >= since
        )
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return int(row[0] or 0), int(row[1] or 0)

    # --- report ----------------------------------------------------------------------------------

    async def status(self, *, top: int = 10) -> list[LimitStatus]:
        """Today's token use per workspace and channel and last hour's links per user, against the limits
        (busiest first): what `bot.py usage` shows."""
        now = self.clock()
        day = start_of_day(now)
        used = func.sum(ModelCallRow.prompt_tokens + ModelCallRow.completion_tokens)
        out: list[LimitStatus] = []
        async with self.db.session() as session:
            teams = (
                await session.execute(
                    select(ModelCallRow.team_id, used)
                    .where(ModelCallRow.created_at >= day, ModelCallRow.team_id.is_not(None))
                    .group_by(ModelCallRow.team_id)
                    .order_by(used.desc())
                    .limit(top)
                )
            ).all()
            channels = (
                await session.execute(
                    select(ModelCallRow.team_id, ModelCallRow.channel_id, used)
                    .where(ModelCallRow.created_at >= day, ModelCallRow.channel_id.is_not(None))
                    .group_by(ModelCallRow.team_id, ModelCallRow.channel_id)
                    .order_by(used.desc())
                    .limit(top)
                )
            ).all()
            links = func.count(SlackRequestRow.id)
            users = (
                await session.execute(
                    select(SlackRequestRow.team_id, SlackRequestRow.user_id, links)
                    .where(
                        SlackRequestRow.created_at >= now - timedelta(hours=1),
                        SlackRequestRow.kind.in_(LINK_KINDS),
                        SlackRequestRow.user_id.is_not(None),
                        or_(SlackRequestRow.error_code.is_(None), SlackRequestRow.error_code != "limit"),
                    )
                    .group_by(SlackRequestRow.team_id, SlackRequestRow.user_id)
                    .order_by(links.desc())
                    .limit(top)
                )
            ).all()
        lim = self.limits
        out += [LimitStatus("workspace", t, int(n or 0), lim.workspace_tokens_per_day) for t, n in teams]
        out += [
            LimitStatus("channel", f"{t}/{c}", int(n or 0), lim.channel_tokens_per_day)
            for t, c, n in channels
        ]
        out += [
            LimitStatus("user", f"{t}/{u}", int(n or 0), lim.links_per_user_per_hour) for t, u, n in users
        ]
        return out
