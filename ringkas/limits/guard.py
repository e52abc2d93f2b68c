"""Limits counted in the database: links per user per hour, model tokens per channel and workspace per day."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, case, func, literal, or_, select

from ringkas.config import Settings
from ringkas.documents import TokensToday, UsageContext
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


#: Names of the columns a `LinkCheck` reads.
LINKS_LAST_HOUR = "links_last_hour"
WORKSPACE_TOKENS_TODAY = "workspace_tokens_today"
CHANNEL_TOKENS_TODAY = "channel_tokens_today"


@dataclass(frozen=True)
class LinkCheck:
    """A shared link's limits, read together with the link's lookup instead of by queries of their own.

    `selects` are one-row selects (aggregates) to run inside the lookup; `admit` then takes the values
    they read (by column name), refuses the link as `LimitGuard.admit_link` does, and returns the context
    carrying today's token use for the first budget check of the link's model calls."""

    guard: LimitGuard
    context: UsageContext | None
    now: datetime
    selects: tuple[Select[Any], ...]
    params: Mapping[str, Any]

    async def admit(self, values: Mapping[str, Any]) -> UsageContext | None:
        links = values.get(LINKS_LAST_HOUR)
        if links is not None and int(links) > self.guard.limits.links_per_user_per_hour:
            await self.guard.admit_link(self.context)  # reads the times for the message, and refuses
        workspace = values.get(WORKSPACE_TOKENS_TODAY)
        if self.context is None or workspace is None:
            return self.context
        tokens = TokensToday(start_of_day(self.now), int(workspace), int(values[CHANNEL_TOKENS_TODAY]))
        return replace(self.context, tokens_today=tokens)


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
        # The selects a link's lookup reads its limits with, by shape (built once: see link_check).
        self._link_selects: dict[tuple[bool, bool, bool], tuple[Select[Any], ...]] = {}

    # --- checks ----------------------------------------------------------------------------------

    def link_check(self, context: UsageContext | None) -> LinkCheck:
        """What `admit_link` and the first `admit_model_call` of a link need, as selects to read with the
        link's lookup (none when no limit applies to this context). The selects are built once per shape,
        with bind parameters; `LinkCheck.params` holds this link's values."""
        now = self.clock()
        counts_links, budget = self._counts_links(context), self._has_budget(context)
        channel = budget and context is not None and self._counted_channel(context) is not None
        params: dict[str, Any] = {}
        if counts_links:
            assert context is not None
            params.update(lc_team=context.team_id, lc_user=context.user_id, lc_since=now - timedelta(hours=1))
        if budget:
            assert context is not None
            params.update(bt_team=context.team_id, bt_since=start_of_day(now))
            if channel:
                params["bt_channel"] = context.channel_id
        shape = (counts_links, budget, channel)
        if shape not in self._link_selects:
            self._link_selects[shape] = self._build_link_selects(*shape)
        return LinkCheck(self, context, now, self._link_selects[shape], params)

    def _build_link_selects(self, counts_links: bool, budget: bool, channel: bool) -> tuple[Select[Any], ...]:
        selects: list[Select[Any]] = []
        if counts_links:
            sharer = SimpleNamespace(team_id=bindparam("lc_team"), user_id=bindparam("lc_user"))
            selects.append(select(func.count().label(LINKS_LAST_HOUR))
                           .where(*self._counted_links(sharer, bindparam("lc_since"))))  # type: ignore[arg-type]
        if budget:
            sums = self._token_sums(bindparam("bt_channel") if channel else None)  # type: ignore[arg-type]
            selects.append(select(sums[0].label(WORKSPACE_TOKENS_TODAY), sums[1].label(CHANNEL_TOKENS_TODAY))
                           .where(*self._tokens_of(bindparam("bt_team"), bindparam("bt_since"))))  # type: ignore[arg-type]
        return tuple(selects)

    async def admit_link(self, context: UsageContext | None) -> None:
        """Refuse a link when its sharer already had LINKS_PER_USER_PER_HOUR links in the last hour.

        The request being checked is already recorded (claimed) and counts itself; links refused for a
        limit do not count, so waiting an hour always helps."""
        if not self._counts_links(context):
            return
        assert context is not None
        limit = self.limits.links_per_user_per_hour
        now = self.clock()
        async with self.db.session() as session:
            times = list(
                await session.scalars(
                    select(SlackRequestRow.created_at)
                    .where(*self._counted_links(context, now - timedelta(hours=1)))
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
        if not self._has_budget(context) or purpose in UNBLOCKED_PURPOSES:
            return
        assert context is not None and context.team_id
        channel_id = self._counted_channel(context)
        since = start_of_day(self.clock())
        read_ahead = context.tokens_today.take(since) if context.tokens_today is not None else None
        workspace_used, channel_used = read_ahead or await self._tokens_since(
            since, team_id=context.team_id, channel_id=channel_id
        )
        workspace_limit = self.limits.workspace_tokens_per_day
        channel_limit = self.limits.channel_tokens_per_day
        if workspace_limit and workspace_used >= workspace_limit:
            raise self._budget_spent("This workspace", workspace_used, workspace_limit,
                                     "WORKSPACE_TOKENS_PER_DAY")
        if channel_id and channel_used >= channel_limit:
            raise self._budget_spent("This channel", channel_used, channel_limit, "CHANNEL_TOKENS_PER_DAY")

    def _counts_links(self, context: UsageContext | None) -> bool:
        return bool(self.limits.links_per_user_per_hour and context is not None and context.user_id
                    and context.team_id)

    @staticmethod
    def _counted_links(context: UsageContext, since: datetime) -> tuple[ColumnElement[bool], ...]:
        """The sharer's link requests since `since`, leaving out those refused for a limit."""
        return (
            SlackRequestRow.team_id == context.team_id,
            SlackRequestRow.user_id == context.user_id,
            SlackRequestRow.kind.in_(LINK_KINDS),
            SlackRequestRow.created_at >= since,
            or_(SlackRequestRow.error_code.is_(None), SlackRequestRow.error_code != "limit"),
        )

    def _has_budget(self, context: UsageContext | None) -> bool:
        """Whether a daily token budget applies to model calls for this context (the terminal has none)."""
        limits = self.limits
        return bool(context is not None and context.team_id
                    and (limits.channel_tokens_per_day or limits.workspace_tokens_per_day))

    def _counted_channel(self, context: UsageContext) -> str | None:
        """The channel whose own budget counts too (None: only the workspace's)."""
        return context.channel_id if self.limits.channel_tokens_per_day else None

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
        query = select(*self._token_sums(channel_id)).where(*self._tokens_of(team_id, since))
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return int(row[0] or 0), int(row[1] or 0)

    @staticmethod
    def _token_sums(channel_id: str | None) -> tuple[ColumnElement[int], ColumnElement[int]]:
        """Sums of tokens in all the rows counted, and in those of the channel (0 without one)."""
        tokens = ModelCallRow.prompt_tokens + ModelCallRow.completion_tokens
        in_channel = (case((ModelCallRow.channel_id == channel_id, tokens), else_=0)
                      if channel_id is not None else literal(0))
        return func.coalesce(func.sum(tokens), 0), func.coalesce(func.sum(in_channel), 0)

    @staticmethod
    def _tokens_of(team_id: str, since: datetime) -> tuple[ColumnElement[bool], ...]:
        return ModelCallRow.team_id == team_id, ModelCallRow.created_at >= since

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
