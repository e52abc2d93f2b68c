"""Hostile pages through the document reader: worst event-loop stall and time per page.

    python bench/bench_hostile.py [--scale 1.0]

Generates a corpus of hostile pages (the issue 11 patterns and variations of them: quadratic Markdown,
millions of elements, deep nesting, attribute floods, unclosed tags, huge text runs) and reads each
through `ringkas.reading.DocumentReader` (the worker pool the bot uses) while a ticker task measures
the event loop's longest stall. Prints per page: outcome, seconds, worst stall; then the worst overall.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ringkas.documents import FetchResult
from ringkas.errors import RingkasError
from ringkas.reading import DocumentReader

PARAGRAPH = (
    "<p>The lab released its model weights under an open licence on Tuesday, and developers began "
    "testing the model on coding tasks within hours. Early results matched the published claims.</p>"
)


def page(extra: str) -> bytes:
    return (f"<html><head><title>Hostile</title></head><body><article>{PARAGRAPH * 3}{extra}"
            f"{PARAGRAPH}</article></body></html>").encode()


def corpus(scale: float) -> dict[str, Callable[[], bytes]]:
    n = lambda count: max(1, int(count * scale))  # noqa: E731
    return {
        "code x **a, 150 kB": lambda: page("<code>x **a</code> " * n(150_000 // 19)),
        "code x **a, 510 kB": lambda: page("<code>x **a</code> " * n(510_000 // 19)),
        "text x **a, one line 1 MB": lambda: page("<p>" + "x **a " * n(170_000) + "</p>"),
        "italics *a, 500 kB": lambda: page("<p>" + "y *a" * n(125_000) + "</p>"),
        "<p>a</p>, 8 MB": lambda: page("<p>a</p>" * n(1024 * 1024)),
        "<p>a</p>, 1.5 MB (under budget)": lambda: page("<p>a</p>" * n(190_000)),
        "30k nested <span>": lambda: page("<span>" * n(30_000) + "deep" + "</span>" * n(30_000)),
        "30k unclosed <div>": lambda: page("<div>x" * n(30_000)),
        "5,000 tags x 199 attributes": lambda: page(
            ("<div " + " ".join(f"a{i}=x" for i in range(199)) + ">t</div>") * n(5000)),
        "2,000 tags x 150 attributes": lambda: page(
            ("<div " + " ".join(f"a{i}=x" for i in range(150)) + ">t</div>") * n(2000)),
        "one tag x 200,000 attributes": lambda: page(
            "<div " + " ".join(f"a{i}='<x>'" for i in range(n(200_000))) + ">flood</div>"),
        "8 MB of one text run": lambda: page("<p>" + "word " * n(1_600_000) + "</p>"),
        "100k table cells": lambda: page(
            "<table>" + "<tr><td>1</td><td>2</td></tr>" * n(50_000) + "</table>"),
        "JSON-LD 100k deep": lambda: page(
            "<script type='application/ld+json'>" + "[" * n(100_000) + "]" * n(100_000) + "</script>"),
    }


async def run(scale: float) -> int:
    reader = DocumentReader(deadline=20)
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst = max(worst, now - last - 0.01)
            last = now

    url = "https://hostile.example/page"
    started = time.monotonic()
    await reader.read(FetchResult(url, url, 200, "text/html", "utf-8", page("")))
    print(f"worker start + first ordinary page: {time.monotonic() - started:.2f} s (paid once)\n")
    print(f"{'page':34s} {'bytes':>10s} {'seconds':>8s} {'stall ms':>9s}  outcome")
    overall = 0.0
    tick = asyncio.create_task(ticker())
    try:
        for name, make in corpus(scale).items():
            body = await asyncio.to_thread(make)  # building the page is not the reader's stall
            result = FetchResult(url, url, 200, "text/html", "utf-8", body)
            await asyncio.sleep(0.05)
            worst = 0.0
            started = time.monotonic()
            try:
                article = await reader.read(result)
                outcome = f"read, {len(article.text):,} chars"
            except RingkasError as exc:
                outcome = f"{type(exc).__name__} ({exc.detail or exc.user_message})"[:70]
            seconds = time.monotonic() - started
            await asyncio.sleep(0.02)  # let the ticker see the loop after the reply
            overall = max(overall, worst)
            print(f"{name:34s} {len(body):10,d} {seconds:8.2f} {worst * 1000:9.1f}  {outcome}")
    finally:
        tick.cancel()
        await reader.aclose()
    print(f"\nworst event-loop stall over the corpus: {overall * 1000:.1f} ms")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every page's size")
    return asyncio.run(run(parser.parse_args().scale))


if __name__ == "__main__":
    sys.exit(main())
