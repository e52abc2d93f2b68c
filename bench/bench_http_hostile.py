"""Unauthenticated traffic against HTTP mode: what it costs the bot, and what Slack still gets.

    python bench/bench_http_hostile.py [--events 200] [--flooders 8] [--half-open 1100]

1. Signed-event ack latency (no work behind the event) with no other traffic: the baseline.
2. The same while `--flooders` clients send unsigned 600 kB POSTs back to back (the issue's report: acks
   rose to ~1 s and 116 MB of log in 20 s). Prints rejections per second, log bytes written, the ratio of
   ack p95 to the baseline, and the CPU time per rejected request.
Clients and server share one process (and its event loop), so the latencies are upper bounds.
3. `/healthz` and signed-event latency while `--half-open` connections each hold half a request
   (the server's cap is min(1000, file limit - 384); past it the oldest unserved connection is evicted).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import socket
import statistics
import tempfile
import time
from typing import Any

import _setup  # noqa: F401  (first: the project's path and the tokenizer's files)
import aiohttp

from bot import build_slack_app, prepare_for_traffic, serve_http
from ringkas.config import Settings
from ringkas.logs import configure_logging
from tests.support.openai_stub import OpenAIStub
from tests.support.slack_signing import event_body, signed_headers
from tests.support.slack_stub import SlackStub

SECRET = "bench-signing-secret"


def describe(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{name}: p50 {statistics.median(ordered):.1f} ms, p95 {p95:.1f} ms, max {ordered[-1]:.1f} ms"


async def signed_acks(http: aiohttp.ClientSession, url: str, count: int, start: int) -> list[float]:
    out: list[float] = []

    async def one(i: int) -> None:
        event = {"type": "message", "channel": "C0001", "user": "U0001", "text": "no link here",
                 "ts": f"1800000000.{i:06d}", "channel_type": "channel"}
        body = event_body(event, event_id=f"EvBench{i:06d}")
        headers = signed_headers(SECRET, body, content_type="application/json")
        began = time.perf_counter()
        async with http.post(url, data=body.encode(), headers=headers) as response:
            await response.read()
            assert response.status == 200, response.status
        out.append((time.perf_counter() - began) * 1000)

    for first in range(start, start + count, 10):
        await asyncio.gather(*(one(i) for i in range(first, min(first + 10, start + count))))
    return out


async def flood(url: str, stop: asyncio.Event, counter: list[int]) -> None:
    big = b"x" * 600_000
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": str(int(time.time())),
                       "X-Slack-Signature": "v0=" + "0" * 64}
            try:
                async with http.post(url, data=big, headers=headers) as response:
                    await response.read()
                    counter[0] += response.status == 401
            except aiohttp.ClientError:
                pass


async def main(args: argparse.Namespace) -> None:
    openai_stub = await OpenAIStub().start()
    slack_stub = await SlackStub().start()
    tmp = tempfile.TemporaryDirectory()
    settings = Settings.from_env({
        "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": openai_stub.base_url,
        "DATABASE_URL": f"sqlite:///{tmp.name}/bench.db", "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack_stub.api_url, "LOG_FORMAT": "json",
    })
    configure_logging(settings)  # INFO, JSON, as `python bot.py` logs
    log_sink = io.StringIO()
    root = logging.getLogger()
    root.handlers[0].setStream(log_sink)  # type: ignore[attr-defined]
    runtime = await build_slack_app(settings, start_scheduler=False)
    prepare_for_traffic(runtime)
    runner: Any = await serve_http(runtime, 0, host="127.0.0.1")
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/slack/events"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await signed_acks(http, url, 10, 0)  # warm up
            baseline = await signed_acks(http, url, args.events, 100)
            print(describe(f"1. signed acks, quiet ({args.events})", baseline))

            stop, rejected = asyncio.Event(), [0]
            log_before = len(log_sink.getvalue())
            cpu_before, began = time.process_time(), time.perf_counter()
            flooders = [asyncio.create_task(flood(url, stop, rejected)) for _ in range(args.flooders)]
            await asyncio.sleep(1)
            under_flood = await signed_acks(http, url, args.events, 10_000)
            stop.set()
            await asyncio.gather(*flooders)
            seconds = time.perf_counter() - began
            cpu = time.process_time() - cpu_before  # client and server share this process: an upper bound
            log_bytes = len(log_sink.getvalue()) - log_before
            print(describe(f"2. signed acks under {args.flooders} unsigned 600 kB flooders", under_flood))
            print(f"   {rejected[0]} unsigned requests rejected in {seconds:.1f} s "
                  f"({rejected[0] / seconds:.0f}/s); log written: {log_bytes:,} bytes "
                  f"({log_bytes / max(1, rejected[0]):.1f} bytes per rejection)")
            def p95_of(values: list[float]) -> float:
                return sorted(values)[int(len(values) * 0.95)]

            p95 = p95_of(under_flood) / p95_of(baseline)
            print(f"   ack p95 ratio flood/quiet: {p95:.2f}; process CPU per rejection (client included): "
                  f"{cpu / max(1, rejected[0]) * 1000:.2f} ms")

            socks: list[socket.socket] = []
            loop = asyncio.get_running_loop()
            for _ in range(args.half_open):
                sock = socket.socket()
                sock.setblocking(False)
                await loop.sock_connect(sock, ("127.0.0.1", port))
                sock.send(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Half: 1")
                socks.append(sock)
            await asyncio.sleep(0.5)
            fresh = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
            health: list[float] = []
            async with fresh:
                for _ in range(20):
                    began = time.perf_counter()
                    async with fresh.get(f"http://127.0.0.1:{port}/healthz") as response:
                        assert response.status == 200
                    health.append((time.perf_counter() - began) * 1000)
                acks = await signed_acks(fresh, url, 50, 20_000)
            guard = runner.guard
            print(describe(f"3. /healthz under {args.half_open} half-open connections", health))
            print(describe("   signed acks meanwhile", acks))
            print(f"   connection cap {guard.cap}; evicted {guard.evicted}, open now {len(guard.conns)}")
            for sock in socks:
                sock.close()
    finally:
        await runner.cleanup()
        await runtime.aclose()
        await openai_stub.stop()
        await slack_stub.stop()
        tmp.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--flooders", type=int, default=8)
    parser.add_argument("--half-open", type=int, default=1100)
    asyncio.run(main(parser.parse_args()))
