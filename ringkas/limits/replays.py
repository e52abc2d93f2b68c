"""Replays of signed requests: the first sight of a request's identity runs it, any later one within the
window does not. Stored in the database so every process sharing it agrees."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ringkas.storage import Database
from ringkas.storage.base import utcnow
from ringkas.storage.tables import SeenRequestRow

log = logging.getLogger("ringkas.limits")

WINDOW = timedelta(minutes=10)  # Slack's 5-minute signature window, plus clock skew either way


class ReplayStore:
    def __init__(self, db: Database, window: timedelta = WINDOW) -> None:
        self.db = db
        self.window = window

    async def first_sight(self, identity: str) -> bool:
        """True the first time `identity` (e.g. a request signature) is seen within the window.
        When the database cannot say, the request runs: refusing real work on an outage is worse."""
        key = hashlib.sha256(identity.encode()).hexdigest()
        now = utcnow()
        insert = sqlite_insert if self.db.is_sqlite else postgresql_insert
        try:
            async with self.db.session() as session:
                expired = SeenRequestRow.seen_at < now - self.window
                await session.execute(delete(SeenRequestRow).where(expired))
                result = await session.execute(
                    insert(SeenRequestRow)
                    .values(identity=key, seen_at=now)
                    .on_conflict_do_nothing(index_elements=["identity"])
                    .returning(SeenRequestRow.identity)
                )
                return result.first() is not None  # nothing returned: the row was there already
        except Exception as exc:
            log.warning("could not check for a replay; running the request",
                        extra={"error": type(exc).__name__})
            return True
