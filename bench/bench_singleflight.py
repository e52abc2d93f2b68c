"""Single-flight: N concurrent requests for one link -> how many fetches and model calls (target 1 and 1).

    python bench/bench_singleflight.py [--concurrency 50] [--postgres URL]

Starts the local web and OpenAI stand-ins from tests/support, points a real Ringkas service at them
(a SQLite file; with --postgres also that database, whose tables are dropped and recreated), and
fires the requests at once. The model answers after a delay so every request arrives while the
first is still in flight. Then repeats with a warm cache (target 0 and 0), and with two service
instances sharing one database (two processes: the unique constraint keeps one summary).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from _setup import ROOT
from sqlalchemy import func, select

from ringkas.config import Settings
from ringkas.fetch import SafeFetcher
from ringkas.llm import LLM
from ringkas.service import Ringkas
from ringkas.storage import Base, Database
from ringkas.storage.tables import SummaryRow
from tests.support.openai_stub import OpenAIStub
from tests.support.web_stub import WebStub

PAGE = (ROOT / "tests" / "fixtures" / "summaries" / "berita-ai-id.html").read_text(encoding="utf-8")


def service(settings: Settings, db: Database) -> Ringkas:
    fetcher = SafeFetcher(allow_hosts=settings.fetch_allow_hosts, timeout=10)
    return Ringkas(settings=settings, db=db, fetcher=fetcher, llm=LLM(settings, db=db))


async def close(*services: Ringkas) -> None:
    for s in services:
        await s.fetcher.aclose()
        await s.llm.aclose()


async def run_backend(name: str, database_url: str, concurrency: int, web: WebStub, stub: OpenAIStub) -> None:
    db = Database(database_url)
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
    await db.create_all()
    settings = Settings.from_env(
        {
            "OPENAI_BASE_URL": stub.base_url,
            "OPENAI_API_KEY": "bench",
            "DATABASE_URL": database_url,
            "FETCH_ALLOW_HOSTS": "127.0.0.1",
        },
        dotenv=False,
    )
    path = f"/{name}/story"
    url = web.add(path, PAGE, delay=0.05)
    one = service(settings, db)
    try:
        rounds = [("cold cache", one, url), ("warm cache", one, url)]
        for label, svc, link in rounds:
            before_hits, before_calls = web.hits[path], len(stub.requests)
            started = time.perf_counter()
            results = await asyncio.gather(*(svc.summarize(link) for _ in range(concurrency)))
            seconds = time.perf_counter() - started
            fresh = sum(not r.cached for r in results)
            print(
                f"  {label:<11} {concurrency} requests: fetches={web.hits[path] - before_hits} "
                f"model calls={len(stub.requests) - before_calls} fresh results={fresh} "
                f"distinct summaries={len({r.summary.tldr for r in results})} wall={seconds:.2f}s"
            )

        # Two processes (two services, one database), a new link, both cold.
        path2 = f"/{name}/other"
        url2 = web.add(path2, PAGE.replace("Garuda-7B", "Garuda-8B"), delay=0.05)
        a, b = service(settings, db), service(settings, db)
        before_calls = len(stub.requests)
        half = concurrency // 2
        results = await asyncio.gather(
            *(a.summarize(url2) for _ in range(half)), *(b.summarize(url2) for _ in range(concurrency - half))
        )
        async with db.session() as session:
            rows = await session.scalar(select(func.count()).select_from(SummaryRow))
        print(
            f"  2 processes {concurrency} requests: fetches={web.hits[path2]} "
            f"model calls={len(stub.requests) - before_calls} (at most 1 per process) "
            f"stored summaries={rows - 1} "
            f"distinct summaries={len({r.summary.tldr for r in results})}"
        )
        await close(a, b)
    finally:
        await close(one)
        await db.dispose()


async def postgres_reachable(url: str) -> bool:
    db = Database(url)
    try:
        async with asyncio.timeout(5):
            return await db.ping()
    except TimeoutError:
        return False
    finally:
        await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--postgres", help="also run on this PostgreSQL database (its tables are recreated)")
    args = parser.parse_args()
    web = await WebStub().start()
    stub = await OpenAIStub().start()
    stub.delay = 0.3  # the model is slow, so every request arrives while the first is in flight
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print("SQLite")
            await run_backend("sqlite", f"sqlite:///{tmp}/bench.db", args.concurrency, web, stub)
        if args.postgres and await postgres_reachable(args.postgres):
            print("PostgreSQL")
            await run_backend("postgres", args.postgres, args.concurrency, web, stub)
        elif args.postgres:
            print(f"PostgreSQL not reachable at {args.postgres}: skipped")
    finally:
        await web.stop()
        await stub.stop()


if __name__ == "__main__":
    asyncio.run(main())
