"""What every shared link reads is indexed (today's tokens, the sharer's last hour, the same-text twin), and a
database created before an index was added gets it at the next start."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text

from ringkas.storage import Database

NEW_INDEXES = ("ix_model_calls_team_time", "ix_slack_requests_user_time", "ix_articles_content_hash")


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as con:
        return {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


async def test_an_older_database_gets_the_new_indexes_at_start(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    database = Database(f"sqlite:///{path}")
    await database.create_all()
    await database.dispose()
    with sqlite3.connect(path) as con:  # as it was before these indexes existed
        for name in NEW_INDEXES:
            con.execute(f"DROP INDEX {name}")
    assert not set(NEW_INDEXES) & _indexes(path)
    database = Database(f"sqlite:///{path}")
    await database.create_all()
    await database.create_all()  # a second start finds them and changes nothing
    await database.dispose()
    assert set(NEW_INDEXES) <= _indexes(path)


async def test_the_per_link_counts_use_their_indexes(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    await database.create_all()
    queries = {
        "ix_model_calls_team_time": "SELECT sum(prompt_tokens) FROM model_calls WHERE team_id = 'T' "
                                    "AND created_at >= '2026-12-04'",
        "ix_slack_requests_user_time": "SELECT count(*) FROM slack_requests WHERE team_id = 'T' "
                                       "AND user_id = 'U' AND created_at >= '2026-12-04'",
        "ix_articles_content_hash": "SELECT id FROM articles WHERE content_hash = 'abc'",
    }
    async with database.engine.connect() as conn:
        for index, query in queries.items():
            plan = " ".join(str(row[-1]) for row in await conn.execute(text(f"EXPLAIN QUERY PLAN {query}")))
            assert index in plan, plan
    await database.dispose()
