"""Readers' votes on what the bot posts (👍/👎 on summaries, digests and answers), the reason behind a 👎,
and the reports `bot.py usage` and the App Home show. No Slack here: ids and words only."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ringkas.i18n import N_
from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.feedback_tables import FeedbackRow

log = logging.getLogger("ringkas.feedback")

KINDS = frozenset({"summary", "digest", "answer"})
#: What was voted on, in words (translated where shown).
KIND_NAMES: dict[str, str] = {"summary": N_("summary"), "digest": N_("digest"), "answer": N_("answer")}
#: What a 👎 can say was wrong (code -> words, translated where shown).
REASONS: dict[str, str] = {
    "inaccurate": N_("Not accurate"),
    "missed_point": N_("Missed the point"),
    "language": N_("Wrong language"),
    "too_long": N_("Too long"),
    "too_shallow": N_("Too shallow"),
    "other": N_("Something else"),
}


@dataclass(frozen=True)
class VoteCount:
    kind: str
    up: int
    down: int


@dataclass(frozen=True)
class RecentVote:
    channel_id: str
    kind: str
    vote: int
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class FeedbackReport:
    since: datetime
    by_kind: tuple[VoteCount, ...]
    reasons: tuple[tuple[str, int], ...]  # 👎 reasons, most frequent first

    @property
    def up(self) -> int:
        return sum(count.up for count in self.by_kind)

    @property
    def down(self) -> int:
        return sum(count.down for count in self.by_kind)


class FeedbackStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def vote(self, *, team_id: str, channel_id: str, message_ts: str, user_id: str, kind: str,
                   target: str | None, vote: int) -> int:
        """Record (or change) one person's vote on one message; returns the vote's id."""
        if kind not in KINDS or vote not in (1, -1):
            raise ValueError(f"not a vote: {kind!r} {vote!r}")
        key = (FeedbackRow.team_id == team_id[:32], FeedbackRow.channel_id == channel_id[:32],
               FeedbackRow.message_ts == message_ts[:32], FeedbackRow.user_id == user_id[:32])
        for _attempt in range(2):
            async with self.db.session() as session:
                row = await session.scalar(select(FeedbackRow).where(*key))
                if row is not None:
                    if row.vote != vote:
                        row.vote, row.reason, row.comment = vote, None, None
                    row.updated_at = utcnow()
                    await session.flush()
                    return row.id
            try:
                async with self.db.session() as session:
                    row = FeedbackRow(team_id=team_id[:32], channel_id=channel_id[:32],
                                      message_ts=message_ts[:32], user_id=user_id[:32], kind=kind,
                                      target=(target or "")[:64] or None, vote=vote)
                    session.add(row)
                    await session.flush()
                    return row.id
            except IntegrityError:
                continue  # a double click raced us: the row exists now, update it
        raise RuntimeError("feedback vote could not be stored")

    async def set_reason(self, feedback_id: int, *, user_id: str, reason: str) -> bool:
        """What was wrong, for a 👎 given by `user_id` (nobody else can set it)."""
        if reason not in REASONS:
            return False
        async with self.db.session() as session:
            result = await session.execute(
                update(FeedbackRow)
                .where(FeedbackRow.id == feedback_id, FeedbackRow.user_id == user_id[:32],
                       FeedbackRow.vote == -1)
                .values(reason=reason, updated_at=utcnow())
            )
            return result.rowcount == 1  # type: ignore[attr-defined]

    async def report(self, *, days: int = 30, team_id: str | None = None) -> FeedbackReport:
        since = utcnow() - timedelta(days=days)
        where = [FeedbackRow.updated_at >= since]
        if team_id is not None:
            where.append(FeedbackRow.team_id == team_id)
        async with self.db.session() as session:
            rows = (await session.execute(
                select(FeedbackRow.kind, FeedbackRow.vote, func.count()).where(*where)
                .group_by(FeedbackRow.kind, FeedbackRow.vote)
            )).all()
            reasons = (await session.execute(
                select(FeedbackRow.reason, func.count()).where(*where, FeedbackRow.vote == -1,
                                                               FeedbackRow.reason.is_not(None))
                .group_by(FeedbackRow.reason).order_by(func.count().desc())
            )).all()
        counts: dict[str, list[int]] = {}
        for kind, vote, count in rows:
            counts.setdefault(kind, [0, 0])[0 if vote > 0 else 1] += int(count)
        by_kind = tuple(VoteCount(kind, up, down) for kind, (up, down) in sorted(counts.items()))
        return FeedbackReport(since=since, by_kind=by_kind,
                              reasons=tuple((str(reason), int(count)) for reason, count in reasons))

    async def recent(self, team_id: str, *, limit: int = 5) -> list[RecentVote]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(FeedbackRow).where(FeedbackRow.team_id == team_id)
                .order_by(FeedbackRow.updated_at.desc(), FeedbackRow.id.desc()).limit(limit)
            )
            return [RecentVote(r.channel_id, r.kind, r.vote, r.reason, r.updated_at) for r in rows]


def format_feedback(report: FeedbackReport) -> str:
    """The votes as plain text for `bot.py usage`."""
    lines = ["", f"Feedback since {report.since:%Y-%m-%d %H:%M} UTC: {report.up:,} 👍 · {report.down:,} 👎"]
    if not report.by_kind:
        lines.append("No votes yet.")
    for count in report.by_kind:
        lines.append(f"{count.kind:<24} {count.up:>8,} 👍 {count.down:>8,} 👎")
    if report.reasons:
        lines.append("What was wrong: " + ", ".join(f"{REASONS.get(r, r)} ({n})" for r, n in report.reasons))
    return "\n".join(lines)


__all__ = ["KINDS", "KIND_NAMES", "REASONS", "FeedbackReport", "FeedbackStore", "RecentVote", "VoteCount",
           "format_feedback"]
