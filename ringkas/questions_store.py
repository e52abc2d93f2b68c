"""Persistence of follow-up questions and answers (the `questions` table)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from ringkas.documents import Usage
from ringkas.storage import Database
from ringkas.storage.tables import QuestionRow, ThreadArticleRow

QUESTION_MAX_CHARS = 20_000  # Slack messages are at most 40k characters; keep rows bounded anyway
ANSWER_MAX_CHARS = 20_000


@dataclass(frozen=True)
class StoredExchange:
    """One question and its answer, as earlier context for the same thread."""

    id: int
    question: str
    answer: str
    user_id: str | None
    article_ids: tuple[int, ...]
    answered: bool
    language: str | None
    created_at: datetime


class QuestionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str | None,
        user_id: str | None,
        question: str,
        answer: str,
        article_ids: list[int],
        model: str,
        usage: Usage,
        language: str | None,
        answered: bool,
        asked_via: str = "mention",
    ) -> int:
        row = QuestionRow(
            team_id=team_id,
            channel_id=channel_id,
            thread_ts=thread_ts,
            user_id=user_id,
            question=question[:QUESTION_MAX_CHARS],
            answer=answer[:ANSWER_MAX_CHARS],
            article_ids=list(article_ids),
            model=model[:128],
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            model_calls=usage.calls,
            language=language[:16] if language else None,
            answered=answered,
            asked_via=asked_via[:16],
        )
        async with self.db.session() as session:
            session.add(row)
            await session.flush()
            return row.id

    async def thread_history(
        self, team_id: str, channel_id: str, thread_ts: str, *, limit: int = 10
    ) -> list[StoredExchange]:
        """The thread's latest `limit` exchanges, newest first."""
        async with self.db.session() as session:
            rows = await session.scalars(
                select(QuestionRow)
                .where(
                    QuestionRow.team_id == team_id,
                    QuestionRow.channel_id == channel_id,
                    QuestionRow.thread_ts == thread_ts,
                )
                .order_by(QuestionRow.created_at.desc(), QuestionRow.id.desc())
                .limit(limit)
            )
            return [_exchange(row) for row in rows]

    async def article_thread(self, team_id: str, channel_id: str, article_id: int) -> str | None:
        """The newest thread of this channel where the article was summarized, if any."""
        async with self.db.session() as session:
            return await session.scalar(
                select(ThreadArticleRow.thread_ts)
                .where(
                    ThreadArticleRow.team_id == team_id,
                    ThreadArticleRow.channel_id == channel_id,
                    ThreadArticleRow.article_id == article_id,
                )
                .order_by(ThreadArticleRow.created_at.desc(), ThreadArticleRow.id.desc())
                .limit(1)
            )

    async def move_to_thread(self, question_id: int | None, thread_ts: str) -> None:
        """An answer posted at the top level became the start of a thread: file the question there."""
        if question_id is None:
            return
        async with self.db.session() as session:
            await session.execute(
                update(QuestionRow).where(QuestionRow.id == question_id).values(thread_ts=thread_ts)
            )

    async def get(self, question_id: int) -> StoredExchange | None:
        async with self.db.session() as session:
            row = await session.get(QuestionRow, question_id)
            return _exchange(row) if row else None


def _exchange(row: QuestionRow) -> StoredExchange:
    return StoredExchange(
        id=row.id,
        question=row.question,
        answer=row.answer,
        user_id=row.user_id,
        article_ids=tuple(int(i) for i in row.article_ids or ()),
        answered=bool(row.answered),
        language=row.language,
        created_at=row.created_at,
    )
