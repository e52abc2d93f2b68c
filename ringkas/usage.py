"""Usage reports from what the bot records: model calls with their tokens, and questions asked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.tables import ModelCallRow, QuestionRow, SummaryRow

# Model-call purposes grouped into the features a person recognises.
FEATURES = {
    "summary": "summaries",
    "summary_map": "summaries",
    "summary_reduce": "summaries",
    "summary_combine": "summaries",
    "qa": "questions",
    "qa_keywords": "questions",
    "digest": "digests",
}


@dataclass(frozen=True)
class UsageLine:
    label: str
    calls: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class UsageReport:
    since: datetime
    by_feature: tuple[UsageLine, ...]
    by_channel: tuple[UsageLine, ...]
    by_model: tuple[UsageLine, ...]
    summaries_made: int
    questions_asked: int
    questions_unanswered: int

    @property
    def total(self) -> UsageLine:
        lines = self.by_feature
        return UsageLine(
            "total",
            sum(x.calls for x in lines),
            sum(x.prompt_tokens for x in lines),
            sum(x.completion_tokens for x in lines),
        )


async def usage_report(db: Database, *, days: int = 30, now: datetime | None = None) -> UsageReport:
    """Token usage of the last `days` days by feature, channel and model, plus summary and Q&A counts."""
    since = (now or utcnow()) - timedelta(days=days)
    sums = (
        func.count(ModelCallRow.id),
        func.coalesce(func.sum(ModelCallRow.prompt_tokens), 0),
        func.coalesce(func.sum(ModelCallRow.completion_tokens), 0),
    )
    recent = ModelCallRow.created_at >= since
    async with db.session() as session:
        by_purpose = (
            await session.execute(
                select(ModelCallRow.purpose, *sums).where(recent).group_by(ModelCallRow.purpose)
            )
        ).all()
        by_channel = (
            await session.execute(
                select(ModelCallRow.channel_id, *sums).where(recent).group_by(ModelCallRow.channel_id)
            )
        ).all()
        by_model = (
            await session.execute(
                select(ModelCallRow.model, *sums).where(recent).group_by(ModelCallRow.model)
            )
        ).all()
        summaries = await session.scalar(
            select(func.count(SummaryRow.id)).where(SummaryRow.created_at >= since)
        )
        asked = await session.scalar(
            select(func.count(QuestionRow.id)).where(QuestionRow.created_at >= since)
        )
        unanswered = await session.scalar(
            select(func.count(QuestionRow.id)).where(
                QuestionRow.created_at >= since, QuestionRow.answered.is_(False)
            )
        )
    features: dict[str, list[int]] = {}
    for purpose, calls, prompt, completion in by_purpose:
        totals = features.setdefault(FEATURES.get(purpose, purpose), [0, 0, 0])
        totals[0] += calls
        totals[1] += prompt
        totals[2] += completion
    return UsageReport(
        since=since,
        by_feature=_sorted(UsageLine(k, *v) for k, v in features.items()),
        by_channel=_sorted(UsageLine(c or "terminal", n, p, o) for c, n, p, o in by_channel),
        by_model=_sorted(UsageLine(m, n, p, o) for m, n, p, o in by_model),
        summaries_made=int(summaries or 0),
        questions_asked=int(asked or 0),
        questions_unanswered=int(unanswered or 0),
    )


def _sorted(lines: object) -> tuple[UsageLine, ...]:
    return tuple(sorted(lines, key=lambda x: (-x.total_tokens, x.label)))  # type: ignore[attr-defined]
