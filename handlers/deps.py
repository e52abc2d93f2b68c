"""What the Slack listeners are handed by `bot.py`: the domain services, nothing Slack-specific."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ringkas.config import Settings
    from ringkas.digest.service import DigestService
    from ringkas.qa import QuestionService
    from ringkas.service import Ringkas
    from ringkas.slack_state import SlackState


@dataclass
class Deps:
    settings: Settings
    ringkas: Ringkas  # fetch, extract, summarize (cached, single-flight)
    state: SlackState  # idempotency records, thread<->article links, channel settings
    questions: QuestionService | None = None  # follow-up questions (issue 4)
    digests: DigestService | None = None  # daily digests (issue 5)
    scheduler: Any = None  # ringkas.digest.scheduler.DigestScheduler when running as an app
