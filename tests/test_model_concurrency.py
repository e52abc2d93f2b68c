"""MODEL_CONCURRENCY: a setting, and a limit that shrinks on 429s (holding new requests for Retry-After)
and grows back after successes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace

from ringkas.config import Settings
from ringkas.limits import AdaptiveLimit
from tests.support.openai_stub import OpenAIStub

MESSAGES = [{"role": "user", "content": "Say hi."}]


async def test_the_model_limit_follows_429s_and_recovers(
    make_settings: Callable[..., Settings], openai_stub: OpenAIStub
) -> None:
    from bot import build_core

    core = await build_core(make_settings(MODEL_CONCURRENCY="4", OPENAI_MAX_RETRIES="4"), create_tables=True)
    try:
        limit = core.llm._limit
        assert isinstance(limit, AdaptiveLimit) and limit.limit == 4
        openai_stub.delay = 0.2
        openai_stub.fail_next(2, status=429, retry_after=1)
        await asyncio.gather(*(core.llm.complete(MESSAGES, purpose="test") for _ in range(2)))
        assert limit.limit < 4  # halved by each 429, then growing back one step per run of successes
        low = limit.limit
        openai_stub.max_in_flight = 0
        await asyncio.gather(*(core.llm.complete(MESSAGES, purpose="test") for _ in range(12)))
        assert limit.limit > low and limit.limit <= 4
        assert openai_stub.max_in_flight <= 4
    finally:
        await core.aclose()


async def test_a_429_holds_new_requests_for_its_retry_after() -> None:
    class RateLimited(Exception):
        status_code = 429

        def __init__(self) -> None:
            super().__init__("429")
            self.response = SimpleNamespace(headers={"retry-after": "0.3"})

    limit = AdaptiveLimit(8)
    try:
        async with limit:
            raise RateLimited()
    except RateLimited:
        pass
    assert limit.limit == 4
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with limit:
        pass
    assert loop.time() - started >= 0.25
