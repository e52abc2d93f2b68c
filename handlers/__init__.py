"""Slack listeners, split by surface. Each module registers its own handlers on the app."""

from __future__ import annotations

from typing import Any

from handlers import commands, digest, events, feedback, home, questions, triggers, unfurls
from handlers.deps import Deps


def register(app: Any, deps: Deps) -> None:
    events.register(app, deps)
    commands.register(app, deps)
    questions.register(app, deps)
    digest.register(app, deps)
    triggers.register(app, deps)
    unfurls.register(app, deps)
    feedback.register(app, deps)
    home.register(app, deps)


def digest_poster(client: Any, deps: Deps | None) -> Any:
    """The callable the digest scheduler uses to post a finished digest to a channel."""
    return digest.make_poster(client, deps)
