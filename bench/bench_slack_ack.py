"""Slack acknowledgement latency and the bot's own overhead, against local stand-ins.

    python bench/bench_slack_ack.py [--events 200] [--batch 50] [--model-delay 3] [--sequential 20]

1. Ack latency: `--events` signed `message` events (each with its own article link) POSTed `--batch` at a
   time to the running app (HTTP mode) while the model stand-in takes `--model-delay` s per answer.
   Target: p99 < 100 ms.
   Throughput: the wall time until every summary is posted against the floor the model allows,
   `events × model calls per link × model delay / MODEL_CONCURRENCY` (`--model-concurrency`, default the
   setting's 16). Goal: within 1.1×. The job insert is part of the ack path, so the ack numbers include it.
2. Overhead: `--sequential` events one after another; for each, the time from sending the event to the
   summary arriving at Slack (chat.postMessage) minus the page fetch time and the model time measured at the
   stand-ins. Target: p50 < 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from typing import Any

import aiohttp
from _setup import ROOT
from aiohttp import web

from bot import build_slack_app, prepare_for_traffic, serve_http
from ringkas.config import Settings
from tests.support.openai_stub import OpenAIStub, request_text
from tests.support.slack_signing import event_body, signed_headers
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub

SECRET = "bench-signing-secret"
ARTICLE = (ROOT / "tests" / "fixtures" / "slack_article.html").read_text(encoding="utf-8")
TITLE = "Open-weight model tops coding benchmark"


class TimedOpenAI(OpenAIStub):
    """Records (start, end) of every model request, keyed by the story marker in its text."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: dict[str, list[tuple[float, float]]] = {}

    async def _chat(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        body = await request.json()  # aiohttp keeps the body, so the parent handler can read it again
        response = await super()._chat(request)
        self.spans.setdefault(_marker(request_text(body)), []).append((start, time.perf_counter()))
        return response


class TimedWeb(WebStub):
    def __init__(self) -> None:
        super().__init__()
        self.spans: dict[str, tuple[float, float]] = {}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        response = await super()._handle(request)
        self.spans[request.path] = (start, time.perf_counter())
        return response


def updated_at(stub: SlackStub, marker: str) -> float:
    """When the summary holding `marker` reached Slack (chat.postMessage with a 200 answer)."""
    for call in stub.calls_to("chat.postMessage"):
        if call.response is not None and marker + " " in str(call.args.get("blocks", "")):
            return call.at
    raise AssertionError(f"no summary for {marker}")


def _marker(text: str) -> str:
    start = text.find("Story ")
    if start == -1:
        return "?"
    end = start + 6
    while end < len(text) and text[end].isdigit():
        end += 1
    return text[start:end]


async def settle(runtime: Any) -> None:
    """Until every accepted link is answered: background tasks done, no job queued or running."""
    deps = runtime.deps
    while True:
        await deps.tasks.join()
        await deps.jobs.worker.join()
        await asyncio.sleep(0.05)
        if not len(deps.tasks) and not deps.jobs.worker.running and not await deps.jobs.queue.depth():
            return


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def describe(name: str, values_ms: list[float]) -> str:
    return (f"{name}: n={len(values_ms)} p50={pct(values_ms, 50):.1f} ms p99={pct(values_ms, 99):.1f} ms "
            f"max={max(values_ms):.1f} ms")


async def post_event(http: aiohttp.ClientSession, url: str, index: int, link: str) -> float:
    # 20 people share the links: one person's 220 would pass LINKS_PER_USER_PER_HOUR (30) and be refused
    event = {"type": "message", "channel": "C0001", "user": f"U{index % 20:04d}", "text": f"<{link}>",
             "ts": f"1800000000.{index:06d}", "channel_type": "channel"}
    body = event_body(event, event_id=f"EvBench{index:06d}")
    headers = signed_headers(SECRET, body, content_type="application/json")
    start = time.perf_counter()
    async with http.post(url, data=body.encode(), headers=headers) as response:
        await response.read()
        assert response.status == 200, response.status
    return start


async def main(args: argparse.Namespace) -> None:
    openai_stub = await TimedOpenAI().start()
    slack_stub = await SlackStub().start()
    site = await TimedWeb().start()
    openai_stub.delay = args.model_delay
    tmp = tempfile.TemporaryDirectory()
    settings = Settings.from_env({
        "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": openai_stub.base_url,
        "DATABASE_URL": f"sqlite:///{tmp.name}/bench.db", "FETCH_ALLOW_HOSTS": "127.0.0.1",
        "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack_stub.api_url,
        "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text", "MODEL_CONCURRENCY": str(args.model_concurrency),
        "JOB_CONCURRENCY": str(args.job_concurrency),
    })
    import logging

    logging.basicConfig(level=logging.WARNING)
    runtime = await build_slack_app(settings, start_scheduler=False)
    prepare_for_traffic(runtime)  # as `python bot.py` does
    runner: Any = await serve_http(runtime, 0, host="127.0.0.1")
    port = runner.addresses[0][1]
    events_url = f"http://127.0.0.1:{port}/slack/events"
    total = args.events + args.sequential
    links = [site.add(f"/a{i}", ARTICLE.replace(TITLE, f"Story {i} {TITLE}")) for i in range(total)]
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            # Warm up (auth.test, first DB connections) with an event that is not measured.
            warm = site.add("/warm", ARTICLE.replace(TITLE, f"Story 999999 {TITLE}"))
            await post_event(http, events_url, 999999, warm)
            await settle(runtime)

            acks: list[float] = []
            began = time.perf_counter()
            for first in range(0, args.events, args.batch):
                async def one(i: int) -> None:
                    start = time.perf_counter()
                    await post_event(http, events_url, i, links[i])
                    acks.append((time.perf_counter() - start) * 1000)

                before = len(acks)
                await asyncio.gather(*(one(i) for i in range(first, min(first + args.batch, args.events))))
                if args.verbose:
                    print(describe(f"  batch {first // args.batch + 1}", acks[before:]))
            await settle(runtime)
            burst_seconds = time.perf_counter() - began
            print(f"model stand-in delay: {args.model_delay:.1f} s per answer")
            print(describe(f"ack latency ({args.events} events, {args.batch} at a time)", acks))
            print(f"all {args.events} summaries posted after {burst_seconds:.1f} s "
                  f"({len(slack_stub.calls_to('chat.postMessage'))} chat.postMessage calls)")
            calls = len(openai_stub.requests) - 1  # minus the warm-up
            floor = calls * args.model_delay / args.model_concurrency
            print(f"throughput: {calls} model calls at {args.model_delay:.1f} s with MODEL_CONCURRENCY="
                  f"{args.model_concurrency} (at most {openai_stub.max_in_flight} at once seen): floor "
                  f"{floor:.1f} s, wall {burst_seconds:.1f} s = {burst_seconds / floor:.2f}× the floor")

            overheads: list[float] = []
            for i in range(args.events, total):
                sent = await post_event(http, events_url, i, links[i])
                await settle(runtime)
                marker = f"Story {i}"
                done = updated_at(slack_stub, marker)
                model = sum(end - start for start, end in openai_stub.spans.get(marker, []))
                fetch_start, fetch_end = site.spans[f"/a{i}"]
                overheads.append((done - sent - model - (fetch_end - fetch_start)) * 1000)
            if overheads:
                name = f"bot overhead beyond fetch and model time ({args.sequential} events, one at a time)"
                print(describe(name, overheads))
    finally:
        await runner.cleanup()
        await runtime.aclose()
        await site.stop()
        await slack_stub.stop()
        await openai_stub.stop()
        tmp.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--model-delay", type=float, default=3.0)
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--model-concurrency", type=int, default=16, help="MODEL_CONCURRENCY for the run")
    parser.add_argument("--job-concurrency", type=int, default=32, help="JOB_CONCURRENCY for the run")
    parser.add_argument("--verbose", action="store_true", help="also print each batch's ack latency")
    asyncio.run(main(parser.parse_args()))
