"""Follow-up questions: thread mentions and /ask. (Being built: issue 4.)"""

from __future__ import annotations

from typing import Any

from handlers.deps import Deps


def register(app: Any, deps: Deps) -> None:
    """Registers /ask."""


async def answer_in_thread(
    deps: Deps, client: Any, *, team_id: str, channel_id: str, thread_ts: str, message_ts: str,
    user_id: str | None, text: str,
) -> bool:
    """Answer a question asked by mentioning the bot in a summary's thread.

    Returns False when the thread holds no summarized article (the caller then posts help).
    """
    return False
