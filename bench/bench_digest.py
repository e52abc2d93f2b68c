"""Digest build at scale: 200 feeds x 100 items from a local feed server, the model stand-in answering after
1 s (and, in a second run, skipping every second story like a weak model).

Prints per run: wall time of the whole build (feeds fetched and stored, selection, model calls), peak RSS
of the process, the longest time the event loop was blocked (a 5 ms ticker measures how late it wakes),
model calls against the budget of 3 + stories/12, and prompt tokens. The stall is given twice: how late
the ticker woke (wall clock; on a machine busy with other work this includes the OS not running the
process) and the CPU the loop's thread used between two ticks (the time the bot's own code held it).
The stand-in servers run on their own thread and event loop so that serving them never counts as a stall
of the bot's loop.

Goals (issue 10): under 60 s, under 300 MB peak RSS, no stall over 250 ms, calls within the budget.
Runnable as `python bench/bench_digest.py [--feeds 200] [--items 100]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import _setup  # noqa: F401  (first: the project's path and the tokenizer's files)

from ringkas.config import Settings
from ringkas.digest.models import FeedSource
from ringkas.digest.service import DigestService
from ringkas.digest.write import call_budget
from ringkas.fetch import SafeFetcher
from ringkas.llm import LLM
from ringkas.storage import Database
from tests.support.openai_stub import OpenAIStub, skipping
from tests.support.web_stub import WebStub
from tests.test_digest_support import digest_responder, rss

COMPANIES = ["OpenAI", "Anthropic", "Google DeepMind", "Meta", "Mistral", "Nvidia", "Microsoft", "xAI",
             "Cohere", "Hugging Face", "DeepSeek", "Alibaba Qwen", "Perplexity", "Apple", "Amazon"]
ACTIONS = ["releases", "open-sources", "prices", "delays", "benchmarks", "demos", "ships", "licenses"]
THINGS = ["reasoning model", "coding agent", "speech model", "video generator", "AI chip", "robotics model",
          "small language model", "safety report", "data center", "chatbot update"]
OTHER = ["Best budget phones", "Streaming prices rise", "Smartwatch review", "Election coverage",
         "Football results", "Everything you need to know about the new tablet"]
TICK = 0.005
RUNS = ((10, False), (40, False), (40, True))  # (DIGEST_MAX_STORIES, model skips every second story)


def headlines(rng: random.Random, feed: int, items: int) -> list[str]:
    out = []
    for i in range(items):
        if rng.random() < 0.25:
            out.append(f"{rng.choice(OTHER)} {feed}-{i}")
        else:  # a shared pool of stories, so outlets overlap like on a real news day
            company, action, thing = rng.choice(COMPANIES), rng.choice(ACTIONS), rng.choice(THINGS)
            out.append(f"{company} {action} {thing} {rng.randint(1, 6)}")
    return out


class Servers:
    """The feed server and the model stand-in, on a thread of their own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.web = WebStub()
        self.model = OpenAIStub()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def __enter__(self) -> Servers:
        self.thread.start()
        self.run(self.web.start())
        self.run(self.model.start())
        return self

    def __exit__(self, *_: object) -> None:
        self.run(self.web.stop())
        self.run(self.model.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


async def stalls(stop: asyncio.Event, worst: list[float]) -> None:
    """worst[0]: how late the ticker woke (wall clock: includes the OS not running us on a busy machine);
    worst[1]: CPU the loop's thread spent between two ticks (what the bot's own code blocked it for)."""
    loop = asyncio.get_running_loop()
    last, last_cpu = loop.time(), time.thread_time()
    while not stop.is_set():
        await asyncio.sleep(TICK)
        now, cpu = loop.time(), time.thread_time()
        worst[0] = max(worst[0], now - last - TICK)
        worst[1] = max(worst[1], cpu - last_cpu)
        last, last_cpu = now, cpu


async def run(servers: Servers, *, feeds: int, items: int, max_stories: int, weak: bool) -> dict[str, Any]:
    rng = random.Random(42)
    web, model = servers.web, servers.model
    model.requests.clear()
    model.responder = skipping(digest_responder) if weak else digest_responder
    model.delay = 1.0
    now = datetime.now(UTC)
    sources = []
    description = "A paragraph of feed text about the story, as feeds carry it. " * 5
    for feed in range(feeds):
        entries = [
            (title, f"https://outlet{feed}.example/{i}?utm_source=rss",
             now - timedelta(minutes=40 * i + feed))
            for i, title in enumerate(headlines(rng, feed, items))
        ]
        url = web.add(f"/feed{feed}.xml", rss(f"Outlet {feed} - AI news", entries, description=description),
                      content_type="application/rss+xml")
        sources.append(FeedSource(url))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({
            "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": model.base_url,
            "DATABASE_URL": f"sqlite:///{tmp}/b.db", "FETCH_ALLOW_HOSTS": "127.0.0.1",
            "DIGEST_MAX_STORIES": str(max_stories),
        })
        db = Database(settings.database_url)
        await db.create_all()
        fetcher = SafeFetcher(allow_hosts=settings.fetch_allow_hosts)
        llm = LLM(settings, db=db)
        llm.tokens.count("warm up")  # as the bot does at start (bot.prepare_for_traffic) ...
        gc.collect()
        gc.freeze()  # ... which also freezes the start-up heap
        service = DigestService(settings=settings, db=db, fetcher=fetcher, llm=llm, sources=sources)
        stop, worst = asyncio.Event(), [0.0, 0.0]
        ticker = asyncio.get_running_loop().create_task(stalls(stop, worst))
        started = time.perf_counter()
        digest = await service.build(window_start=now - timedelta(hours=24), window_end=now, language="id",
                                     timezone="Asia/Jakarta", team_id="T1", channel_id="C1")
        wall = time.perf_counter() - started
        stop.set()
        await ticker
        await fetcher.aclose()
        await llm.aclose()
        await db.dispose()
    stories = len(digest.stories)
    return {
        "wall": wall, "stall_ms": 1000 * worst[0], "stall_cpu_ms": 1000 * worst[1],
        "items": digest.items_read, "stories": stories,
        "from_feed": sum(1 for s in digest.stories if s.from_feed), "calls": len(model.requests),
        "budget": call_budget(stories), "prompt_tokens": digest.usage.prompt_tokens,
        "feeds_ok": digest.sources_read,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--items", type=int, default=100)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    with Servers() as servers:
        for max_stories, weak in RUNS:
            result = await run(servers, feeds=args.feeds, items=args.items, max_stories=max_stories,
                               weak=weak)
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            model = "skipping model" if weak else "good model"
            print(
                f"{args.feeds} feeds x {args.items} items, DIGEST_MAX_STORIES={max_stories:>2}, {model}: "
                f"{result['feeds_ok']} feeds read, {result['items']} items in window -> "
                f"{result['stories']} stories"
                f" ({result['from_feed']} from feed text) | wall {result['wall']:.1f} s (goal < 60)"
                f" | peak RSS {peak_mb:.0f} MB (goal < 300)"
                f" | worst loop stall {result['stall_ms']:.0f} ms wall,"
                f" {result['stall_cpu_ms']:.0f} ms of loop CPU (goal <= 250)"
                f" | model calls {result['calls']} (budget {result['budget']})"
                f" | prompt tokens {result['prompt_tokens']:,}",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
