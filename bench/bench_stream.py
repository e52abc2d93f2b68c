"""Streamed answers: time to the first visible words against time to the whole answer.

    python bench/bench_stream.py [--questions 5] [--chunk 8] [--chunk-delay 0.04] [--answer-chars 900]

A summary thread is set up, then `--questions` follow-up questions are asked one after another by
mentioning the bot in it (signed events to the running app, HTTP mode). The model stand-in streams an
answer of `--answer-chars` characters in pieces of `--chunk` characters, `--chunk-delay` s apart, like a
model writing at ~200 characters a second. Measured from sending the event:

- first visible text: chat.startStream reaching Slack (the thread shows the first words);
- whole answer: chat.stopStream reaching Slack;
- the same questions with streaming refused by Slack: the single chat.postMessage (what people waited for
  before answers streamed).

Also counted: Slack calls per answer (the appends are throttled; no chat.update).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from typing import Any

import aiohttp
from _setup import ROOT

from bot import build_slack_app, prepare_for_traffic, serve_http
from ringkas.config import Settings
from tests.support.openai_stub import OpenAIStub, default_responder
from tests.support.slack_signing import event_body, signed_headers
from tests.support.slack_stub import SlackStub
from tests.support.web_stub import WebStub

SECRET = "bench-signing-secret"
ARTICLE = (ROOT / "tests" / "fixtures" / "slack_article.html").read_text(encoding="utf-8")


def responder(answer: str):  # type: ignore[no-untyped-def]
    def respond(body: dict[str, Any]) -> Any:
        name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name")
        if name == "answer":
            return json.dumps({"answer": answer, "answered": True})
        if name == "keywords":
            return json.dumps({"keywords": []})
        return default_responder(body)

    return respond


async def send(http: aiohttp.ClientSession, url: str, event: dict[str, Any], event_id: str) -> float:
    body = event_body(event, event_id=event_id)
    headers = signed_headers(SECRET, body, content_type="application/json")
    start = time.perf_counter()
    async with http.post(url, data=body.encode(), headers=headers) as response:
        await response.read()
        assert response.status == 200, response.status
    return start


async def settle(runtime: Any) -> None:
    """Until the work the requests started is done (answers are durable jobs run by the worker)."""
    jobs = runtime.deps.jobs
    while True:
        await runtime.deps.tasks.join()
        await jobs.worker.join()
        await asyncio.sleep(0.05)
        if not len(runtime.deps.tasks) and not jobs.worker.running and not await jobs.queue.depth():
            return


def first_call_after(stub: SlackStub, method: str, since: float) -> float:
    return min(c.at for c in stub.calls_to(method) if c.at >= since and c.response and c.response.get("ok"))


async def main(args: argparse.Namespace) -> None:
    openai_stub = await OpenAIStub().start()
    slack_stub = await SlackStub().start()
    site = await WebStub().start()
    words = "The article says the model scored 71 percent on the coding benchmark, ahead of the rest. "
    answer = (words * (args.answer_chars // len(words) + 1))[: args.answer_chars]
    openai_stub.responder = responder(answer)
    tmp = tempfile.TemporaryDirectory()
    settings = Settings.from_env({
        "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": openai_stub.base_url,
        "DATABASE_URL": f"sqlite:///{tmp.name}/bench.db", "FETCH_ALLOW_HOSTS": "127.0.0.1",
        "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack_stub.api_url,
        "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text",
    })
    runtime = await build_slack_app(settings, start_scheduler=False)
    prepare_for_traffic(runtime)
    runner: Any = await serve_http(runtime, 0, host="127.0.0.1")
    events_url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    try:
        async with aiohttp.ClientSession() as http:
            root = "1800000000.000001"
            link = site.add("/story", ARTICLE)
            await send(http, events_url, {"type": "app_mention", "channel": "C0001", "user": "U0001",
                                          "text": f"<@UBOT> <{link}>", "ts": root}, "EvRoot")
            await settle(runtime)
            openai_stub.stream_chunk = args.chunk
            openai_stub.stream_delay = args.chunk_delay
            first: list[float] = []
            whole: list[float] = []
            single: list[float] = []
            calls: list[int] = []
            for mode in ("stream", "refused"):
                slack_stub.refuse_streams = None if mode == "stream" else "not_allowed"
                for i in range(args.questions):
                    ts = f"1800000001.{len(first) + len(single) + i:06d}{mode[0]}"
                    before = len(slack_stub.calls)
                    event = {"type": "app_mention", "channel": "C0001", "user": "U0002", "thread_ts": root,
                             "text": f"<@UBOT> what did it score, question {i}?", "ts": ts}
                    sent = await send(http, events_url, event, f"Ev{mode}{i}")
                    await settle(runtime)
                    if mode == "stream":
                        first.append(first_call_after(slack_stub, "chat.startStream", sent) - sent)
                        whole.append(first_call_after(slack_stub, "chat.stopStream", sent) - sent)
                        made = slack_stub.calls[before:]
                        calls.append(sum(1 for c in made if c.method.startswith("chat.")))
                    else:
                        single.append(first_call_after(slack_stub, "chat.postMessage", sent) - sent)
            updates = len(slack_stub.calls_to("chat.update"))
        p50 = statistics.median
        seconds = args.answer_chars / args.chunk * args.chunk_delay
        print(f"model stand-in: {args.answer_chars} characters in pieces of {args.chunk}, "
              f"{args.chunk_delay * 1000:.0f} ms apart (~{seconds:.1f} s of writing); "
              f"{args.questions} questions")
        print(f"streamed: first visible text p50 {p50(first):.2f} s (max {max(first):.2f}), "
              f"whole answer p50 {p50(whole):.2f} s (max {max(whole):.2f}); "
              f"first text after {p50(first) / p50(whole):.0%} of the wait")
        print(f"streaming refused (single post): answer visible p50 {p50(single):.2f} s")
        print(f"Slack chat.* calls per streamed answer p50 {p50(calls):.0f} (max {max(calls)}); "
              f"chat.update calls in all: {updates}")
    finally:
        await runner.cleanup()
        await runtime.aclose()
        await site.stop()
        await slack_stub.stop()
        await openai_stub.stop()
        tmp.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--chunk-delay", type=float, default=0.04)
    parser.add_argument("--answer-chars", type=int, default=900)
    asyncio.run(main(parser.parse_args()))
