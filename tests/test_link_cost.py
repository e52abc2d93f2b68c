"""What one link costs the database, counted with SQLAlchemy's engine events, and what the bot loads at
start. Regressions in statement counts fail here; the numbers under load are in bench/bench_link_cost.py."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.slack_app import MakeSlackApp, message
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub

ROOT = Path(__file__).resolve().parents[1]
ARTICLE = (Path(__file__).parent / "fixtures" / "slack_article.html").read_text(encoding="utf-8")

# The worker's polling is shared by every job it takes (one UPDATE … RETURNING takes many), and the test
# harness asks for the queue depth while it waits: neither belongs to one link.
_SHARED = re.compile(r"^(UPDATE jobs SET state=\S+ attempts=|UPDATE jobs SET lease_until|SELECT count\(\*\)"
                     r"|DELETE FROM)")

# One link's whole life: claim + job (before the ack), the link's lookup (article, summaries, link limit,
# token budgets: one read), store article, record usage, store summary, thread link, request settled, job
# finished (the job's take is shared by the jobs taken together). The channel's settings (kept for a while)
# come on top, once.
UNCACHED_STATEMENTS = 9
UNCACHED_TRANSACTIONS = 7
# The same link shared again: the link's lookup finds the summary; nothing is stored but the reply's records.
CACHED_STATEMENTS = 6
CACHED_TRANSACTIONS = 4
# The link's lookup (ArticleStore.lookup): the one read of the pipeline, cached or not.
LOOKUP = "SELECT link_facts."


class Count:
    """Statements, and transactions that ran any of them (reads included), leaving out the shared ones."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.transactions = 0
        self._fresh: set[int] = set()  # connections whose transaction has run nothing counted yet

    def statement(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        text = " ".join(statement.split())
        if not _SHARED.match(text.replace(",", "")):
            self.statements.append(text[:100])
            if id(conn) in self._fresh:
                self._fresh.discard(id(conn))
                self.transactions += 1

    def begin(self, conn: Any) -> None:
        self._fresh.add(id(conn))


@contextmanager
def counting() -> Iterator[Count]:
    count = Count()
    event.listen(Engine, "before_cursor_execute", count.statement)
    event.listen(Engine, "begin", count.begin)
    try:
        yield count
    finally:
        event.remove(Engine, "before_cursor_execute", count.statement)
        event.remove(Engine, "begin", count.begin)


async def test_one_link_touches_the_database_a_bounded_number_of_times(
    make_slack_app: MakeSlackApp, slack_stub: SlackStub, web: WebStub, database_url: str
) -> None:
    app = await make_slack_app(DATABASE_URL=database_url)
    link = web.add("/cost", ARTICLE)
    # warm-up: the first request opens connections and reads what every later one keeps (auth.test)
    await app.event(message(f"<{web.add('/warm', ARTICLE.replace('Open-weight', 'Closed-weight'))}>"))
    await app.settle()

    with counting() as uncached:
        assert await app.event(message(f"<{link}>")) == 200
        await app.settle()
    with counting() as cached:
        assert await app.event(message(f"see <{link}>")) == 200
        await app.settle()

    summaries = [c for c in slack_stub.calls_to("chat.postMessage") if "TL;DR" in str(c.args)
                 or "tldr" in str(c.args).lower()]
    assert len(summaries) >= 3, "each message got its summary"
    detail = "\n".join([*uncached.statements, "-- cached --", *cached.statements])
    for count in (uncached, cached):
        settings = sum(1 for s in count.statements if "FROM channel_settings" in s)
        assert settings <= 1, detail
        count.statements = [s for s in count.statements if "FROM channel_settings" not in s]
        count.transactions -= settings
    assert len(uncached.statements) <= UNCACHED_STATEMENTS, detail
    assert uncached.transactions <= UNCACHED_TRANSACTIONS, detail
    assert len(cached.statements) <= CACHED_STATEMENTS, detail
    print(f"uncached: {len(uncached.statements)} statements, {uncached.transactions} transactions; "
          f"cached: {len(cached.statements)}, {cached.transactions}")
    assert cached.transactions <= CACHED_TRANSACTIONS, detail
    for count in (uncached, cached):  # one read of the pipeline (the outbox's are the reply's)
        reads = [s for s in count.statements if s.startswith("SELECT") and "slack_outbox" not in s]
        assert len(reads) == 1 and reads[0].startswith(LOOKUP), detail
    # no row is read twice within one request
    for name in ("FROM articles", "FROM summaries", "FROM slack_outbox"):
        assert sum(1 for s in cached.statements if s.startswith("SELECT") and name in s) <= 1, detail


def test_starting_the_bot_loads_neither_the_tokenizer_nor_the_language_model(tmp_path: Path) -> None:
    """Built and ready for traffic (as `python bot.py` is before its first request), the bot has not
    loaded tiktoken's encoding, the language-identification model or the extraction libraries."""
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        sys.path.insert(0, {str(ROOT)!r})
        from bot import build_slack_app, prepare_for_traffic
        from ringkas.config import Settings

        async def main():
            settings = Settings.from_env({{
                "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                "DATABASE_URL": "sqlite:///{tmp_path / 'start.db'}", "SLACK_BOT_TOKEN": "xoxb-test",
                "SLACK_SIGNING_SECRET": "s", "SLACK_API_URL": "http://127.0.0.1:9/api/", "LOG_LEVEL": "ERROR",
            }})
            runtime = await build_slack_app(settings, start_scheduler=False)
            prepare_for_traffic(runtime)
            from ringkas import language, tokens
            print(json.dumps({{
                "encodings": sorted(tokens._encodings),
                "language_model": language._identifier.cache_info().currsize,
                "modules": sorted(m for m in ("tiktoken", "trafilatura", "lxml", "py3langid")
                                  if m in sys.modules),
            }}))
            await runtime.aclose(grace=1)

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == (
        '{"encodings": [], "language_model": 0, "modules": []}'
    ), done.stdout


async def test_urgent_writers_go_first_and_a_cancelled_waiter_passes_its_turn_on() -> None:
    from ringkas.storage.db import WriteTurns

    turns = WriteTurns()
    order: list[str] = []
    await turns.acquire()

    async def writer(name: str, urgent: bool) -> None:
        await turns.acquire(urgent)
        order.append(name)
        await asyncio.sleep(0)
        turns.release()

    tasks = [asyncio.create_task(writer("job 1", False)), asyncio.create_task(writer("job 2", False))]
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(writer("cancelled", True))
    tasks.append(asyncio.create_task(writer("ack", True)))
    await asyncio.sleep(0)
    cancelled.cancel()
    turns.release()
    await asyncio.gather(*tasks)
    assert order == ["ack", "job 1", "job 2"]
    await turns.acquire()  # free again
    turns.release()
