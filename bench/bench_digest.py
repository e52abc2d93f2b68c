"""Digest build cost: 20 feeds x 50 items on a local feed server, the model stand-in answering after 1 s.

Prints wall time (feeds + selection + model), number of model calls and prompt tokens, for a couple of
DIGEST_MAX_STORIES values. Runnable as `python bench/bench_digest.py`.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
_TIKTOKEN = ROOT.parent / "shared" / "tiktoken"
if "TIKTOKEN_CACHE_DIR" not in os.environ and _TIKTOKEN.is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_TIKTOKEN)

from ringkas.config import Settings  # noqa: E402
from ringkas.digest.models import FeedSource  # noqa: E402
from ringkas.digest.service import DigestService  # noqa: E402
from ringkas.fetch import SafeFetcher  # noqa: E402
from ringkas.llm import LLM  # noqa: E402
from ringkas.storage import Database  # noqa: E402
from tests.support.openai_stub import OpenAIStub  # noqa: E402
from tests.support.web_stub import WebStub  # noqa: E402
from tests.test_digest_support import digest_responder, rss  # noqa: E402

FEEDS, ITEMS = 20, 50
COMPANIES = [
    "OpenAI",
    "Anthropic",
    "Google DeepMind",
    "Meta",
    "Mistral",
    "Nvidia",
    "Microsoft",
    "xAI",
    "Cohere",
    "Hugging Face",
    "DeepSeek",
    "Alibaba Qwen",
    "Perplexity",
    "Apple",
    "Amazon",
]
ACTIONS = ["releases", "open-sources", "prices", "delays", "benchmarks", "demos", "ships", "licenses"]
THINGS = [
    "reasoning model",
    "coding agent",
    "speech model",
    "video generator",
    "AI chip",
    "robotics model",
    "small language model",
    "safety report",
    "data center",
    "chatbot update",
]
OTHER = [
    "Best budget phones",
    "Streaming prices rise",
    "Smartwatch review",
    "Election coverage",
    "Football results",
]


def headlines(rng: random.Random, feed: int) -> list[str]:
    out = []
    for i in range(ITEMS):
        if rng.random() < 0.25:
            out.append(f"{rng.choice(OTHER)} {feed}-{i}")
        else:  # a shared pool of stories, so outlets overlap like on a real news day
            out.append(
                f"{rng.choice(COMPANIES)} {rng.choice(ACTIONS)} {rng.choice(THINGS)} {rng.randint(1, 6)}"
            )
    return out


async def run(max_stories: int) -> None:
    rng = random.Random(42)
    web, model = await WebStub().start(), await OpenAIStub().start()
    model.responder, model.delay = digest_responder, 1.0
    now = datetime.now(UTC)
    sources = []
    for feed in range(FEEDS):
        entries = [
            (title, f"https://outlet{feed}.example/{i}", now - timedelta(minutes=40 * i + feed))
            for i, title in enumerate(headlines(rng, feed))
        ]
        url = web.add(
            f"/feed{feed}.xml",
            rss(f"Outlet {feed}", entries, description="A paragraph of feed text about the story. " * 6),
            content_type="application/rss+xml",
        )
        sources.append(FeedSource(url))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(
            {
                "OPENAI_API_KEY": "sk-bench",
                "OPENAI_BASE_URL": model.base_url,
                "DATABASE_URL": f"sqlite:///{tmp}/b.db",
                "FETCH_ALLOW_HOSTS": "127.0.0.1",
                "DIGEST_MAX_STORIES": str(max_stories),
            }
        )
        db = Database(settings.database_url)
        await db.create_all()
        fetcher = SafeFetcher(allow_hosts=settings.fetch_allow_hosts)
        llm = LLM(settings, db=db)
        service = DigestService(settings=settings, db=db, fetcher=fetcher, llm=llm, sources=sources)
        started = time.perf_counter()
        digest = await service.build(
            window_start=now - timedelta(hours=24),
            window_end=now,
            language="id",
            timezone="Asia/Jakarta",
            team_id="T1",
            channel_id="C1",
        )
        wall = time.perf_counter() - started
        biggest = max(llm.tokens.count_messages(r["messages"]) for r in model.requests)
        await fetcher.aclose()
        await llm.aclose()
        await db.dispose()
    await web.stop()
    await model.stop()
    print(
        f"DIGEST_MAX_STORIES={max_stories:>2}: {FEEDS} feeds x {ITEMS} items -> "
        f"{digest.items_read} items in window, "
        f"{len(digest.stories)} stories | wall {wall:.2f} s | model calls {digest.usage.calls} "
        f"| prompt tokens {digest.usage.prompt_tokens:,} (largest request {biggest:,} of "
        f"{settings.max_input_tokens:,}) | completion tokens {digest.usage.completion_tokens:,}"
    )


async def main() -> None:
    for max_stories in (10, 40):
        await run(max_stories)


if __name__ == "__main__":
    asyncio.run(main())
