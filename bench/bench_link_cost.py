"""What one answered link costs the bot: CPU, SQL statements and transactions, memory, ack latency.

    python bench/bench_link_cost.py [--events 200] [--batch 50] [--model-delay 3] [--database URL]
                                    [--verbose]

The bot runs in its own process (as `python bot.py` serves HTTP: build_slack_app, prepare_for_traffic,
serve_http) so that its CPU time and memory are its own; the Slack, OpenAI and web-page stand-ins
(tests/support/) and the client sending signed events run in this process.

1. Idle: RSS of the bot after start-up (and which heavy modules it has loaded: tiktoken, the language
   model, trafilatura/lxml, openai, prometheus_client, babel).
2. Uncached: `--events` `message` events, each with its own article link, `--batch` at a time, while the
   model stand-in takes `--model-delay` s per answer. Printed: ack p50/p99, CPU ms per answered link
   (the bot process's user+system time, plus its document-reader processes, / links), SQL statements and
   transactions per link (SQLAlchemy `before_cursor_execute` / `begin` events in the bot), peak RSS.
3. Cached: the same links shared again in new messages (every summary comes from the cache).

Goals (issue 15, 14): <= 20 ms CPU per link, <= 6 statements per uncached link, <= 3 per cached link,
idle RSS < 150 MB, < 300 MB at 200 concurrent requests, ack p99 < 100 ms.
`--database postgresql://postgres@127.0.0.1:5432/test` runs it on PostgreSQL (its tables are emptied).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _setup  # noqa: F401  (first: the project's path and the tokenizer's files)
import aiohttp

SECRET = "bench-signing-secret"
HEAVY = ("tiktoken", "ringkas.language.model", "fasttext", "lingua", "langdetect", "trafilatura", "lxml",
         "openai", "prometheus_client", "babel", "pypdf", "apscheduler", "feedparser")


# --- the bot process ---------------------------------------------------------------------------------


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Counters:
    """SQL statements and transactions of every engine in this process, by kind (SQLAlchemy events)."""

    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0
        self.by_text: dict[str, int] = {}

    def install(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "begin", self._begin)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements += 1
        head = " ".join(statement.split())[:90]
        self.by_text[head] = self.by_text.get(head, 0) + 1

    def _begin(self, _conn: Any) -> None:
        self.transactions += 1


async def serve(database_url: str, openai_url: str, slack_url: str, model_concurrency: int,
                job_concurrency: int) -> None:
    """The bot, reporting its counters on request: one JSON line on stdout per line read from stdin."""
    counters = Counters()
    counters.install()
    from bot import build_slack_app, prepare_for_traffic, serve_http
    from ringkas.config import Settings

    settings = Settings.from_env({
        "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": openai_url, "DATABASE_URL": database_url,
        "FETCH_ALLOW_HOSTS": "127.0.0.1", "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack_url, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text",
        "MODEL_CONCURRENCY": str(model_concurrency), "JOB_CONCURRENCY": str(job_concurrency),
    })
    runtime = await build_slack_app(settings, start_scheduler=True)
    prepare_for_traffic(runtime)
    runner: Any = await serve_http(runtime, 0, host="127.0.0.1")
    loop = asyncio.get_running_loop()
    from bench_slack_ack import settle

    def snapshot(**extra: Any) -> dict[str, Any]:
        pid = os.getpid()
        children = _children(pid)
        return {
            "cpu": _proc_cpu(pid), "cpu_children": sum(_proc_cpu(c) for c in children),
            "rss_kb": _status_kb(pid, "VmRSS"), "hwm_kb": _status_kb(pid, "VmHWM"),
            "children_rss_kb": sum(_status_kb(c, "VmRSS") for c in children),
            "statements": counters.statements, "transactions": counters.transactions,
            "by_text": dict(counters.by_text),
            "loaded": [name for name in HEAVY if name in sys.modules], **extra,
        }

    print(json.dumps(snapshot(port=runner.addresses[0][1])), flush=True)
    profile = None
    if os.environ.get("BENCH_PROFILE"):  # a cProfile of the bot process, written when it stops
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or line.strip() == "quit":
                break
            if line.strip() == "settle":
                await settle(runtime)
            print(json.dumps(snapshot()), flush=True)
    finally:
        if profile is not None:
            profile.disable()
            profile.dump_stats(os.environ["BENCH_PROFILE"])
        await runner.cleanup()
        await runtime.aclose()


# --- the driver --------------------------------------------------------------------------------------


class Bot:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, command: str = "") -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return await self.read()

    async def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                raise RuntimeError("the bot process ended")
            if line.startswith(b"{"):
                return dict(json.loads(line))


async def post_event(http: aiohttp.ClientSession, url: str, index: int, link: str) -> None:
    """A signed `message` event with one link; 20 people share the links (the default hourly limit per
    person, LINKS_PER_USER_PER_HOUR=30, stays in force and is not reached)."""
    from tests.support.slack_signing import event_body, signed_headers

    event = {"type": "message", "channel": "C0001", "user": f"U{index % 20:04d}", "text": f"<{link}>",
             "ts": f"1800000000.{index:06d}", "channel_type": "channel"}
    body = event_body(event, event_id=f"EvCost{index:06d}")
    headers = signed_headers(SECRET, body, content_type="application/json")
    async with http.post(url, data=body.encode(), headers=headers) as response:
        await response.read()
        assert response.status == 200, response.status


def _delta(after: dict[str, Any], before: dict[str, Any], links: int) -> dict[str, float]:
    return {
        "cpu_ms": (after["cpu"] - before["cpu"]) * 1000 / links,
        "reader_cpu_ms": (after["cpu_children"] - before["cpu_children"]) * 1000 / links,
        "statements": (after["statements"] - before["statements"]) / links,
        "transactions": (after["transactions"] - before["transactions"]) / links,
    }


def _top(after: dict[str, Any], before: dict[str, Any], links: int) -> list[str]:
    counts = {k: v - before["by_text"].get(k, 0) for k, v in after["by_text"].items()}
    ranked = sorted(((n, k) for k, n in counts.items() if n), reverse=True)
    return [f"    {n / links:5.2f}/link  {k}" for n, k in ranked[:25]]


async def run_phase(http: aiohttp.ClientSession, url: str, bot: Bot, links: list[str], first_index: int,
                    batch: int, stub: Any, verbose: bool, name: str) -> dict[str, Any]:
    from bench_slack_ack import describe

    def answers() -> tuple[int, int]:
        posts = [c for c in stub.calls_to("chat.postMessage") if c.response is not None]
        return len(posts), sum(1 for c in posts if "Story " in str(c.args.get("blocks", "")))

    posts_before, summaries_before = answers()
    calls_before = len(stub.calls)
    before = await bot.ask("settle")
    acks: list[float] = []
    began = time.perf_counter()
    for first in range(0, len(links), batch):
        async def one(i: int) -> None:
            start = time.perf_counter()
            await post_event(http, url, first_index + i, links[i])
            acks.append((time.perf_counter() - start) * 1000)

        await asyncio.gather(*(one(i) for i in range(first, min(first + batch, len(links)))))
    after = await bot.ask("settle")
    wall = time.perf_counter() - began
    posted, summaries = answers()
    d = _delta(after, before, len(links))
    print(f"{name}: {len(links)} links, {posted - posts_before} answers posted "
          f"({summaries - summaries_before} of them summaries) in {wall:.1f} s")
    print("  " + describe(f"ack latency ({batch} at a time)", acks))
    print(f"  CPU per answered link: {d['cpu_ms']:.1f} ms in the bot process "
          f"(+ {d['reader_cpu_ms']:.1f} ms in its document-reader processes)")
    print(f"  SQL per link: {d['statements']:.2f} statements, {d['transactions']:.2f} transactions")
    print(f"  RSS: {after['rss_kb'] / 1024:.0f} MiB now, peak {after['hwm_kb'] / 1024:.0f} MiB "
          f"(+ reader processes {after['children_rss_kb'] / 1024:.0f} MiB)")
    if verbose:
        methods: dict[str, int] = {}
        for call in stub.calls[calls_before:]:
            methods[call.method] = methods.get(call.method, 0) + 1
        shown = ", ".join(f"{m} {n / len(links):.2f}" for m, n in sorted(methods.items()))
        print(f"  Slack calls per link: {shown}")
        print("  statements by text:")
        print("\n".join(_top(after, before, len(links))))
    return {"acks": acks, **d, "peak_mb": after["hwm_kb"] / 1024}


async def _empty_postgres(url: str) -> None:
    from ringkas.storage import Database
    from ringkas.storage.base import Base

    db = Database(url)
    await db.create_all()
    async with db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())
    await db.dispose()


async def main(args: argparse.Namespace) -> None:
    from bench_slack_ack import ARTICLE, TITLE

    from tests.support.openai_stub import OpenAIStub
    from tests.support.slack_stub import SlackStub
    from tests.support.web_stub import WebStub

    openai_stub = await OpenAIStub().start()
    openai_stub.delay = args.model_delay
    slack_stub = await SlackStub().start()
    site = await WebStub().start()
    tmp = tempfile.TemporaryDirectory()
    database = args.database or f"sqlite:///{tmp.name}/bench.db"
    if not database.startswith("sqlite"):
        await _empty_postgres(database)
    load = os.getloadavg()
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", "--database", database, "--openai-url", openai_stub.base_url,
        "--slack-url", slack_stub.api_url, "--model-concurrency", str(args.model_concurrency),
        "--job-concurrency", str(args.job_concurrency),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env={**os.environ},
    )
    bot = Bot(process)
    try:
        start = await bot.read()
        url = f"http://127.0.0.1:{start['port']}/slack/events"
        print(f"database: {database.split('://')[0]}; model stand-in {args.model_delay:.1f} s per answer; "
              f"MODEL_CONCURRENCY={args.model_concurrency} JOB_CONCURRENCY={args.job_concurrency}")
        print(f"machine load before the run (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
              f"on {os.cpu_count()} CPUs")
        print(f"idle RSS after start-up: {start['rss_kb'] / 1024:.0f} MiB; heavy modules loaded: "
              f"{', '.join(start['loaded']) or 'none'}")
        links = [site.add(f"/a{i}", ARTICLE.replace(TITLE, f"Story {i} {TITLE}")) for i in range(args.events)]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            warm = site.add("/warm", ARTICLE.replace(TITLE, f"Story 999999 {TITLE}"))
            await post_event(http, url, 999999, warm)
            warmed = await bot.ask("settle")
            print(f"RSS after one link: {warmed['rss_kb'] / 1024:.0f} MiB; heavy modules loaded: "
                  f"{', '.join(warmed['loaded']) or 'none'}")
            await run_phase(http, url, bot, links, 0, args.batch, slack_stub, args.verbose, "uncached")
            await run_phase(http, url, bot, links, args.events, args.batch, slack_stub, args.verbose,
                            "cached (the same links in new messages)")
        load = os.getloadavg()
        print(f"machine load after the run (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        if process.returncode is None:
            assert process.stdin is not None
            process.stdin.write(b"quit\n")
            await process.stdin.drain()
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
        await site.stop()
        await slack_stub.stop()
        await openai_stub.stop()
        tmp.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--model-delay", type=float, default=3.0)
    parser.add_argument("--database", default=None, help="DATABASE_URL (default: a new SQLite file)")
    parser.add_argument("--model-concurrency", type=int, default=16)
    parser.add_argument("--job-concurrency", type=int, default=32)
    parser.add_argument("--verbose", action="store_true", help="also print the statements by text")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--openai-url", help=argparse.SUPPRESS)
    parser.add_argument("--slack-url", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        asyncio.run(serve(arguments.database, arguments.openai_url, arguments.slack_url,
                          arguments.model_concurrency, arguments.job_concurrency))
    else:
        asyncio.run(main(arguments))
